"""The one SFTP session of a connection: opened on first use, shared, closed with the connection.

It holds one channel slot for as long as it is open. SFTP failures inside a block become mcpctl's
errors: a lost connection is a ConnectError, any other file operation that fails a RemoteError.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncssh

from provision.errors import RemoteError
from provision.ssh.channels import ChannelSlots
from provision.ssh.failures import dropped


class SharedSftp:
    """Opens the SFTP session once per connection and hands it to every caller."""

    def __init__(self, slots: ChannelSlots) -> None:
        self._slots = slots
        self._client: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> asyncssh.SFTPClient:
        async with self._lock:
            if self._client is None:
                target = self._slots.target
                await self._slots.acquire()  # held until the session closes
                try:
                    self._client = await self._slots.open(self._slots.conn.start_sftp_client)
                except BaseException as exc:
                    self._slots.release()
                    if isinstance(exc, (asyncssh.Error, OSError)) and self._slots.conn.is_closed():
                        raise dropped(target, exc, "opening SFTP") from exc
                    if isinstance(exc, (asyncssh.ChannelOpenError, asyncssh.SFTPError)):
                        raise RemoteError(
                            f"{target.address} offers no SFTP ({exc.reason})",
                            hint="enable it in the host's sshd_config with `Subsystem sftp internal-sftp` "
                            "and restart sshd",
                        ) from exc
                    if isinstance(exc, (asyncssh.Error, OSError)):
                        raise dropped(target, exc, "opening SFTP") from exc
                    raise
            return self._client

    @asynccontextmanager
    async def session(self) -> AsyncIterator[asyncssh.SFTPClient]:
        """Use the session (opening it first if needed); SFTP errors escaping the block become ours.

        Raises:
            RemoteError: The host offers no SFTP, or an SFTP operation in the block failed.
            ConnectError: The connection dropped.
        """
        client = await self._open()
        try:
            yield client
        except asyncssh.SFTPConnectionLost as exc:
            raise dropped(self._slots.target, exc, "transferring files") from exc
        except asyncssh.SFTPError as exc:
            raise RemoteError(
                f"a file operation on {self._slots.target.address} failed: {exc.reason}",
                hint="check the path, its permissions and the free space on the host",
            ) from exc

    async def close(self, timeout: float) -> None:
        """Close the session if it was opened (waiting at most ``timeout`` seconds) and free its slot."""
        if self._client is None:
            return
        self._client.exit()
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self._client.wait_closed(), timeout)
        self._client = None
        self._slots.release()


__all__ = ["SharedSftp"]
