"""Keep stdout for the protocol: fd-level redirection and silencing of Prophet/cmdstanpy.

Python logging is not enough: Stan, cmdstanpy and Prophet print from C code and from loggers they
reset on import, and a single stray byte on stdout breaks the client's JSON-RPC stream. So the real
stdout is moved to a private descriptor as the first thing a serving process does, and fd 1 points at
stderr for everything else; fits additionally run inside :func:`stdout_to_stderr`, which also covers
in-process use (tests, ``mcp-sales check``) where nobody claimed fd 1 beforehand.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO

if sys.platform != "win32":
    import fcntl

_lock = threading.Lock()
_depth = 0  # how many threads are inside stdout_to_stderr() right now
_saved_fd: int | None = None


def _dup_private(fd: int) -> int:
    """Duplicate fd above the standard range, close-on-exec so child processes never inherit it."""
    if sys.platform == "win32":  # pragma: no cover - the server runs on POSIX hosts
        return os.dup(fd)
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(AttributeError, OSError, ValueError):
            stream.flush()


def claim_stdout() -> BinaryIO:
    """Move the real stdout to a private descriptor and point fd 1 at stderr, for the process's life.

    Call it before importing anything that could print. ``print()``, C ``printf`` and child processes
    that inherit fd 1 all land on stderr afterwards; only the returned stream reaches the real stdout.

    Returns:
        A buffered binary stream on the private duplicate of the original stdout (it never closes the
        descriptor); flush after each message.
    """
    _flush_std_streams()
    private = _dup_private(1)
    os.dup2(2, 1)
    # closefd=False: a transport thread may still block on it at exit; it must not be recycled under it.
    return os.fdopen(private, "wb", closefd=False)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point fd 1 at fd 2 for the duration of the block (re-entrant and thread-safe).

    Several fits may run in threads at once; fd 1 is saved by the first thread that enters and
    restored by the last that leaves, so an out-of-order exit can never leave fd 1 on stderr or
    restore it while another thread still needs it diverted.
    """
    global _depth, _saved_fd
    with _lock:
        if _depth == 0:
            _flush_std_streams()
            _saved_fd = _dup_private(1)
            os.dup2(2, 1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None:
                _flush_std_streams()
                os.dup2(_saved_fd, 1)
                os.close(_saved_fd)
                _saved_fd = None


def silence_stan_loggers() -> None:
    """Quiet cmdstanpy and Prophet's loggers; call before importing Prophet (idempotent).

    cmdstanpy adds its own INFO StreamHandler on first use unless its logger already has a handler, so
    a NullHandler is installed first; ``propagate=False`` keeps its per-iteration chatter out of ours.
    Prophet's plotting module logs an error when plotly is missing, which we never need.
    """
    stan = logging.getLogger("cmdstanpy")
    if not any(isinstance(h, logging.NullHandler) for h in stan.handlers):
        stan.addHandler(logging.NullHandler())
    stan.propagate = False
    stan.setLevel(logging.CRITICAL)
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)


def quiet_prophet_logger() -> None:
    """Prophet sets its logger to INFO at import time; call after importing it to keep warnings only."""
    logging.getLogger("prophet").setLevel(logging.WARNING)
