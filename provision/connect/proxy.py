"""The stdio proxy an MCP client runs (``mcpctl connect NAME``), between its pipes and the server on the host.

::

    client stdin/stdout  <->  this process  <->  SSH exec (no pty) of the profile's server command

:class:`Proxy` orchestrates the rooms around it: the client's side (:mod:`provision.connect.stdio`),
the server's (:mod:`provision.connect.link`), the session ledger (:mod:`provision.connect.ledger`) and
the reconnect policy (:mod:`provision.connect.settings`). What it guarantees:

- **stdout carries JSON-RPC only.** The real stdout is moved to a private descriptor before anything
  else happens (fd 1 then points at stderr, so a stray ``print`` in a library cannot reach the client),
  and only complete, parseable JSON-RPC 2.0 lines from the server are forwarded: banners, junk and
  unfinished lines go to the log instead.
- **The client's stdio survives the server going away.** When the SSH link drops (noticed by the
  keepalive if it goes silent) or the server process dies, the proxy reconnects with backoff, starts
  a fresh server, replays the handshake the client made and carries on; each new connection asks the
  profile where its host is now, so a sandbox restarted on another port is found there. Requests in
  flight at the drop that cannot change anything (listings, read-only idempotent tools:
  :mod:`provision.connect.replay`) are sent again under their own ids; the others are answered with
  an error saying they may be retried; requests arriving
  meanwhile wait (bounded) and are sent once the new server is ready. After ``give_up_after`` seconds
  without a server, or a server that keeps dying at start, waiting requests get an error and the
  proxy exits with the error's code.
- **Ids are the client's and the server's own**, except for the proxy's replayed requests, whose
  string ids carry a random per-process prefix and whose answers never reach the client.
- **Shutdown in MCP stdio order** on stdin EOF, SIGTERM, SIGINT or SIGHUP: the server's stdin is
  closed, it gets ``exit_grace`` seconds to exit, then its process group gets SIGTERM; then the
  connection closes and the exit code is 0.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence

from provision.connect.jsonrpc import Message, encode, opaque, parse
from provision.connect.ledger import Ledger
from provision.connect.link import Dialer, Link, shown
from provision.connect.settings import EXIT_UNEXPECTED, Outage, ProxySettings
from provision.connect.stdio import ClientGone, LocalPeer
from provision.errors import ConnectError, HostKeyError, McpctlError, ProfileError
from provision.ssh.target import Target

log = logging.getLogger(__name__)


class Proxy:
    """Relay one MCP client's stdio to a server process on the host, across reconnections.

    Args:
        name: The profile name (for messages).
        target: Where the server runs.
        command: The server's argv on the host (``RemoteLayout.server_argv``).
        settings: Tunables.
        retarget: Called (in a thread) before each new SSH connection for where the server runs now
            (``target_for(profile)``: a sandbox restarted on another port); None keeps ``target``.
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
        self.command = list(command)
        self.settings = settings or ProxySettings()
        self.dialer = Dialer(name, target, retarget)
        self.ledger = Ledger(
            queue_limit=self.settings.queue_limit,
            id_prefix=f"mcpctl-proxy-{secrets.token_hex(6)}-",
            dropped_message=(
                f"mcpctl: the connection to the server of '{name}' dropped while this request was in "
                "flight, so it may or may not have run; the proxy reconnects by itself: retry the request."
            ),
        )
        self._exit_code = 0
        self._link: Link | None = None  # the current server process
        self._open: Link | None = None  # the same, once it takes client traffic
        self._peer: LocalPeer | None = None
        self._stop_reason: str | None = None
        self._stopping: asyncio.Event | None = None
        self._launched = time.monotonic()

    @property
    def target(self) -> Target:
        """Where the server runs (as last looked up)."""
        return self.dialer.target

    @property
    def links_started(self) -> int:
        return self.dialer.links_started

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
        peer = LocalPeer(stdin_fd, stdout_fd)
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
            link, self._link, self._open = self._link, None, None
            if link is not None:
                await link.close(self.settings.exit_grace)
            await self.dialer.hang_up()
            peer.close()
        return self._exit_code

    # ----------------------------------------------------------------------------------- traffic

    async def _read_client(self) -> None:
        assert self._peer is not None
        async for line in self._peer.lines(self.settings.max_line):
            await self._from_client(line)
        self.stop("stdin closed")

    async def _from_client(self, line: bytes) -> None:
        # A line that is not JSON-RPC is still the client's: the server answers it with its own error.
        message = self.ledger.admit(parse(line) or opaque(line))
        if message is None:
            return
        link = self._open
        if link is not None and not link.output_ended and self.ledger.queued == 0:
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
        except ClientGone:
            self.stop("the client closed its end of stdout")

    async def _from_server(self, link: Link, message: Message) -> None:
        out, own = self.ledger.from_server(message)
        for part in own:
            if not link.answered(part) and "error" in part.data:
                log.warning("the server refused a replayed request: %s", shown(encode(part.data)))
        if out is not None:
            await self._to_client(out)

    # ------------------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        """Keep a server running for the client: start, serve, notice the end, back off, repeat."""
        outage = Outage(self.settings)
        while True:
            try:
                link = await self.dialer.spawn(self.command, self._launched)
            except (HostKeyError, ProfileError) as exc:
                await self._give_up(
                    exc, outage.since
                )  # waiting cannot fix a changed host key or a bad profile
                return
            except McpctlError as exc:
                outage.start_failed(exc)
                log.warning("cannot start the server of '%s': %s", self.name, exc)
            else:
                self._link = link
                link.start(self._from_server, self.settings.max_line)
                reason = await self._serve(link)
                outage.link_ended(healthy=link.healthy, failure=await self._link_lost(link, reason))
            if outage.hopeless():
                error = outage.error or ConnectError(
                    f"no server for '{self.name}'", hint=f"`mcpctl doctor {self.name}` checks each step"
                )
                await self._give_up(error, outage.since)
                return
            delay = outage.next_delay()
            log.info("reconnecting in %.2f s (attempt %d)", delay, outage.attempt)
            await asyncio.sleep(delay)

    async def _serve(self, link: Link) -> str:
        """Replay the session, send what waited, then relay until the server's output ends; say why."""
        problem = await self._replay(link)
        if problem is not None:
            log.warning("link #%d: %s", link.number, problem)
            link.process.close()
        else:
            await self._flush(link)
        return await link.ended()

    async def _replay(self, link: Link) -> str | None:
        """Give a fresh server the handshake the client made; return a problem, or None when done."""
        steps = self.ledger.replay()
        if steps:
            log.info("link #%d: replaying the client's initialize", link.number)
        for line, wait_for in steps:
            if wait_for is None:
                await link.send(line)
                continue
            answer = await link.ask(line, wait_for, self.settings.replay_timeout)
            if answer is None:
                if link.output_ended:
                    return None  # the server is gone: the caller reports why
                return f"no answer to the replayed initialize within {self.settings.replay_timeout:g} s"
            if "error" in answer.data:
                log.warning("the new server refused the replayed initialize: %s", shown(encode(answer.data)))
                continue
            result = answer.data.get("result")
            version = result.get("protocolVersion") if isinstance(result, dict) else None
            if version != self.ledger.protocol_version:
                log.warning(
                    "the new server speaks protocol %s, the client negotiated %s",
                    version,
                    self.ledger.protocol_version,
                )
        return None

    async def _flush(self, link: Link) -> None:
        """Send what waited, in order, then open the link to client traffic."""
        while (message := self.ledger.dequeue()) is not None:
            out = self.ledger.to_server(message)
            if out is not None:
                await link.send(out)
        # No await between the empty queue and this line: nothing can slip in between.
        self._open = link

    async def _link_lost(self, link: Link, reason: str) -> McpctlError | None:
        """Tell the client what it lost and forget the server; return a start failure, if it was one."""
        self._open = None
        self._link = None
        pending = self.ledger.in_flight
        for line in self.ledger.link_lost():
            await self._to_client(line)
        await link.settle()
        failure = link.start_failure(self.name, reason)
        log.warning(
            "link #%d lost after %.1f s: %s (%s); %d request(s) in flight answered with an error, "
            "%d sent again to the next server",
            link.number,
            time.monotonic() - link.started,
            reason,
            link.exit_description(),
            pending - self.ledger.resent,
            self.ledger.resent,
        )
        if link.remote.conn.is_closed():
            await self.dialer.hang_up()
        return failure

    async def _give_up(self, error: McpctlError, since: float) -> None:
        elapsed = time.monotonic() - since
        message = f"mcpctl gave up on the server of '{self.name}' after {elapsed:.1f} s: {error}"
        log.error("%s", message)
        fields = {"message": error.message, "hint": error.hint or "", "error": type(error).__name__}
        for line in self.ledger.abandon(message, fields):
            await self._to_client(line)
        self._exit_code = error.exit_code
        self.stop("gave up")


__all__ = ["EXIT_UNEXPECTED", "Proxy"]
