"""The proxy's side of the host: the SSH connection, and the server processes started over it.

A :class:`Dialer` keeps one SSH connection, reused while it lives and re-aimed at wherever the host is
now before each new one; every server process it starts is a :class:`Link`. A link is the firewall
on the server's output (only JSON-RPC passes), the server's stderr in the log, the proxy's own
requests to that server, and the MCP stdio shutdown order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from provision.connect.jsonrpc import LineSplitter, Message, Part, parse
from provision.connect.stdio import CHUNK
from provision.errors import ConnectError, McpctlError, RemoteError
from provision.ssh.remote import Remote, open_remote
from provision.ssh.target import Target

log = logging.getLogger(__name__)
server_log = logging.getLogger("provision.connect.server")  # the server's own stderr, line by line

START_WINDOW = 10.0  # seconds: a server ending sooner without a word counts as failing to start
CLOSE_TIMEOUT = 5.0
_SHOWN = 300  # characters of a dropped line shown in the log

OnMessage = Callable[["Link", Message], Awaitable[None]]


def reason_of(exc: BaseException) -> str:
    """A short reason for an SSH or OS failure, for the log."""
    reason = exc.reason if isinstance(exc, asyncssh.Error) else str(exc)
    return reason or type(exc).__name__


def shown(line: bytes) -> str:
    """A line as the log shows it: decoded, cut short, quoted."""
    text = line.decode("utf-8", errors="replace")
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


@dataclass(eq=False)
class Link:
    """One server process on the host, and what the proxy knows of it."""

    number: int
    remote: Remote
    process: asyncssh.SSHClientProcess[bytes]
    started: float  # time.monotonic() at spawn
    launched: float  # time.monotonic() at the proxy's start, for the log
    healthy: bool = False  # it sent at least one valid JSON-RPC message
    output_ended: bool = False  # its stdout ended: client traffic waits for the next link
    waiters: dict[str, asyncio.Future[Part]] = field(default_factory=dict)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    stdout_task: asyncio.Task[str] | None = None  # ends when the server's output ends; says why
    stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.remote.remote_pid(self.process)

    def start(self, on_message: OnMessage, max_line: int) -> None:
        """Start relaying: each valid message from the server goes to ``on_message``, stderr to the log."""
        self.stdout_task = asyncio.ensure_future(self._pump_stdout(on_message, max_line))
        self.stderr_task = asyncio.ensure_future(self._pump_stderr(max_line))

    async def send(self, line: bytes) -> None:
        """Write one line to the server; a failure is left for the output pump to report."""
        try:
            self.process.stdin.write(line + b"\n")
            await self.process.stdin.drain()
        except (asyncssh.Error, OSError) as exc:
            log.debug("link #%d: write failed: %s", self.number, reason_of(exc))

    async def ask(self, line: bytes, request_id: str, timeout: float) -> Part | None:
        """Send a request of the proxy's own and wait for its answer (see :meth:`answered`).

        Returns:
            The answer; None when the server's output ended first or ``timeout`` seconds passed
            (:attr:`output_ended` tells which).
        """
        assert self.stdout_task is not None
        waiter: asyncio.Future[Part] = asyncio.get_running_loop().create_future()
        self.waiters[request_id] = waiter
        await self.send(line)
        watched: set[asyncio.Future[Any]] = {waiter, self.stdout_task}
        await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        self.waiters.pop(request_id, None)
        if not waiter.done():
            waiter.cancel()
            return None
        return waiter.result()

    def answered(self, part: Part) -> bool:
        """Hand the answer to a request of :meth:`ask` to its waiter; False when nobody waits for it."""
        waiter = self.waiters.pop(str(part.id), None)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(part)
        return True

    async def ended(self) -> str:
        """Wait for the server's output to end; return why it did."""
        assert self.stdout_task is not None
        await asyncio.wait({self.stdout_task})  # not `await task`: cancelling us must not cancel it
        return self.stdout_task.result() if not self.stdout_task.cancelled() else "cancelled"

    async def _pump_stdout(self, on_message: OnMessage, max_line: int) -> str:
        """Pass the server's valid messages on until its output ends; return why it ended."""
        splitter = LineSplitter(max_line)
        reason = "the server closed its output"
        while True:
            try:
                data = await self.process.stdout.read(CHUNK)
            except (asyncssh.Error, OSError) as exc:
                reason = f"the SSH connection failed ({reason_of(exc)})"
                break
            if not data:
                break
            for line in splitter.feed(data):
                message = self._admit(line)
                if message is not None:
                    await on_message(self, message)
        self.output_ended = True  # from now on the client's messages wait for the next server
        rest = splitter.rest()
        if rest.strip():
            log.warning("firewall: dropped an unfinished line from the server: %s", shown(rest))
        if splitter.overflowed:
            log.warning("firewall: dropped %d line(s) longer than %d bytes", splitter.overflowed, max_line)
        return reason

    def _admit(self, line: bytes) -> Message | None:
        """The firewall: a line from the server that is JSON-RPC, or None (logged) when it is not."""
        if not line.strip():
            return None
        message = parse(line)
        if message is None:
            log.warning("firewall: dropped a line from the server that is not JSON-RPC: %s", shown(line))
            return None
        if not self.healthy:
            self.healthy = True
            now = time.monotonic()
            log.info(
                "link #%d: first message %.0f ms after spawn (%.0f ms after launch)",
                self.number,
                (now - self.started) * 1000,
                (now - self.launched) * 1000,
            )
        return message

    async def _pump_stderr(self, max_line: int) -> None:
        splitter = LineSplitter(max_line)
        while True:
            try:
                data = await self.process.stderr.read(CHUNK)
            except (asyncssh.Error, OSError):
                data = b""
            lines = splitter.feed(data) if data else [splitter.rest()]
            for line in lines:
                text = line.decode("utf-8", errors="replace").rstrip()
                if text:
                    self.stderr_tail.append(text[:_SHOWN])
                    server_log.info("[#%d] %s", self.number, text[:4000])
            if not data:
                return

    async def settle(self) -> None:
        """After the output ended: wait (bounded) for the exit status and last stderr lines, then close.

        They arrive just after the output ends; a silent link never sends them.
        """
        if self.stderr_task is not None:
            await asyncio.wait({self.stderr_task}, timeout=1.0)
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self.process.wait_closed(), 1.0)
        self.process.close()

    def start_failure(self, name: str, reason: str) -> McpctlError | None:
        """What went wrong if this server ended without ever getting going; None if it worked.

        Call after :meth:`settle`, so that the exit status and stderr are in.
        """
        if self.healthy or time.monotonic() - self.started > START_WINDOW:
            return None
        address = self.remote.target.address
        if not self.remote.conn.is_closed():
            tail = " | ".join(self.stderr_tail) or "(nothing on stderr)"
            return RemoteError(
                f"the server on {address} ended ({self.exit_description()}) before answering anything; "
                f"it printed: {tail}",
                hint=f"run `mcpctl doctor {name}` to check it",
            )
        return ConnectError(
            f"the SSH connection to {address} dropped before the server answered ({reason})",
            hint=f"`mcpctl doctor {name}` checks each step",
        )

    async def close(self, exit_grace: float) -> None:
        """Close the server's stdin, give it ``exit_grace`` to exit, then SIGTERM its process group."""
        assert self.stdout_task is not None and self.stderr_task is not None
        with contextlib.suppress(asyncssh.Error, OSError):
            self.process.stdin.write_eof()
        done, _ = await asyncio.wait({self.stdout_task}, timeout=exit_grace)
        if not done:
            log.info(
                "link #%d: the server did not exit within %g s of its stdin closing; sending SIGTERM",
                self.number,
                exit_grace,
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.remote.kill(self.process, "TERM"), CLOSE_TIMEOUT)
        self.process.close()
        await asyncio.wait({self.stdout_task, self.stderr_task}, timeout=1.0)
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self.process.wait_closed(), 1.0)
        log.info("link #%d closed (%s)", self.number, self.exit_description())

    def exit_description(self) -> str:
        status = self.process.returncode
        if status is None:
            return "no exit status"
        return f"killed by signal {-status}" if status < 0 else f"exit status {status}"


class Dialer:
    """The SSH connection server processes are started on: opened on demand, reused while it lives.

    Args:
        name: The profile name (for messages).
        target: Where the server runs.
        retarget: Called (in a thread) before each new SSH connection for where the server runs now
            (``target_for(profile)``: a sandbox restarted on another port); None keeps ``target``.
    """

    def __init__(self, name: str, target: Target, retarget: Callable[[], Target] | None = None) -> None:
        self.name = name
        self.target = target
        self._retarget = retarget
        self._remote: Remote | None = None
        self.links_started = 0

    @property
    def connected(self) -> bool:
        """Whether an SSH connection is open now."""
        return self._remote is not None and not self._remote.conn.is_closed()

    async def spawn(self, command: Sequence[str], launched: float) -> Link:
        """Connect (or reuse a live connection) and start a server process; it is not started yet.

        Raises:
            HostKeyError, ProfileError, ConnectError, RemoteError: From :mod:`provision.ssh.remote`.
            SandboxError: From ``retarget``.
        """
        if self._remote is not None and self._remote.conn.is_closed():
            await self.hang_up()
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
        process = await self._remote.create_process(command)
        self.links_started += 1
        link = Link(self.links_started, self._remote, process, started, launched)
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

    async def hang_up(self) -> None:
        """Close the SSH connection (bounded); the next :meth:`spawn` opens a new one."""
        remote, self._remote = self._remote, None
        if remote is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
                await asyncio.wait_for(remote.aclose(), CLOSE_TIMEOUT)


__all__ = ["Dialer", "Link", "reason_of", "shown"]
