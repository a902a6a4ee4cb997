"""``mcpctl connect NAME``: the stdio proxy an MCP client runs, between its pipes and the server on the host.

::

    client stdin/stdout  <->  this process  <->  SSH exec (no pty) of the profile's server command

What it guarantees:

- **stdout carries JSON-RPC only.** The real stdout is moved to a private descriptor before anything
  else happens (fd 1 then points at stderr, so a stray ``print`` in a library cannot reach the client),
  and only complete, parseable JSON-RPC 2.0 lines from the server are forwarded: banners, junk and
  unfinished lines go to the log instead.
- **The client's stdio survives the server going away.** When the SSH link drops (noticed by the
  keepalive if it goes silent) or the server process dies, the proxy reconnects with backoff, starts
  a fresh server, replays the handshake the client made (see :class:`provision.connect.jsonrpc.Ledger`) and
  carries on; each new connection asks the profile where its host is now, so a sandbox restarted on
  another port is found there. Requests in flight at the drop are answered with an error saying they
  may be retried; requests arriving meanwhile wait (bounded) and are sent once the new server is
  ready. After ``give_up_after`` seconds without a server, or a server that keeps dying at start,
  waiting requests get an error and the proxy exits with the error's code.
- **Ids are the client's and the server's own**, except for the proxy's replayed requests, whose
  string ids carry a random per-process prefix and whose answers never reach the client.
- **Shutdown in MCP stdio order** on stdin EOF, SIGTERM, SIGINT or SIGHUP: the server's stdin is
  closed, it gets ``exit_grace`` seconds to exit, then its process group gets SIGTERM; then the
  connection closes and the exit code is 0.
- **Everything diagnostic goes to the profile's log file** (``log_dir()/NAME.log``, rotated), the
  server's stderr included, with timings of connect, spawn and first message; it is also copied to
  stderr, which MCP clients keep in their own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from provision import shell
from provision.connect import jsonrpc
from provision.errors import ConnectError, HostKeyError, McpctlError, ProfileError, RemoteError
from provision.profiles import SANDBOX_HOSTS
from provision.ssh.profile_target import target_for
from provision.ssh.remote import Remote, open_remote
from provision.ssh.target import Target

if TYPE_CHECKING:
    from provision.profiles import Profile

log = logging.getLogger("provision.connect.proxy")
server_log = logging.getLogger("provision.connect.proxy.server")  # the server's own stderr, line by line

GIVE_UP_ENV = "MCPCTL_CONNECT_GIVE_UP"
LOG_MAX_BYTES = 4 * 1024 * 1024
LOG_BACKUPS = 3
EXIT_UNEXPECTED = 70  # what the CLI uses for an unexpected failure
_CHUNK = 64 * 1024
_START_WINDOW = 10.0  # seconds: a server ending sooner without a word counts as failing to start
_SHOWN = 300  # characters of a dropped line shown in the log
_CLOSE_TIMEOUT = 5.0


# ----------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ProxySettings:
    """Tunables of the proxy; the defaults suit Claude Desktop (60 s to answer ``initialize``)."""

    give_up_after: float = 120.0  # seconds without a working server before giving up
    # Before the first server ever answered: MCP clients such as Claude Desktop abandon an unanswered
    # initialize after 60 s, so the proxy gives up sooner and answers it with the reason.
    startup_give_up_after: float = 50.0
    backoff_initial: float = 0.2  # first reconnect delay; doubles per failed attempt
    backoff_max: float = 5.0
    queue_limit: int = 256  # messages waiting for a server
    start_failures: int = 3  # consecutive servers dying at start before giving up
    exit_grace: float = 1.0  # seconds the server gets to exit after its stdin closes
    replay_timeout: float = 30.0  # seconds a fresh server gets to answer the replayed initialize
    max_line: int = 64 * 1024 * 1024  # longest message accepted in either direction

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProxySettings:
        """Defaults, with ``give_up_after`` from ``$MCPCTL_CONNECT_GIVE_UP`` if set.

        Raises:
            ProfileError: The variable is not a positive number of seconds.
        """
        value = environ.get(GIVE_UP_ENV, "").strip()
        if not value:
            return cls()
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ProfileError(
                f"{GIVE_UP_ENV}={value!r} is not a number of seconds greater than 0; fix or remove it in "
                "the environment the MCP client passes (the `env` of its server entry)."
            )
        return cls(give_up_after=seconds)

    def backoff(self, attempt: int) -> float:
        """The delay before reconnect attempt ``attempt`` (0-based), with jitter.

        The jitter keeps the two proxies some clients start for one server from retrying in lockstep.
        """
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt, 32))
        return base * random.uniform(0.5, 1.0)


# ---------------------------------------------------------------------------------------- local side


class _ClientGone(Exception):
    """The client closed our stdout: nobody is left to answer."""


class _LocalPeer:
    """The client's end: chunks from stdin, lines to the (protected) stdout.

    Pipes, sockets and terminals use asyncio transports; anything else (a regular file, or Windows,
    whose loops cannot watch anonymous pipes) is read by a daemon thread and written with blocking
    writes. The descriptors are never closed here, and their blocking mode is restored on close
    (asyncio makes them non-blocking, which a terminal shared with a shell must not keep).
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
            reader = asyncio.StreamReader(limit=_CHUNK)
            try:
                transport, _ = await loop.connect_read_pipe(
                    lambda: asyncio.StreamReaderProtocol(reader),
                    os.fdopen(self._stdin_fd, "rb", buffering=0, closefd=False),
                )
                self._transports.append(transport)
                self._reader = reader
            except (ValueError, OSError):
                pass
            try:
                wtransport, protocol = await loop.connect_write_pipe(
                    asyncio.streams.FlowControlMixin,
                    os.fdopen(self._stdout_fd, "wb", buffering=0, closefd=False),
                )
                self._transports.append(wtransport)
                self._writer = asyncio.StreamWriter(wtransport, protocol, None, loop)
            except (ValueError, OSError):
                pass
        if self._reader is None:
            self._start_reader_thread(loop)

    def _start_reader_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._chunks = chunks
        fd = self._stdin_fd

        def pump() -> None:
            while True:
                try:
                    data = os.read(fd, _CHUNK)
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
                return await self._reader.read(_CHUNK)
            except (ConnectionError, OSError):
                return b""
        assert self._chunks is not None
        return await self._chunks.get()

    async def write(self, line: bytes) -> None:
        """Write one line (a newline is added).

        Raises:
            _ClientGone: The client closed its end.
        """
        data = line + b"\n"
        if self._writer is not None:
            if self._writer.transport.is_closing():
                raise _ClientGone
            self._writer.write(data)  # one call per line: concurrent writers never interleave
            try:
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                raise _ClientGone from exc
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._stdout_fd, view)
            except OSError as exc:
                raise _ClientGone from exc
            view = view[written:]

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for fd, blocking in self._blocking.items():
            with contextlib.suppress(OSError):
                os.set_blocking(fd, blocking)


# --------------------------------------------------------------------------------------- remote side


@dataclass(eq=False)
class _Link:
    """One server process on the host, and what the proxy knows of it."""

    number: int
    remote: Remote
    process: asyncssh.SSHClientProcess[bytes]
    started: float  # time.monotonic() at spawn
    healthy: bool = False  # it sent at least one valid JSON-RPC message
    waiters: dict[str, asyncio.Future[jsonrpc.Part]] = field(default_factory=dict)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    stdout_task: asyncio.Task[str] | None = None  # ends when the server's output ends; says why
    stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.remote.remote_pid(self.process)

    async def send(self, line: bytes) -> None:
        """Write one line to the server; a failure is left for the output pump to report."""
        try:
            self.process.stdin.write(line + b"\n")
            await self.process.stdin.drain()
        except (asyncssh.Error, OSError) as exc:
            log.debug("link #%d: write failed: %s", self.number, _reason(exc))

    def exit_description(self) -> str:
        status = self.process.returncode
        if status is None:
            return "no exit status"
        return f"killed by signal {-status}" if status < 0 else f"exit status {status}"


def _reason(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, asyncssh.Error) else str(exc)
    return reason or type(exc).__name__


def _show(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace")
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


# --------------------------------------------------------------------------------------------- proxy


class Proxy:
    """Relay one MCP client's stdio to a server process on the host, across reconnections.

    Args:
        name: The profile name (for messages).
        target: Where the server runs.
        command: The server's argv on the host (``provision.layout.RemoteLayout.server_argv``).
        settings: Tunables.
        retarget: Called (in a thread) before each new SSH connection for where the server runs now
            (``Profile.target``: a sandbox restarted on another port); None keeps ``target``.
    """

    def __init__(
        self,
        name: str,
        target: Target,
        command: Sequence[str],
        *,
        settings: ProxySettings | None = None,
        retarget: Callable[[], Target] | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self._retarget = retarget
        self.command = list(command)
        self.settings = settings or ProxySettings()
        self.ledger = jsonrpc.Ledger(
            queue_limit=self.settings.queue_limit,
            id_prefix=f"mcpctl-proxy-{secrets.token_hex(6)}-",
            dropped_message=(
                f"mcpctl: the connection to the server of '{name}' dropped while this request was in "
                "flight, so it may or may not have run; the proxy reconnects by itself: retry the request."
            ),
        )
        self.links_started = 0
        self._exit_code = 0
        self._remote: Remote | None = None
        self._link: _Link | None = None  # the current server process
        self._open: _Link | None = None  # the same, once it takes client traffic
        self._peer: _LocalPeer | None = None
        self._stop_reason: str | None = None
        self._stopping: asyncio.Event | None = None
        self._launched = time.monotonic()

    # ----------------------------------------------------------------------------------- control

    def stop(self, reason: str = "asked to stop") -> None:
        """Ask the proxy to shut down (safe to call from a signal handler installed on the loop)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._stopping is not None:
            self._stopping.set()

    async def run(self, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
        """Relay between the client's descriptors and the server until stdin closes or :meth:`stop`.

        Returns:
            The exit code: 0 after a clean shutdown, the error's code after giving up.
        """
        self._stopping = asyncio.Event()
        if self._stop_reason is not None:
            self._stopping.set()
        self._launched = time.monotonic()
        peer = _LocalPeer(stdin_fd, stdout_fd)
        await peer.open()
        self._peer = peer
        supervisor = asyncio.ensure_future(self._supervise())
        reader = asyncio.ensure_future(self._read_client())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({supervisor, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if supervisor.done() and not supervisor.cancelled() and supervisor.exception() is not None:
                log.error("the proxy failed", exc_info=supervisor.exception())
                self._exit_code = EXIT_UNEXPECTED
        finally:
            log.info("shutting down: %s", self._stop_reason or "the proxy failed")
            for task in (reader, supervisor, stopping):
                task.cancel()
            await asyncio.gather(reader, supervisor, stopping, return_exceptions=True)
            if self._link is not None:
                await self._close_link(self._link)
            await self._drop_remote()
            peer.close()
        return self._exit_code

    # ----------------------------------------------------------------------------- client side

    async def _read_client(self) -> None:
        assert self._peer is not None
        splitter = jsonrpc.LineSplitter(self.settings.max_line)
        while True:
            data = await self._peer.read()
            if not data:
                break
            for line in splitter.feed(data):
                await self._from_client(line)
        rest = splitter.rest()
        if rest.strip():
            await self._from_client(rest)
        if splitter.overflowed:
            log.warning(
                "dropped %d client message(s) longer than %d bytes", splitter.overflowed, splitter.max_line
            )
        self.stop("stdin closed")

    async def _from_client(self, line: bytes) -> None:
        if not line.strip():
            return
        # A line that is not JSON-RPC is still the client's: the server answers it with its own error.
        message = self.ledger.admit(jsonrpc.parse(line) or jsonrpc.opaque(line))
        if message is None:
            return
        link = self._open
        if link is not None and self.ledger.queued == 0:
            out = self.ledger.to_server(message)
            if out is not None:
                await link.send(out)
            return
        for error in self.ledger.enqueue(message):
            await self._to_client(error)

    async def _to_client(self, line: bytes) -> None:
        assert self._peer is not None
        try:
            await self._peer.write(line)
        except _ClientGone:
            self.stop("the client closed its end of stdout")

    # ----------------------------------------------------------------------------- server side

    async def _pump_stdout(self, link: _Link) -> str:
        """Forward the server's valid messages to the client until its output ends; return why it ended."""
        splitter = jsonrpc.LineSplitter(self.settings.max_line)
        reason = "the server closed its output"
        while True:
            try:
                data = await link.process.stdout.read(_CHUNK)
            except (asyncssh.Error, OSError) as exc:
                reason = f"the SSH connection failed ({_reason(exc)})"
                break
            if not data:
                break
            for line in splitter.feed(data):
                await self._from_server(link, line)
        if self._open is link:
            self._open = None  # from now on the client's messages wait for the next server
        rest = splitter.rest()
        if rest.strip():
            log.warning("firewall: dropped an unfinished line from the server: %s", _show(rest))
        if splitter.overflowed:
            log.warning(
                "firewall: dropped %d line(s) longer than %d bytes", splitter.overflowed, splitter.max_line
            )
        return reason

    async def _from_server(self, link: _Link, line: bytes) -> None:
        if not line.strip():
            return
        message = jsonrpc.parse(line)
        if message is None:
            log.warning("firewall: dropped a line from the server that is not JSON-RPC: %s", _show(line))
            return
        if not link.healthy:
            link.healthy = True
            log.info(
                "link #%d: first message %.0f ms after spawn (%.0f ms after launch)",
                link.number,
                (time.monotonic() - link.started) * 1000,
                (time.monotonic() - self._launched) * 1000,
            )
        out, own = self.ledger.from_server(message)
        for part in own:
            waiter = link.waiters.pop(str(part.id), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(part)
            elif "error" in part.data:
                log.warning("the server refused a replayed request: %s", _show(jsonrpc.encode(part.data)))
        if out is not None:
            await self._to_client(out)

    async def _pump_stderr(self, link: _Link) -> None:
        splitter = jsonrpc.LineSplitter(self.settings.max_line)
        while True:
            try:
                data = await link.process.stderr.read(_CHUNK)
            except (asyncssh.Error, OSError):
                data = b""
            lines = splitter.feed(data) if data else [splitter.rest()]
            for line in lines:
                text = line.decode("utf-8", errors="replace").rstrip()
                if text:
                    link.stderr_tail.append(text[:_SHOWN])
                    server_log.info("[#%d] %s", link.number, text[:4000])
            if not data:
                return

    # ------------------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        """Keep a server running for the client: start, serve, notice the end, back off, repeat."""
        outage = time.monotonic()  # when the client last had no working server
        attempt = 0
        failures = 0  # consecutive servers that died at start
        error: McpctlError | None = None
        served = False  # whether any server has answered yet
        while True:
            try:
                link = await self._start_link()
            except (HostKeyError, ProfileError) as exc:
                await self._give_up(exc, outage)  # waiting cannot fix a changed host key or a bad profile
                return
            except McpctlError as exc:
                error = exc
                failures += isinstance(exc, RemoteError)
                log.warning("cannot start the server of '%s': %s", self.name, exc)
            else:
                reason = await self._serve(link)
                served = served or link.healthy
                failed = await self._link_lost(link, reason)
                if failed is None:
                    outage, attempt, failures, error = time.monotonic(), 0, 0, None
                else:
                    error = failed
                    failures += isinstance(failed, RemoteError)
            limit = self.settings.give_up_after
            if not served:
                limit = min(limit, self.settings.startup_give_up_after)
            if failures >= self.settings.start_failures or time.monotonic() - outage >= limit:
                await self._give_up(error or ConnectError(f"no server for '{self.name}'"), outage)
                return
            delay = self.settings.backoff(attempt)
            attempt += 1
            log.info("reconnecting in %.2f s (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)

    async def _start_link(self) -> _Link:
        """Connect (or reuse a live connection) and start a server process with its pumps.

        Raises:
            HostKeyError, ProfileError, ConnectError, RemoteError: From :mod:`provision.ssh.remote`.
        """
        if self._remote is not None and self._remote.conn.is_closed():
            await self._drop_remote()
        if self._remote is None:
            await self._follow_host()
            started = time.monotonic()
            self._remote = await open_remote(self.target)
            log.info(
                "connected to %s@%s in %.0f ms",
                self.target.user,
                self.target.address,
                (time.monotonic() - started) * 1000,
            )
        started = time.monotonic()
        process = await self._remote.create_process(self.command)
        self.links_started += 1
        link = _Link(self.links_started, self._remote, process, started)
        self._link = link
        link.stdout_task = asyncio.ensure_future(self._pump_stdout(link))
        link.stderr_task = asyncio.ensure_future(self._pump_stderr(link))
        log.info(
            "link #%d: server started in %.0f ms (remote pid %s)",
            link.number,
            (time.monotonic() - started) * 1000,
            link.pid,
        )
        return link

    async def _follow_host(self) -> None:
        """Ask where the host is now, before connecting (a blocking look at local files: in a thread).

        Raises:
            ProfileError, SandboxError: From ``retarget``.
        """
        if self._retarget is None:
            return
        target = await asyncio.to_thread(self._retarget)
        if target.address != self.target.address:
            log.info("'%s' moved from %s to %s", self.name, self.target.address, target.address)
        self.target = target

    async def _serve(self, link: _Link) -> str:
        """Replay the session, send what waited, then relay until the server's output ends; say why."""
        assert link.stdout_task is not None
        problem = await self._replay(link)
        if problem is not None:
            log.warning("link #%d: %s", link.number, problem)
            link.process.close()
        else:
            await self._flush(link)
        await asyncio.wait({link.stdout_task})  # not `await task`: cancelling us must not cancel it
        return link.stdout_task.result() if not link.stdout_task.cancelled() else "cancelled"

    async def _replay(self, link: _Link) -> str | None:
        """Give a fresh server the handshake the client made; return a problem, or None when done."""
        assert link.stdout_task is not None
        steps = self.ledger.replay()
        if steps:
            log.info("link #%d: replaying the client's initialize", link.number)
        for line, wait_for in steps:
            if wait_for is None:
                await link.send(line)
                continue
            waiter: asyncio.Future[jsonrpc.Part] = asyncio.get_running_loop().create_future()
            link.waiters[wait_for] = waiter
            await link.send(line)
            watched: set[asyncio.Future[Any]] = {waiter, link.stdout_task}
            done, _ = await asyncio.wait(
                watched,
                timeout=self.settings.replay_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if waiter not in done:
                waiter.cancel()
                if link.stdout_task in done:
                    return None  # the server is gone: the caller reports why
                return f"no answer to the replayed initialize within {self.settings.replay_timeout:g} s"
            answer = waiter.result().data
            if "error" in answer:
                log.warning(
                    "the new server refused the replayed initialize: %s", _show(jsonrpc.encode(answer))
                )
            else:
                version = answer.get("result", {}).get("protocolVersion")
                if version != self.ledger.protocol_version:
                    log.warning(
                        "the new server speaks protocol %s, the client negotiated %s",
                        version,
                        self.ledger.protocol_version,
                    )
        return None

    async def _flush(self, link: _Link) -> None:
        """Send what waited, in order, then open the link to client traffic."""
        while (message := self.ledger.dequeue()) is not None:
            out = self.ledger.to_server(message)
            if out is not None:
                await link.send(out)
        # No await between the empty queue and this line: nothing can slip in between.
        self._open = link

    async def _link_lost(self, link: _Link, reason: str) -> McpctlError | None:
        """Tell the client what it lost and forget the server; return a start failure, if it was one."""
        self._open = None
        self._link = None
        pending = self.ledger.in_flight
        for line in self.ledger.link_lost():
            await self._to_client(line)
        # The exit status and the last stderr lines arrive just after the output ends: wait for them
        # (bounded: a silent link never sends them) before closing the channel for good.
        if link.stderr_task is not None:
            await asyncio.wait({link.stderr_task}, timeout=1.0)
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(link.process.wait_closed(), 1.0)
        link.process.close()
        connection_alive = not link.remote.conn.is_closed()
        log.warning(
            "link #%d lost after %.1f s: %s (%s); %d request(s) in flight answered with an error",
            link.number,
            time.monotonic() - link.started,
            reason,
            link.exit_description(),
            pending,
        )
        if not connection_alive:
            await self._drop_remote()
        if link.healthy or time.monotonic() - link.started > _START_WINDOW:
            return None
        tail = " | ".join(link.stderr_tail) or "(nothing on stderr)"
        if connection_alive:
            return RemoteError(
                f"the server on {self.target.address} ended ({link.exit_description()}) before answering "
                f"anything; it printed: {tail}; run `mcpctl doctor {self.name}` to check it."
            )
        return ConnectError(
            f"the SSH connection to {self.target.address} dropped before the server answered ({reason}); "
            f"`mcpctl doctor {self.name}` checks each step."
        )

    async def _give_up(self, error: McpctlError, since: float) -> None:
        elapsed = time.monotonic() - since
        message = f"mcpctl gave up on the server of '{self.name}' after {elapsed:.1f} s: {error}"
        log.error("%s", message)
        for line in self.ledger.abandon(message):
            await self._to_client(line)
        self._exit_code = error.exit_code
        self.stop("gave up")

    # --------------------------------------------------------------------------------- shutdown

    async def _close_link(self, link: _Link) -> None:
        """Close the server's stdin, give it ``exit_grace`` to exit, then SIGTERM its process group."""
        self._open = None
        self._link = None
        assert link.stdout_task is not None and link.stderr_task is not None
        with contextlib.suppress(asyncssh.Error, OSError):
            link.process.stdin.write_eof()
        done, _ = await asyncio.wait({link.stdout_task}, timeout=self.settings.exit_grace)
        if not done:
            log.info(
                "link #%d: the server did not exit within %g s of its stdin closing; sending SIGTERM",
                link.number,
                self.settings.exit_grace,
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(link.remote.kill(link.process, "TERM"), _CLOSE_TIMEOUT)
        link.process.close()
        await asyncio.wait({link.stdout_task, link.stderr_task}, timeout=1.0)
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(link.process.wait_closed(), 1.0)
        log.info("link #%d closed (%s)", link.number, link.exit_description())

    async def _drop_remote(self) -> None:
        remote, self._remote = self._remote, None
        if remote is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
                await asyncio.wait_for(remote.aclose(), _CLOSE_TIMEOUT)


# ------------------------------------------------------------------------------------ entry points


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


@contextlib.contextmanager
def proxy_logging(path: Path, *, stderr: bool = True) -> Iterator[None]:
    """Log the proxy (and the server's stderr) to ``path``, rotated, and to stderr, inside the block.

    Raises:
        ProfileError: The log file cannot be opened.
    """
    try:
        handlers: list[logging.Handler] = [
            RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        ]
    except OSError as exc:
        raise ProfileError(
            f"cannot open the log file {path}: {exc.strerror or exc}; check the directory."
        ) from exc
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    formatter = logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    targets = ((log, logging.INFO), (logging.getLogger("asyncssh"), logging.WARNING))
    saved = [(logger, logger.level) for logger, _ in targets]
    for handler in handlers:
        handler.setFormatter(formatter)
    for logger, level in targets:
        logger.setLevel(level)
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
            for handler in handlers:
                logger.removeHandler(handler)
        for handler in handlers:
            handler.close()


async def _run_with_signals(proxy: Proxy, stdin_fd: int, stdout_fd: int) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, proxy.stop, f"received {signal.Signals(signum).name}")
    return await proxy.run(stdin_fd, stdout_fd)


def _host_running(profile: Profile) -> Profile:
    """Bring the profile's host up if mcpctl can: start a stopped EC2 instance or the sandbox.

    Claude runs ``connect`` on demand, so a host stopped by autostop (or a sandbox stopped by
    ``sandbox down`` or a reboot) comes back here, within the client's 60 s budget where possible.

    Raises:
        CloudError, ConnectError, SandboxError: The host cannot be started.
    """
    if profile.kind == "ec2":
        from provision.ec2.lifecycle import ensure_running

        return ensure_running(profile, on_phase=lambda phase, detail: log.info("ec2 %s: %s", phase, detail))
    if profile.kind == "sandbox" and profile.host in SANDBOX_HOSTS:
        from provision.ssh import sandbox

        if sandbox.status() is None:
            # Its last port when free, else another: target_for(profile) follows it either way.
            info = sandbox.up()
            log.info("started the sandbox on %s:%d", info.host, info.port)
    return profile


def connect_main(name: str, *, command: Sequence[str] | None = None) -> int:
    """Run ``mcpctl connect NAME``: proxy this process's stdio to the profile's server until EOF.

    Args:
        name: The profile.
        command: Run this argv on the host instead of the profile's server (diagnostics, benchmarks).

    Returns:
        The exit code: 0 after a clean shutdown, else the code of the error that made it give up
        (2 profile, 3 connection, 4 host key, 5 server) or 70 for an unexpected failure.
    """
    from provision.connect.log import log_path
    from provision.layout import RemoteLayout
    from provision.profiles import load_profile

    try:
        wire = claim_stdout()
    except OSError as exc:
        print(
            f"mcpctl connect: error: stdout is not open ({exc.strerror}); run it from an MCP client.",
            file=sys.stderr,
        )
        return 1
    try:
        profile = load_profile(name)
        settings = ProxySettings.from_env(os.environ)
        argv = (
            list(command)
            if command is not None
            else RemoteLayout.of(profile.remote_dir).server_argv(
                profile.data, profile.columns, profile.server_args
            )
        )
        with proxy_logging(log_path(profile.name)):
            profile = _host_running(profile)
            target = target_for(profile)
            log.info(
                "mcpctl connect %s: %s@%s runs `%s`; gives up after %g s without a server",
                name,
                target.user,
                target.address,
                shell.join(argv),
                settings.give_up_after,
            )
            try:
                proxy = Proxy(name, target, argv, settings=settings, retarget=lambda: target_for(profile))
                return asyncio.run(_run_with_signals(proxy, 0, wire))
            except Exception:
                log.exception("the proxy stopped on an unexpected error")
                return EXIT_UNEXPECTED
    except McpctlError as exc:
        print(f"mcpctl connect: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        os.close(wire)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m provision.connect.proxy NAME`` (what ``mcpctl connect NAME`` runs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m provision.connect.proxy NAME", file=sys.stderr)
        return 2
    return connect_main(args[0])


__all__ = ["GIVE_UP_ENV", "Proxy", "ProxySettings", "claim_stdout", "connect_main", "main", "proxy_logging"]


if __name__ == "__main__":
    raise SystemExit(main())
