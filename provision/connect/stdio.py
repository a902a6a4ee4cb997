"""The client's side of the proxy: its stdin and the stdout that carries JSON-RPC only.

:func:`claim_stdout` keeps stray prints off the wire; :class:`LocalPeer` reads the client's lines and
writes ours, on event-loop transports for pipes and sockets, and on a reader thread with blocking
writes for anything else (a regular file, a terminal, ``/dev/null``, or any pipe on Windows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator
from typing import IO, Any

from provision.connect.jsonrpc import LineSplitter

log = logging.getLogger(__name__)

CHUNK = 64 * 1024  # bytes read at once, from the client or the server


class ClientGone(Exception):
    """The client closed our stdout: nobody is left to answer."""


def claim_stdout() -> int:
    """Move the real stdout to a private descriptor and point fd 1 at stderr, for the process's life.

    Returns:
        The private descriptor (not inherited by child processes): the only way to the client.

    Raises:
        OSError: There is no stdout.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    private = os.dup(1)  # non-inheritable (PEP 446)
    os.dup2(2, 1)
    return private


def _pollable(fd: int) -> bool:
    """Whether ``fd`` is a pipe or a socket: what every event loop can watch.

    uvloop aborts the whole process (libuv asserts) when given a descriptor epoll refuses, such as a
    regular file or ``/dev/null``, instead of raising as asyncio does: so only these two are offered.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _private_copy(fd: int, mode: str) -> IO[Any] | None:
    """A duplicate of pipe or socket ``fd`` for a transport to own; None for anything else.

    A transport closes the descriptor it is given when it closes (uvloop does, even when told not
    to): a duplicate keeps the caller's open.
    """
    if not _pollable(fd):
        return None
    try:
        return os.fdopen(os.dup(fd), mode, buffering=0)
    except OSError:
        return None


class LocalPeer:
    """The client's end: chunks from stdin, lines to the (protected) stdout.

    Pipes and sockets (what MCP clients give) use event-loop transports; anything else (a regular
    file, a terminal, or Windows, whose loops cannot watch anonymous pipes) is read by a daemon thread
    and written with blocking writes. The descriptors are never closed here, and their blocking mode is
    restored on close (the loop makes them non-blocking, which a pipe shared with a shell must not keep).
    """

    def __init__(self, stdin_fd: int, stdout_fd: int) -> None:
        self._stdin_fd = stdin_fd
        self._stdout_fd = stdout_fd
        self._reader: asyncio.StreamReader | None = None
        self._chunks: asyncio.Queue[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._blocking: dict[int, bool] = {}

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if sys.platform != "win32":
            for fd in (self._stdin_fd, self._stdout_fd):
                with contextlib.suppress(OSError):
                    self._blocking[fd] = os.get_blocking(fd)
            reader = asyncio.StreamReader(limit=CHUNK)
            if (stdin := _private_copy(self._stdin_fd, "rb")) is not None:
                try:
                    transport, _ = await loop.connect_read_pipe(
                        lambda: asyncio.StreamReaderProtocol(reader), stdin
                    )
                    self._transports.append(transport)
                    self._reader = reader
                except (ValueError, OSError):
                    stdin.close()
            if (stdout := _private_copy(self._stdout_fd, "wb")) is not None:
                try:
                    wtransport, protocol = await loop.connect_write_pipe(
                        asyncio.streams.FlowControlMixin, stdout
                    )
                    self._transports.append(wtransport)
                    self._writer = asyncio.StreamWriter(wtransport, protocol, None, loop)
                except (ValueError, OSError):
                    stdout.close()
        if self._reader is None:
            self._start_reader_thread(loop)

    def _start_reader_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._chunks = chunks
        fd = self._stdin_fd

        def pump() -> None:
            while True:
                try:
                    data = os.read(fd, CHUNK)
                except OSError:
                    data = b""
                try:
                    loop.call_soon_threadsafe(chunks.put_nowait, data)
                except RuntimeError:  # the loop is closed: the proxy is done
                    return
                if not data:
                    return

        # A daemon: a read blocked on a silent stdin must not keep the process alive at exit.
        threading.Thread(target=pump, name="mcpctl-stdin", daemon=True).start()

    async def read(self) -> bytes:
        """The next chunk from stdin; b"" at end of file."""
        if self._reader is not None:
            try:
                return await self._reader.read(CHUNK)
            except (ConnectionError, OSError):
                return b""
        assert self._chunks is not None
        return await self._chunks.get()

    async def lines(self, max_line: int) -> AsyncIterator[bytes]:
        """The client's non-blank lines until stdin ends, the unfinished last one included.

        Lines longer than ``max_line`` are dropped (and counted in the log at the end).
        """
        splitter = LineSplitter(max_line)
        while data := await self.read():
            for line in splitter.feed(data):
                if line.strip():
                    yield line
        rest = splitter.rest()
        if rest.strip():
            yield rest
        if splitter.overflowed:
            log.warning("dropped %d client message(s) longer than %d bytes", splitter.overflowed, max_line)

    async def write(self, line: bytes) -> None:
        """Write one line (a newline is added).

        Raises:
            ClientGone: The client closed its end.
        """
        data = line + b"\n"
        if self._writer is not None:
            if self._writer.transport.is_closing():
                raise ClientGone
            self._writer.write(data)  # one call per line: concurrent writers never interleave
            try:
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                raise ClientGone from exc
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._stdout_fd, view)
            except OSError as exc:
                raise ClientGone from exc
            view = view[written:]

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        if sys.platform != "win32":  # open() records no modes there (the reader-thread path)
            for fd, blocking in self._blocking.items():
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, blocking)


__all__ = ["CHUNK", "ClientGone", "LocalPeer", "claim_stdout"]
