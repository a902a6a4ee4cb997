"""What the sync tests share: fixed roots and times, manifest entries, files written with an mtime."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from provision.sync.manifest import (
    NS,
    SKIP_DANGLING,
    SKIP_DEVICE,
    SKIP_DIRECTORY_LINK,
    SKIP_FIFO,
    SKIP_IGNORED_TARGET,
    SKIP_OUTSIDE,
    SKIP_SOCKET,
    SKIP_SPECIAL_TARGET,
    FileEntry,
    Manifest,
    Skipped,
)
from provision.sync.rules import Scope

LOCAL = Path("/src")
ROOT = "/srv/app"
T0 = 1_700_000_000 * NS
EVERYTHING = (Scope("", ("*",), ("__pycache__/", "*.pyc", ".venv/")),)


def entry(
    size: int = 10, mtime_ns: int = T0, sha: str | None = None, mode: int = 0o644, path: str = ""
) -> FileEntry:
    return FileEntry(size, mtime_ns, sha, mode, LOCAL / path if path else None)


def local_of(files: dict[str, FileEntry], scopes: tuple[Scope, ...] = EVERYTHING) -> Manifest:
    return Manifest(
        ROOT,
        {p: FileEntry(e.size, e.mtime_ns, e.sha256, e.mode, LOCAL / p) for p, e in files.items()},
        scopes,
    )


def remote_of(files: dict[str, FileEntry], temps: tuple[str, ...] = ()) -> Manifest:
    return Manifest(ROOT, files, temps=temps)


def write(path: Path, data: bytes | str, mtime: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def passwd_bytes() -> bytes:
    return Path("/etc/passwd").read_bytes()


def zoo_skips() -> set[Skipped]:
    """What a walk of the ``zoo`` fixture skips, and why."""
    skips = {
        Skipped("passwd", SKIP_OUTSIDE),
        Skipped("pkg/secret", SKIP_OUTSIDE),
        Skipped("pkg/config.txt", SKIP_IGNORED_TARGET),
        Skipped("pkg_link", SKIP_DIRECTORY_LINK),
        Skipped("dangling", SKIP_DANGLING),
        Skipped("null", SKIP_SPECIAL_TARGET),
        Skipped("fifo", SKIP_FIFO),
        Skipped("sock", SKIP_SOCKET),
    }
    return skips | ({Skipped("dev", SKIP_DEVICE)} if os.geteuid() == 0 else set())
