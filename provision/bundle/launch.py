"""What runs inside the extension on the user's machine: the bundle's profile, then ``connect``.

Claude Desktop starts ``server/main.py`` of the unpacked bundle through uv, with the values of the
settings form in the environment (``MCPCTL_BUNDLE_*``). The profile is rebuilt from ``bundle.json``
and those values on every start, in a home of the bundle's own (``state_dir()/bundles/NAME``), so an
mcpctl profile of the same name elsewhere on the machine is never touched. The host keys pinned when
the bundle was made are the only keys accepted, whatever host name the user typed: they are pinned
under an alias, as for EC2 hosts whose address changes, and nothing is ever accepted on first use.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.errors import McpctlError, ProfileError
from provision.files import atomic_write

if TYPE_CHECKING:
    from provision.profiles import Profile

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1
ENV_HOST = "MCPCTL_BUNDLE_HOST"
ENV_PORT = "MCPCTL_BUNDLE_PORT"
ENV_USER = "MCPCTL_BUNDLE_USER"
ENV_KEY_FILE = "MCPCTL_BUNDLE_KEY_FILE"
ENV_DATA = "MCPCTL_BUNDLE_DATA"
USAGE = "usage: python -m provision.bundle.launch BUNDLE_JSON"


def host_key_alias(name: str) -> str:
    """The name the bundle's host keys are pinned under (any host the user types must present them)."""
    return f"{name}.mcpctl-bundle"


def _setting(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(key, "").strip()
    # A form field left empty may reach us unsubstituted: that is "not given", not a host name.
    return None if not value or value.startswith("${") else value


def _port(value: str | None, default: Any) -> Any:
    """The form's number (it may arrive as "2222" or "2222.0"); the profile's rule judges the rest."""
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else value


def bundle_profile(config: Mapping[str, Any], env: Mapping[str, str]) -> Profile:
    """The profile this start runs: ``bundle.json`` with the user's settings over it.

    Raises:
        ProfileError: The bundle file is not one mcpctl wrote, or a setting is invalid (which one, why).
    """
    from provision.profiles import new_profile

    if config.get("format") != BUNDLE_FORMAT or not isinstance(config.get("profile"), str):
        raise ProfileError(
            "this extension's bundle.json was not written by this mcpctl version",
            hint="make the extension again with `mcpctl bundle NAME` and reinstall it",
        )
    name = config["profile"]
    data = _setting(env, ENV_DATA)
    host = _setting(env, ENV_HOST)
    if host is None:
        raise ProfileError(
            "the extension has no host to connect to", hint="fill in Host in the extension's settings"
        )
    try:
        return new_profile(
            name=name,
            host=host,
            port=_port(_setting(env, ENV_PORT), config.get("port", 22)),
            user=_setting(env, ENV_USER) or config.get("user", ""),
            identity_file=_setting(env, ENV_KEY_FILE),
            host_key_alias=host_key_alias(name),
            remote_dir=config.get("remote_dir", ""),
            columns=config.get("columns", {}),
            server_args=[*(["--data", data] if data else []), *config.get("server_args", [])],
            connect_timeout=config.get("connect_timeout", 10.0),
            keepalive_interval=config.get("keepalive_interval", 15.0),
        )
    except ProfileError as exc:
        raise ProfileError(
            exc.message, hint="correct it in the extension's settings in Claude Desktop"
        ) from exc


def prepare(config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """Point ``MCPCTL_HOME`` at the bundle's home, save its profile and pin its keys; return its name.

    Raises:
        ProfileError: A setting is invalid, or the bundle's home cannot be written.
    """
    from provision.profiles import known_hosts_path, save_profile, state_dir

    lines = config.get("host_keys")
    if not isinstance(lines, list) or not lines or not all(isinstance(line, str) for line in lines):
        raise ProfileError(
            "this extension carries no pinned host key", hint="make it again with `mcpctl bundle NAME`"
        )
    name = str(config.get("profile", ""))
    home = state_dir() / "bundles" / name
    os.environ["MCPCTL_HOME"] = str(home)  # everything below, and connect, lives in the bundle's home
    profile = bundle_profile(config, env)
    save_profile(profile)
    known_hosts = known_hosts_path(profile.name)
    pins = "".join(f"{host_key_alias(profile.name)} {line}\n" for line in lines)
    try:
        atomic_write(known_hosts, pins.encode("ascii"))
    except (OSError, UnicodeEncodeError) as exc:
        raise ProfileError(f"cannot write {known_hosts}: {exc}", hint="check the folder") from exc
    return str(profile.name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``connect`` for the bundle whose ``bundle.json`` is the one argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        try:
            config = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProfileError(
                f"cannot read the extension's {args[0]}: {exc}",
                hint="reinstall the extension (make it again with `mcpctl bundle NAME`)",
            ) from exc
        name = prepare(config if isinstance(config, dict) else {}, os.environ)
    except McpctlError as exc:
        print(f"mcpctl bundle: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    from provision.connect.main import connect_main

    return connect_main(name)


if __name__ == "__main__":
    sys.exit(main())
