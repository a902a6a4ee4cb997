"""Turn a child forked by the warm server into the stdio server of one session.

The child takes the session's stdin, stdout and stderr as its own fds 0-2, its working directory,
umask and environment, becomes a session of its own (so its process group, Stan included, can be
signalled as one), drops everything of the warm server (listening socket, connections, lock), gets
fresh random state, and then runs exactly what ``mcp-sales serve`` runs, which exits the process.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from mcp_sales.warm.process import set_process_name


@dataclass(frozen=True)
class SessionRequest:
    """What the launch command sent: its descriptors and the context it would have run in."""

    fds: tuple[int, int, int]
    args: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    umask: int


def _reseed() -> None:
    """Forked children share the parent's random state: give each its own."""
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _take_descriptors(fds: tuple[int, int, int]) -> None:
    for target, fd in enumerate(fds):
        os.dup2(fd, target, inheritable=True)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)


def become_session(request: SessionRequest, release_parent: Callable[[], None]) -> NoReturn:
    """Run the session in this (forked) process; exits with the server's status, never returns.

    Args:
        request: The session.
        release_parent: Closes every descriptor of the warm server this child inherited.
    """
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        release_parent()
        os.setsid()
        _take_descriptors(request.fds)
        os.environ.clear()
        os.environ.update(request.env)
        if hasattr(time, "tzset"):
            time.tzset()
        os.umask(request.umask)
        with contextlib.suppress(OSError):
            os.chdir(request.cwd)
        _reseed()
        set_process_name("mcp-sales")
        from mcp_sales.__main__ import parse_args, serve

        sys.argv = ["mcp-sales", *request.args]
        serve(parse_args(request.args))  # exits the process
    except SystemExit as exc:  # argparse's usage error, or an explicit exit
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


def wait_for_session(channel: socket.socket, release_parent: Callable[[], None]) -> NoReturn:
    """Be the next session's process, forked ahead of time: wait for its request, then become it.

    The fork of the warm server is then off the session's path. The request arrives on ``channel``
    as its fields (NUL-separated, after a length line) with the three descriptors; an end of file
    (the warm server retired or exited) ends this process.
    """
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        release_parent()
        channel.setblocking(True)
        data, fds, _flags, _addr = socket.recv_fds(channel, 65536, 3)
        head, _, body = data.partition(b"\n")
        while len(body) < int(head or b"0"):
            more = channel.recv(65536)
            if not more:
                break
            body += more
        if not head or len(body) != int(head):
            os._exit(0)
        request = parse_request(body.decode("utf-8", "surrogateescape").split("\0"), fds)
    except BaseException:
        os._exit(0)  # nothing was handed over: the warm server serves the session itself
    become_session(request, channel.close)


def encode_for_standby(fields: Sequence[str]) -> bytes:
    """A request's fields as :func:`wait_for_session` reads them."""
    body = "\0".join(fields).encode("utf-8", "surrogateescape")
    return f"{len(body)}\n".encode() + body


def parse_request(fields: Sequence[str], fds: Sequence[int]) -> SessionRequest:
    """Read a ``session`` request's fields (after the op): fingerprint excluded.

    Raises:
        ValueError: the fields or descriptors are not a session request.
    """
    if len(fds) != 3:
        raise ValueError(f"a session needs 3 descriptors, got {len(fds)}")
    cwd, umask, count = fields[0], int(fields[1]), int(fields[2])
    args = tuple(fields[3 : 3 + count])
    if len(args) != count:
        raise ValueError("the request's argument count does not match")
    env: dict[str, str] = {}
    for item in fields[3 + count :]:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return SessionRequest((fds[0], fds[1], fds[2]), args, env, cwd, umask)
