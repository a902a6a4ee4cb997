"""Applying a plan: how large files are spread over SFTP sessions (the rest runs over sshd in test_sync)."""

from __future__ import annotations

from pathlib import Path

from provision.sync.apply import buckets
from provision.sync.plan import Upload


def upload(path: str, size: int) -> Upload:
    return Upload(path, size, "new", Path("/src") / path, 0, 0o644)


def test_large_files_are_spread_over_sessions_largest_first() -> None:
    files = [upload(name, size) for name, size in [("a", 10), ("b", 50), ("c", 30), ("d", 25), ("e", 5)]]
    spread = buckets(files, 2)
    assert [[u.path for u in bucket] for bucket in spread] == [["b", "a"], ["c", "d", "e"]]
    assert buckets(files[:1], 4) == [[files[0]]] and buckets([], 4) == []
