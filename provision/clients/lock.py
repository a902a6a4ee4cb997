"""Let one mcpctl run at a time edit the client config files in a folder (an advisory lock).

A lock file would leave litter in the app's folder, and the config file itself is replaced by a
rename, so on POSIX the folder itself is what is locked (``flock``). Windows cannot lock a folder:
there the lock is a file of our own state directory named after the folder (``msvcrt.locking``).
The apps take no such lock: the compare-and-swap in :mod:`provision.clients.jsonedit` covers them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from provision.errors import ClientConfigError
from provision.portable import try_lock

# How long to wait for another mcpctl run editing the same folder (an edit takes milliseconds).
LOCK_TIMEOUT_S = 10.0
_LOCK_POLL_S = 0.01


@contextlib.contextmanager
def writers_lock(directory: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold the folder's lock for the ``with`` block.

    Where the folder cannot be locked (no such folder yet, a file system without locks) the block
    runs without it.

    Raises:
        ClientConfigError: Another mcpctl run held the lock for ``LOCK_TIMEOUT_S``.
    """
    fd: int | None = None
    if enabled:
        with contextlib.suppress(OSError):
            fd = _open_lock(directory, windows=sys.platform == "win32")
    try:
        if fd is not None:
            _lock_folder(fd, directory)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def windows_lock_file(directory: Path) -> Path:
    """The file that stands for ``directory``'s lock on Windows: in our state directory, by its path."""
    from provision.profiles import state_dir

    key = os.path.normcase(os.path.abspath(directory))
    return state_dir() / "locks" / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:24]}.lock"


def _open_lock(directory: Path, *, windows: bool) -> int:
    if not windows:
        return os.open(directory, os.O_RDONLY)
    if not directory.is_dir():  # as on POSIX: no folder yet, nothing to lock
        raise FileNotFoundError(directory)
    path = windows_lock_file(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _lock_folder(fd: int, directory: Path) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            if try_lock(fd):
                return
        except OSError:
            return  # this file system cannot lock: go ahead without it
        if time.monotonic() >= deadline:
            raise ClientConfigError(
                f"another mcpctl run has been editing the files in {directory} for {LOCK_TIMEOUT_S:g} s",
                hint="let it finish (or end it), then re-run",
            )
        time.sleep(_LOCK_POLL_S)
