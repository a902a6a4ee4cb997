"""The proxy's HTTP link: ``mcpctl connect`` for a profile whose server is an HTTP server.

The same :class:`~provision.connect.proxy.Proxy` runs (stdout firewall, handshake replay, reconnect
with backoff, give-up answers); only the way to the server differs. Instead of an SSH exec per server
process, :class:`HttpDialer` opens an :class:`~provision.connect.http_session.HttpSession` per link:

- a host or EC2 profile's server listens on the host's 127.0.0.1: the dialer keeps one SSH connection
  with a local forward to it (an internal tunnel), re-opened when it drops;
- a sandbox profile's server runs on this machine: it is reached directly;
- a deployment with ``http.url`` (``https://.../mcp``) is reached directly over TLS.

Before each link the dialer checks ``/health`` (a server starting or gone is waited for, like an SSH
host that is down) and the key (``/info``: a refused key ends the proxy with the reason, since waiting
cannot fix it). The key comes from the profile's 0600 key file and goes only into request headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import asyncssh
import httpx2

from provision.connect.http_session import HttpSession
from provision.connect.link import Dialer, Link
from provision.connect.proxy import EXIT_UNEXPECTED, Proxy
from provision.connect.settings import ProxySettings
from provision.errors import ConnectError, ProfileError
from provision.host.http_keys import read_key, read_key_file
from provision.profiles import Profile
from provision.ssh.profile_target import target_for
from provision.ssh.remote import Remote, open_remote
from provision.ssh.target import Target

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0


class _Channel:
    """What a link asks of its SSH connection: whether it is closed (the tunnel's, or never for a URL)."""

    def __init__(self, closed: Callable[[], bool]) -> None:
        self._closed = closed

    def is_closed(self) -> bool:
        return self._closed()


class _Carrier:
    """Stands where a link expects the SSH :class:`~provision.ssh.remote.Remote` of its process."""

    def __init__(self, target: Target, closed: Callable[[], bool]) -> None:
        self.target = target
        self.conn = _Channel(closed)

    def remote_pid(self, _process: object) -> int | None:
        return None

    async def kill(self, process: HttpSession, _signal: str = "TERM") -> None:
        process.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait_closed(), CLOSE_TIMEOUT)


class HttpDialer(Dialer):
    """Opens HTTP sessions with the server, through an SSH tunnel or directly (see the module docstring).

    Args:
        name: The profile name.
        target: The SSH target (for a tunnel), or one naming the URL's host (for messages only).
        key: The API key.
        port: The server's port on the host's 127.0.0.1 (tunnel or sandbox).
        url: The endpoint of a deployment reached directly (then ``port`` is unused).
        tunnel: Reach ``port`` through an SSH local forward (False: this machine's 127.0.0.1).
        retarget: Where the SSH host is now, before each new connection (see :class:`Dialer`).
    """

    def __init__(
        self,
        name: str,
        target: Target,
        *,
        key: str,
        port: int = 0,
        url: str | None = None,
        tunnel: bool = False,
        retarget: Callable[[], Target] | None = None,
    ) -> None:
        super().__init__(name, target, retarget)
        self._key = key
        self._port = port
        self._url = url
        self._tunnel = tunnel
        self._ssh: Remote | None = None
        self._listener: asyncssh.SSHListener | None = None

    @property
    def connected(self) -> bool:
        return self._ssh is not None and not self._ssh.conn.is_closed() if self._tunnel else True

    def _tunnel_closed(self) -> bool:
        return self._tunnel and (self._ssh is None or self._ssh.conn.is_closed())

    async def spawn(self, command: Sequence[str], launched: float) -> Link:
        """Check the server and open a session with it; the link is not started yet.

        Raises:
            ConnectError: The server (or the host carrying the tunnel) does not answer, or is starting.
            ProfileError: The server refuses the key.
            HostKeyError: The tunnel's host key changed.
        """
        started = time.monotonic()
        url = await self._endpoint()
        await self._probe(url)
        session = HttpSession(url, self._key, alive=lambda: not self._tunnel_closed())
        self.links_started += 1
        carrier = _Carrier(self.target, self._tunnel_closed)
        link = Link(
            self.links_started,
            cast(Remote, carrier),
            cast("asyncssh.SSHClientProcess[bytes]", session),
            started,
            launched,
        )
        log.info("link #%d: HTTP session with %s ready in %.0f ms", link.number, url, _ms(started))
        return link

    async def _endpoint(self) -> str:
        """The MCP endpoint as reached from here: the URL, this machine's port, or the tunnel's."""
        if self._url is not None:
            return self._url
        if not self._tunnel:
            return f"http://127.0.0.1:{self._port}/mcp"
        if self._tunnel_closed():
            await self.hang_up()
        if self._ssh is None:
            await self._follow_host()
            started = time.monotonic()
            self._ssh = await open_remote(self.target)
            try:
                self._listener = await self._ssh.conn.forward_local_port(
                    "127.0.0.1", 0, "127.0.0.1", self._port
                )
            except (asyncssh.Error, OSError) as exc:
                await self.hang_up()
                raise ConnectError(
                    f"cannot open the tunnel to {self.target.address}: {exc}",
                    hint=f"`mcpctl tunnel {self.name}` shows the same step",
                ) from None
            log.info(
                "tunnel to %s 127.0.0.1:%d open in %.0f ms",
                self.target.address,
                self._port,
                _ms(started),
            )
        assert self._listener is not None
        return f"http://127.0.0.1:{self._listener.get_port()}/mcp"

    async def _probe(self, url: str) -> None:
        base = url.rstrip("/").removesuffix("/mcp")
        where = self._url or f"127.0.0.1:{self._port} on {self.target.address}"
        try:
            async with httpx2.AsyncClient(timeout=PROBE_TIMEOUT, trust_env=False) as client:
                health = await client.get(f"{base}/health")
                if health.status_code != 200:
                    raise ConnectError(
                        f"the HTTP server of '{self.name}' at {where} is not ready "
                        f"(/health: {health.status_code} {_said(health)})",
                        hint=f"`mcpctl status {self.name}` shows its state",
                    )
                info = await client.get(f"{base}/info", headers={"x-api-key": self._key})
        except httpx2.HTTPError as exc:
            raise ConnectError(
                f"the HTTP server of '{self.name}' does not answer at {where} ({type(exc).__name__})",
                hint=f"`mcpctl status {self.name}` shows its state; "
                f"`mcpctl provision {self.name} --http` (re)starts it",
            ) from None
        if info.status_code in (401, 403):
            raise ProfileError(
                f"the HTTP server of '{self.name}' at {where} refused the API key ({info.status_code})",
                hint=f"run `mcpctl provision {self.name} --http` to install this machine's key there",
            )

    async def hang_up(self) -> None:
        """Close the tunnel and its SSH connection (bounded); the next spawn opens new ones."""
        listener, self._listener = self._listener, None
        ssh, self._ssh = self._ssh, None
        if listener is not None:
            listener.close()
        if ssh is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
                await asyncio.wait_for(ssh.aclose(), CLOSE_TIMEOUT)


def _ms(since: float) -> float:
    return (time.monotonic() - since) * 1000


def _said(response: httpx2.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    return str(body.get("error") or body.get("status") or "") if isinstance(body, dict) else ""


@dataclass(frozen=True)
class HttpEndpoint:
    """Where ``mcpctl connect NAME`` finds an HTTP server, and the key it sends."""

    name: str
    target: Target  # the SSH target of the tunnel, or one naming the URL's host (messages only)
    key: str
    port: int = 0
    url: str | None = None
    tunnel: bool = False
    retarget: Callable[[], Target] | None = None

    @property
    def where(self) -> str:
        return self.url or f"127.0.0.1:{self.port} on {self.target.address}"


def _url_target(name: str, url: str) -> Target:
    parts = urlsplit(url)
    host, port = parts.hostname or "?", parts.port or 443
    return Target(host=host, port=port, user="https", known_hosts=Path(), name=name)


def profile_endpoint(profile: Profile) -> HttpEndpoint:
    """The HTTP server of a profile with ``[http]``: a URL, the sandbox's port here, or a tunnel.

    Raises:
        ProfileError: No key file.
        SandboxError: The sandbox's directory cannot be created.
    """
    http = profile.http
    assert http is not None
    key = read_key(profile)
    if http.url is not None:
        return HttpEndpoint(profile.name, _url_target(profile.name, http.url), key, url=http.url)
    target = target_for(profile)
    return HttpEndpoint(
        profile.name,
        target,
        key,
        port=http.port,
        tunnel=not target.sandbox,
        retarget=functools.partial(target_for, profile),
    )


def deployment_endpoint(name: str) -> HttpEndpoint | None:
    """The endpoint of deployment ``name`` (``mcpctl deploy``), or None when there is none.

    Raises:
        ProfileError: Its record or key file cannot be read.
    """
    from provision.deploy.record import endpoint

    found = endpoint(name)
    if found is None:
        return None
    url, key_file = found
    return HttpEndpoint(name, _url_target(name, url), read_key_file(key_file, name), url=url)


def http_proxy(endpoint: HttpEndpoint, settings: ProxySettings) -> Proxy:
    """The usual proxy, with an :class:`HttpDialer` as its way to the server."""
    dialer = HttpDialer(
        endpoint.name,
        endpoint.target,
        key=endpoint.key,
        port=endpoint.port,
        url=endpoint.url,
        tunnel=endpoint.tunnel,
        retarget=endpoint.retarget,
    )
    proxy = Proxy(endpoint.name, endpoint.target, ["http"], settings=settings)
    proxy.dialer = dialer
    return proxy


def run_http_proxy(
    endpoint: HttpEndpoint,
    settings: ProxySettings,
    wire: int,
    run: Callable[[Proxy, int, int], Coroutine[Any, Any, int]],
) -> int:
    """Run ``mcpctl connect`` over an HTTP link until the client goes away; return the exit code."""
    proxy = http_proxy(endpoint, settings)
    log.info(
        "mcpctl connect %s: the HTTP server at %s; gives up after %g s without it",
        endpoint.name,
        endpoint.where,
        settings.give_up_after,
    )
    try:
        return asyncio.run(run(proxy, 0, wire))
    except Exception:
        log.exception("the proxy stopped on an unexpected error")
        return EXIT_UNEXPECTED


__all__ = [
    "HttpDialer",
    "HttpEndpoint",
    "deployment_endpoint",
    "http_proxy",
    "profile_endpoint",
    "run_http_proxy",
]
