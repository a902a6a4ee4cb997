"""A profile's HTTP server as library calls: ``provision --http``, ``status`` and ``tunnel`` use these.

:func:`enable_http` runs after the normal provision (environment installed, self-check passed): it
makes the key (kept locally in a 0600 file), records the server in the profile (``[http]``) and
installs it on the host. :func:`http_status` and :func:`open_tunnel` reach it through SSH.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from provision.errors import ProfileError
from provision.host import http_install
from provision.host.http_install import ServiceMode
from provision.host.http_keys import ensure_key
from provision.host.http_reach import Health, get_health, server_base
from provision.host.http_service import HttpService, default_port
from provision.profiles import HttpSettings, Profile, load_profile, save_profile
from provision.ssh.profile_target import target_for
from provision.ssh.remote import connect

Phase = Callable[[str, str], None]


def http_settings(profile: Profile) -> HttpSettings:
    """The profile's HTTP settings, or the defaults for a profile that has none yet."""
    return profile.http or HttpSettings(port=default_port(profile.name))


def require_http(profile: Profile) -> HttpSettings:
    """The profile's HTTP settings.

    Raises:
        ProfileError: The profile has no HTTP server.
    """
    if profile.http is None:
        raise ProfileError(
            f"profile '{profile.name}' has no HTTP server",
            hint=f"install one with `mcpctl provision {profile.name} --http`",
        )
    return profile.http


async def enable_http(profile: Profile, *, on_phase: Phase | None = None) -> tuple[Profile, Health]:
    """Install (or update and restart) the HTTP server of a provisioned profile and wait until ready.

    Raises:
        ProfileError: The key file cannot be made, or a path cannot go into a unit.
        ConnectError, HostKeyError, RemoteError: As the SSH steps report them.
    """
    if profile.http is not None and profile.http.url is not None:
        raise ProfileError(
            f"profile '{profile.name}' is served at {profile.http.url}, not by its host",
            hint="remove url from the profile's [http] table to serve it from the host instead",
        )
    key = ensure_key(profile)
    settings = http_settings(profile)
    async with connect(target_for(profile)) as remote:
        mode = await http_install.detect_mode(remote)
        profile = profile.model_copy(update={"http": settings.model_copy(update={"service": mode})})
        save_profile(profile)  # before the install: status and stop find a half-installed server too
        health = await http_install.install(remote, HttpService.of(profile), key, mode)
    if on_phase is not None:
        kind = "systemd unit" if mode == "systemd" else "background process"
        on_phase("http", f"{kind} on the host's 127.0.0.1:{settings.port}, /health {health.describe()}")
    return profile, health


@dataclass(frozen=True)
class HttpStatus:
    """What ``mcpctl status NAME`` reports of a profile's HTTP server."""

    profile: str
    where: str  # the URL, or "HOST 127.0.0.1:PORT"
    service: ServiceMode | None  # None: a deployment reached by URL
    state: str  # systemd's word, running/stopped, or "remote" for a URL
    health: Health

    def as_dict(self) -> dict[str, object]:
        health = self.health
        return {
            "profile": self.profile,
            "where": self.where,
            "service": self.service,
            "state": self.state,
            "health": {"status": health.status, "body": health.body, "error": health.error},
        }


def base_of(url: str) -> str:
    """The server's base URL from its MCP endpoint (``https://h/mcp`` -> ``https://h``)."""
    return url.rstrip("/").removesuffix("/mcp")


async def http_status(name: str) -> HttpStatus:
    """The state of profile ``name``'s HTTP server and its ``/health``, read through SSH.

    Raises:
        ProfileError: No such profile, or it has no HTTP server.
        ConnectError, HostKeyError, RemoteError: The host cannot be reached.
    """
    profile = load_profile(name)
    settings = require_http(profile)
    if settings.url is not None:
        return HttpStatus(name, settings.url, None, "remote", await get_health(base_of(settings.url)))
    service = HttpService.of(profile)
    mode: ServiceMode = settings.service or "process"
    async with connect(target_for(profile)) as remote:
        state = await http_install.state(remote, service, mode)
        async with server_base(remote, service.port) as base:
            health = await get_health(base)
        where = f"{remote.target.address} 127.0.0.1:{service.port}"
    return HttpStatus(name, where, mode, state, health)


async def run_tunnel(
    name: str, *, local_port: int | None = None, on_ready: Callable[[str, Health], None]
) -> None:
    """Forward a local port to profile ``name``'s server until the SSH connection ends or this is cancelled.

    Args:
        name: The profile.
        local_port: The port here (None: the profile's ``http.local_port``, else its ``http.port``;
            0: a free one).
        on_ready: Called once the forward listens, with the MCP URL here and the server's health.

    Raises:
        ProfileError: No such profile, it has no HTTP server, or it is reached by URL (no tunnel).
        OptionError: The local port is taken.
        ConnectError, HostKeyError: The host cannot be reached or refuses to forward.
    """
    profile = load_profile(name)
    settings = require_http(profile)
    if settings.url is not None:
        raise ProfileError(
            f"profile '{name}' is served at {settings.url}: there is nothing to tunnel",
            hint="point the client at that URL",
        )
    port = (settings.local_port or settings.port) if local_port is None else local_port
    async with (
        connect(target_for(profile)) as remote,
        server_base(remote, settings.port, local_port=port) as base,
    ):
        on_ready(f"{base}/mcp", await get_health(base))
        await remote.conn.wait_closed()


__all__ = [
    "HttpStatus",
    "base_of",
    "enable_http",
    "http_settings",
    "http_status",
    "require_http",
    "run_tunnel",
]
