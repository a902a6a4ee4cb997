"""Let one mcpctl run at a time edit the client config files in a folder (an advisory ``flock``).

A lock file would leave litter in the app's folder, and the config file itself is replaced by a
rename, so the folder is what is locked. The apps take no such lock: the compare-and-swap in
:mod:`provision.clients.jsonedit` covers them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from provision.errors import ClientConfigError

try:
    import fcntl
except ImportError:  # Windows: mcpctl runs there take no lock and rely on the change check alone
    fcntl = None  # type: ignore[assignment]

# How long to wait for another mcpctl run editing the same folder (an edit takes milliseconds).
LOCK_TIMEOUT_S = 10.0
_LOCK_POLL_S = 0.01


@contextlib.contextmanager
def writers_lock(directory: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold the folder's lock for the ``with`` block.

    Where the folder cannot be locked (no such folder yet, Windows, a file system without locks)
    the block runs without it.

    Raises:
        ClientConfigError: Another mcpctl run held the lock for ``LOCK_TIMEOUT_S``.
    """
    fd: int | None = None
    if enabled and fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
    try:
        if fd is not None:
            _lock_folder(fd, directory)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def _lock_folder(fd: int, directory: Path) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ClientConfigError(
                    f"another mcpctl run has been editing the files in {directory} for {LOCK_TIMEOUT_S:g} s",
                    hint="let it finish (or end it), then re-run",
                ) from None
            time.sleep(_LOCK_POLL_S)
        except OSError:
            return  # this file system cannot lock: go ahead without it
