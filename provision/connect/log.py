"""The per-profile log of ``mcpctl connect``: where it is, its last lines, and its new lines as they come.

The proxy writes ``log_dir()/NAME.log`` and rotates it (``NAME.log.1`` ...) when it grows; ``follow``
notices a rotation and carries on with the new file, so ``mcpctl logs NAME -f`` can stay open for days.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from provision.errors import ProfileError
from provision.profiles import check_name, log_dir

POLL_INTERVAL = 0.2  # seconds between looks at a quiet log file
_BLOCK = 64 * 1024


def log_path(name: str) -> Path:
    """Return the log file ``mcpctl connect NAME`` writes (the file may not exist yet).

    Raises:
        ProfileError: ``name`` is not a valid profile name, or the log directory cannot be created.
    """
    # The name becomes a file name: a valid profile name cannot climb out of the directory.
    return log_dir() / f"{check_name(name)}.log"


def tail(path: Path, lines: int) -> list[str]:
    """Return the last ``lines`` lines of ``path`` (without line ends), reading from the end only.

    Bytes that are not UTF-8 are replaced, so a binary splash in the log cannot stop the reader.

    Raises:
        ProfileError: The file cannot be read.
    """
    if lines <= 0:
        return []
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            data = b""
            position = end
            # One more line end than asked for: the first line kept is then complete.
            while position > 0 and data.count(b"\n") <= lines:
                step = min(_BLOCK, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    data = data.removesuffix(b"\n")  # the last line's end does not start another line
    return [_text(line) for line in data.split(b"\n")[-lines:]] if data else []


def follow(
    path: Path,
    *,
    stop: Callable[[], bool] | None = None,
    interval: float = POLL_INTERVAL,
) -> Iterator[str]:
    """Yield each line appended to ``path`` from now on (without its line end), like ``tail -f``.

    The starting point is taken when this function is called, not at the first ``next()``: a line
    written in between is yielded. A line is yielded once it is complete. When the file is replaced
    (rotation) or truncated, what was left in the old file is yielded, then the new file from its start.
    A file that does not exist yet is waited for.

    Args:
        path: The log file.
        stop: Checked whenever there is nothing new; the iterator ends once it returns true (without
            it, the iterator never ends: the caller stops it, e.g. on Ctrl-C).
        interval: Seconds between looks at a quiet file.

    Raises:
        ProfileError: The file exists but cannot be read.
    """
    follower = _Follower(path)
    return follower.lines(stop or (lambda: False), interval)


class _Follower:
    """The open file, its identity and the unfinished last line, between polls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: io.BufferedReader | None = None
        self.identity: tuple[int, int] | None = None
        self.partial = b""
        self._open(at_end=True)

    def _open(self, *, at_end: bool) -> None:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return  # not written yet: the next poll looks again
        except OSError as exc:
            raise _unreadable(self.path, exc) from exc
        info = os.fstat(handle.fileno())
        if at_end:
            handle.seek(0, os.SEEK_END)
        self.handle, self.identity = handle, (info.st_dev, info.st_ino)

    def _close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle, self.identity = None, None

    def _read(self) -> list[str]:
        """Complete lines that arrived since the last read."""
        chunk = self.handle.read() if self.handle is not None else b""
        if not chunk:
            return []
        *complete, self.partial = (self.partial + chunk).split(b"\n")
        return [_text(line) for line in complete]

    def _replaced(self) -> bool:
        """Whether the path now names another file (rotated) or the file shrank (truncated)."""
        try:
            info = self.path.stat()
        except OSError:
            return False  # mid-rotation, the new file is not there yet (or unreadable: keep the old one)
        if self.handle is None:
            return True  # it has appeared
        return (info.st_dev, info.st_ino) != self.identity or info.st_size < self.handle.tell()

    def lines(self, stop: Callable[[], bool], interval: float) -> Iterator[str]:
        try:
            while True:
                found = self._read()
                yield from found
                if found:
                    continue
                if self._replaced():
                    yield from self._read()  # the old file's last words, written before the switch
                    if self.partial:
                        yield _text(self.partial)
                        self.partial = b""
                    self._close()
                    self._open(at_end=False)
                    continue
                if stop():
                    return
                time.sleep(interval)  # a plain file offers nothing to wait on: poll
        finally:
            self._close()


def _unreadable(path: Path, exc: OSError) -> ProfileError:
    return ProfileError(f"cannot read the log {path}: {exc.strerror or exc}", hint="check its permissions")


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", errors="replace")
