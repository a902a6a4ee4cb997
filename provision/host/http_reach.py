"""Reaching a profile's HTTP server, which listens on the host's 127.0.0.1 only: through SSH.

:func:`forwarded` is an SSH local forward (asyncssh ``forward_local_port``) from a port on this
machine's 127.0.0.1 to the server's port on the host, so only port 22 needs to be open. The sandbox
runs on this machine (and, like a host that allows no tunnels, refuses forwarding): its server is
reached directly. :func:`get_health` reads ``GET /health``, which needs no key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from provision.errors import ConnectError, OptionError, RemoteError
from provision.host.http_service import LISTEN_HOST
from provision.ssh.remote import Remote

HEALTH_TIMEOUT = 5.0
_POLL = 0.25


@contextlib.asynccontextmanager
async def forwarded(remote: Remote, port: int, *, local_port: int = 0) -> AsyncIterator[int]:
    """Forward ``127.0.0.1:local_port`` here to ``127.0.0.1:port`` on the host; yield the local port.

    Args:
        remote: The SSH connection to carry it.
        port: The server's port on the host.
        local_port: The port to listen on here (0: a free one).

    Raises:
        OptionError: ``local_port`` is taken on this machine.
        ConnectError: The host refused to forward (``AllowTcpForwarding no``) or the connection dropped.
    """
    try:
        listener = await remote.conn.forward_local_port(LISTEN_HOST, local_port, LISTEN_HOST, port)
    except OSError as exc:
        raise OptionError(
            f"cannot listen on 127.0.0.1:{local_port} here: {exc.strerror or exc}",
            hint="pass another --local-port (or 0 for a free one)",
        ) from None
    except asyncssh.Error as exc:
        raise ConnectError(
            f"{remote.target.address} refused to forward a port: {exc.reason}",
            hint="allow TCP forwarding for this user in the host's sshd_config (AllowTcpForwarding local)",
        ) from None
    try:
        yield listener.get_port()
    finally:
        listener.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(listener.wait_closed(), 5.0)


@contextlib.asynccontextmanager
async def server_base(remote: Remote, port: int, *, local_port: int = 0) -> AsyncIterator[str]:
    """The base URL (``http://127.0.0.1:P``) at which this machine reaches the server, inside the block.

    A sandbox profile's server runs on this machine: it is reached directly (``local_port`` unused).

    Raises:
        OptionError, ConnectError: See :func:`forwarded`.
    """
    if remote.target.sandbox:
        yield f"http://{LISTEN_HOST}:{port}"
        return
    async with forwarded(remote, port, local_port=local_port) as here:
        yield f"http://{LISTEN_HOST}:{here}"


@dataclass(frozen=True)
class Health:
    """What ``GET /health`` said: the HTTP status and JSON body, or why there was no answer."""

    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # no answer: why

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def starting(self) -> bool:
        return self.status == 503 and self.body.get("status") == "starting"

    def describe(self) -> str:
        """One phrase for people: ``ok (data 1a2b...)``, ``503 starting``, ``no answer (refused)``."""
        if self.status is None:
            return f"no answer ({self.error})"
        if self.ok:
            version = self.body.get("data_version")
            return f"ok (data {version})" if version else "ok"
        detail = self.body.get("error") or self.body.get("status") or ""
        return f"{self.status} {detail}".strip()


async def get_health(base_url: str, *, timeout: float = HEALTH_TIMEOUT) -> Health:
    """``GET {base_url}/health`` once."""
    import httpx2

    try:
        async with httpx2.AsyncClient(timeout=timeout, trust_env=False) as client:
            response = await client.get(f"{base_url}/health")
    except httpx2.HTTPError as exc:
        return Health(error=str(exc) or type(exc).__name__)
    try:
        body = json.loads(response.content)
    except ValueError:
        body = {}
    return Health(response.status_code, body if isinstance(body, dict) else {})


async def wait_healthy(
    base_url: str, name: str, *, within: float, gone: Callable[[], Awaitable[str | None]] | None = None
) -> Health:
    """Poll ``/health`` until it answers 200, for at most ``within`` seconds.

    Args:
        base_url: Where the server is reached from here.
        name: The profile (for the advice in errors).
        within: Seconds to wait (the server loads and converts its data before it is ready).
        gone: Asked between polls; a text (why the server is gone, e.g. its log's end) stops the wait.

    Raises:
        RemoteError: The server stopped, refused to start, or was not ready in time.
    """
    deadline = time.monotonic() + within
    health = Health(error="not asked yet")
    while time.monotonic() < deadline:
        health = await get_health(base_url)
        if health.ok:
            return health
        if health.status is not None and not health.starting:
            raise RemoteError(
                f"the HTTP server answered /health with {health.describe()}",
                hint=f"fix what it says (`mcpctl status {name}` shows it again) and provision again",
            )
        if gone is not None and (why := await gone()) is not None:
            raise RemoteError(
                f"the HTTP server stopped: {why}", hint=f"fix it and run `mcpctl provision {name} --http`"
            )
        await asyncio.sleep(_POLL)
    raise RemoteError(
        f"the HTTP server was not ready within {within:g} s: {health.describe()}",
        hint=f"`mcpctl status {name}` shows its state; a large data file takes longer the first time",
    )


__all__ = ["Health", "forwarded", "get_health", "server_base", "wait_healthy"]
