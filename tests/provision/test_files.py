"""files.py: the one atomic local write (content, mode, and what a failure leaves behind)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provision.files import atomic_write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_a_new_file_gets_the_content_and_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "profile.toml"
    atomic_write(path, b"port = 22\n")
    assert path.read_bytes() == b"port = 22\n"
    assert _mode(path) == 0o600
    assert _siblings(path) == ["profile.toml"]


def test_a_replaced_file_gets_the_new_content_and_the_given_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"old")
    path.chmod(0o600)
    atomic_write(path, b"new", mode=0o644)
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o644
    assert _siblings(path) == ["config.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(b"old\n")

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        atomic_write(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert _siblings(path) == ["known_hosts"]


def test_before_replace_sees_the_finished_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    seen: list[tuple[str, bytes, int]] = []

    def look(tmp: Path) -> None:
        seen.append((tmp.name, tmp.read_bytes(), _mode(tmp)))

    atomic_write(path, b"{}", mode=0o640, before_replace=look)
    [(name, content, mode)] = seen
    assert name.startswith(".record.json.") and name.endswith(".tmp")
    assert (content, mode) == (b"{}", 0o640)
    assert path.read_bytes() == b"{}"


def test_before_replace_raising_abandons_the_write(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"theirs")

    class ChangedMeanwhile(Exception):
        pass

    def refuse(tmp: Path) -> None:
        raise ChangedMeanwhile

    with pytest.raises(ChangedMeanwhile):
        atomic_write(path, b"ours", before_replace=refuse)
    assert path.read_bytes() == b"theirs"
    assert _siblings(path) == ["config.json"]


def test_a_missing_directory_is_an_oserror_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "absent" / "file", b"x")
    assert list(tmp_path.iterdir()) == []
