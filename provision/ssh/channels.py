"""The channel budget of one SSH connection: at most :data:`MAX_CHANNELS` open at once.

Stock sshd allows 10 sessions per connection (``MaxSessions``); mcpctl keeps two spare. Every command,
long-running process and the shared SFTP session holds one slot while its channel is open. sshd frees a
closed session lazily, so an open it refuses right after a close is retried briefly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncssh

from provision.errors import RemoteError
from provision.ssh.failures import dropped
from provision.ssh.target import Target

MAX_CHANNELS = 8
_T = TypeVar("_T")
_OPEN_RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2)  # seconds between refused channel opens


class ChannelSlots:
    """Counts and bounds the channels open on one connection, and opens them."""

    def __init__(self, conn: asyncssh.SSHClientConnection, target: Target) -> None:
        self.conn = conn
        self.target = target
        self._slots = asyncio.Semaphore(MAX_CHANNELS)
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """How many of the :data:`MAX_CHANNELS` slots are held right now."""
        return self._in_use

    async def acquire(self) -> None:
        """Take a slot, waiting while all are held."""
        await self._slots.acquire()
        self._in_use += 1

    def release(self) -> None:
        """Give a slot back."""
        self._in_use -= 1
        self._slots.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot while inside."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def open(self, opener: Callable[[], Awaitable[_T]]) -> _T:
        """Open a channel, retrying briefly when sshd refuses it although we are under the limit.

        sshd frees a closed session only on a later pass of its main loop, so an open that arrives
        right behind the close of another channel can be refused: a few quick retries absorb that.
        The caller holds the slot.
        """
        for delay in _OPEN_RETRY_DELAYS:
            try:
                return await opener()
            except asyncssh.ChannelOpenError:
                if self.conn.is_closed():
                    raise
            await asyncio.sleep(delay)
        return await opener()

    async def open_process(self, command: str, shown: str, **kwargs: Any) -> asyncssh.SSHClientProcess[bytes]:
        """Start ``command`` (a shell line) on a new session with binary I/O and no pty.

        Args:
            command: What the login shell runs.
            shown: The command as messages show it (secrets masked, no marker).
            **kwargs: Passed to ``asyncssh.SSHClientConnection.create_process``.

        Raises:
            RemoteError: The host refused a new session.
            ConnectError: The connection dropped.
        """
        try:
            return await self.open(
                lambda: self.conn.create_process(command, encoding=None, request_pty=False, **kwargs)
            )
        except asyncssh.ChannelOpenError as exc:
            if self.conn.is_closed():
                raise dropped(self.target, exc, f"starting `{shown}`") from exc
            raise RemoteError(
                f"{self.target.address} refused a new SSH session for `{shown}` ({exc.reason})",
                hint="too many sessions are open on this connection: sshd's MaxSessions is lower than 8 "
                "on the host",
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise dropped(self.target, exc, f"starting `{shown}`") from exc


__all__ = ["MAX_CHANNELS", "ChannelSlots"]
