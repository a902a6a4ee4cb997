"""The Gemini CLI entry for a profile's HTTP server (``mcpctl config gemini NAME --http``).

The Gemini CLI speaks streamable HTTP itself (``httpUrl``). The entry never holds the key: its header
names an environment variable (``${MCPCTL_NAME_API_KEY}``), which the Gemini CLI resolves in every
string of its settings file when it loads them (its configuration docs: "String values within your
settings.json files can reference environment variables using either $VAR_NAME or ${VAR_NAME}
syntax"). The user exports the variable from the profile's 0600 key file before starting it.

The URL is where this machine reaches the server: a deployment's own URL, the sandbox's port on this
machine, or the local end of ``mcpctl tunnel NAME`` for a host.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from provision.clients.configure import set_our_entry
from provision.clients.entries import HTTP_KEY_HEADER, default_server_name
from provision.clients.jsonedit import ConfigChange
from provision.clients.locations import chosen_config_path
from provision.clients.system import LocalSystem
from provision.errors import ProfileError
from provision.host.http_keys import env_variable
from provision.profiles import Profile


def local_url(profile: Profile) -> str:
    """The MCP endpoint as this machine reaches it (see the module docstring).

    Raises:
        ProfileError: The profile has no HTTP server.
    """
    http = profile.http
    if http is None:
        raise ProfileError(
            f"profile '{profile.name}' has no HTTP server",
            hint=f"install one with `mcpctl provision {profile.name} --http`, or drop --http",
        )
    if http.url is not None:
        return http.url
    port = http.port if profile.kind == "sandbox" else (http.local_port or http.port)
    return f"http://127.0.0.1:{port}/mcp"


def http_entry(profile: Profile) -> dict[str, Any]:
    """``{"httpUrl": URL, "headers": {"X-API-Key": "${MCPCTL_NAME_API_KEY}"}}``: no key in the file.

    Raises:
        ProfileError: The profile has no HTTP server.
    """
    reference = "${" + env_variable(profile.name) + "}"
    return {"httpUrl": local_url(profile), "headers": {HTTP_KEY_HEADER: reference}}


def configure_gemini_http(
    profile: Profile,
    *,
    server_name: str | None = None,
    path: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    system: LocalSystem | None = None,
    now: datetime | None = None,
) -> ConfigChange:
    """Write (or preview) the ``httpUrl`` entry of ``profile`` in the Gemini CLI's settings.

    Raises:
        ProfileError: The profile has no HTTP server.
        ClientConfigError: As :func:`provision.clients.jsonedit.set_server` reports it.
    """
    system = system or LocalSystem.current()
    target = chosen_config_path(path, "gemini", system)
    name = server_name or default_server_name(profile.name)
    return set_our_entry(
        target, name, http_entry(profile), client="gemini", force=force, dry_run=dry_run, now=now
    )


__all__ = ["configure_gemini_http", "http_entry", "local_url"]
