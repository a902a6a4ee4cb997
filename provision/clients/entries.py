"""The MCP client entries mcpctl writes, and how an entry is recognised as one of ours.

Two entry styles launch the same remote server:

* ``proxy`` (default): ``mcpctl connect NAME``; our own SSH client (pinned host key, keepalive,
  reconnect) reads the profile at launch, so the entry never goes stale.
* ``ssh``: the system OpenSSH client runs the remote command directly; nothing of ours runs locally.

An entry is ours when it has one of these shapes (see :func:`is_mcpctl_entry`); we add no marker key,
because the apps validate their entries and an unknown key could make them reject the whole file.
Entries hold paths and options only, never key material or tokens.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from provision import shell
from provision.clients.programs import find_mcpctl, find_ssh
from provision.clients.system import LocalSystem
from provision.errors import ProfileError
from provision.layout import ATTACH_SCRIPT, SERVER_MODULE, RemoteLayout
from provision.profiles import Profile, known_hosts_path
from provision.ssh.profile_target import follow_sandbox

Style = Literal["proxy", "ssh"]

# Claude Desktop strips the environment it passes on; Win32-OpenSSH then exits 255 without a word.
WINDOWS_PROGRAMDATA = "C:\\ProgramData"
# `mcpctl connect` finds its profiles through these; a GUI app may not have them in its environment.
_XDG_VARIABLES = ("XDG_CONFIG_HOME", "XDG_STATE_HOME")
# An HTTP entry of ours sends the key from an environment variable it names, never the key itself.
HTTP_KEY_HEADER = "X-API-Key"
_HTTP_KEY_REFERENCE = re.compile(r"\$\{MCPCTL_[A-Z0-9_]+_API_KEY\}")


@dataclass(frozen=True)
class EntryInputs:
    """The few profile values an entry is built from.

    ``data`` holds local file paths (or bare names): the remote copy is ``REMOTE_DIR/data/BASENAME``.
    """

    name: str
    host: str | None
    port: int
    user: str
    remote_dir: str
    known_hosts: Path
    identity_file: Path | None = None
    host_key_alias: str | None = None
    use_agent: bool = False
    use_ssh_config: bool = False
    data: tuple[str, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()
    server_args: tuple[str, ...] = ()
    keepalive_interval: float = 15.0
    connect_timeout: float = 10.0

    @classmethod
    def from_profile(cls, profile: Profile, *, known_hosts: Path | None = None) -> EntryInputs:
        """Read the values from a profile; ``known_hosts`` defaults to the profile's own file.

        A sandbox profile's port is the one its sandbox listens on now: an ssh-style entry bakes it in.

        Raises:
            ProfileError: The profile's known_hosts directory cannot be created or updated.
            SandboxError: The sandbox's directory cannot be created.
        """
        profile = follow_sandbox(profile)
        if known_hosts is None:
            known_hosts = known_hosts_path(profile.name)
        return cls(
            name=profile.name,
            host=profile.host,
            port=profile.port,
            user=profile.user,
            remote_dir=str(profile.remote_dir),
            known_hosts=known_hosts,
            identity_file=profile.identity_file,
            host_key_alias=profile.host_key_alias,
            use_agent=profile.use_agent,
            use_ssh_config=profile.use_ssh_config,
            data=tuple(str(item) for item in profile.data),
            columns=tuple(profile.columns.items()),
            server_args=tuple(profile.server_args),
            keepalive_interval=profile.keepalive_interval,
            connect_timeout=profile.connect_timeout,
        )

    def server_argv(self) -> list[str]:
        """The server's argv on the host (see :meth:`provision.layout.RemoteLayout.server_argv`).

        Raises:
            ProfileError: ``remote_dir`` is not absolute, or the data files are not one usable file.
        """
        return RemoteLayout.of(self.remote_dir).server_argv(self.data, self.columns, self.server_args)


def default_server_name(profile_name: str) -> str:
    """Return the default key of our entry: ``sales-NAME``."""
    return f"sales-{profile_name}"


def remote_command_line(argv: Sequence[str]) -> str:
    """Return the one line ssh sends to the remote shell: ``exec`` + each part quoted exactly once.

    ``exec`` lets the server replace the shell, so a hangup or signal reaches the server itself.

    Raises:
        ProfileError: A part contains a NUL byte, which no shell can pass on.
    """
    try:
        return "exec " + shell.join(argv)
    except ValueError as err:
        raise ProfileError(str(err), hint="remove it from the profile") from None


def proxy_entry(
    name: str, system: LocalSystem | None = None, *, mcpctl_path: str | None = None
) -> dict[str, Any]:
    """Return ``{"command": ABS_MCPCTL, "args": ["connect", NAME]}``, with mcpctl's location variables.

    Raises:
        ClientConfigError: No mcpctl executable is found.
    """
    system = system or LocalSystem.current()
    entry: dict[str, Any] = {"command": mcpctl_path or find_mcpctl(system), "args": ["connect", name]}
    env: dict[str, str] = {}
    home = system.getenv("MCPCTL_HOME")
    if home:
        env["MCPCTL_HOME"] = os.path.abspath(os.path.expanduser(home))
    # Relative XDG values are invalid and ignored by mcpctl; passing them on would change that.
    env.update(
        {var: value for var in _XDG_VARIABLES if (value := system.getenv(var)) and os.path.isabs(value)}
    )
    if env:
        entry["env"] = env
    return entry


def ssh_entry(
    inputs: EntryInputs, system: LocalSystem | None = None, *, ssh_path: str | None = None
) -> dict[str, Any]:
    """Return an entry that runs the remote server through the OpenSSH client.

    Host keys are checked against the profile's own known_hosts; the server command is the last
    argument, as one line (ssh would join several arguments with spaces anyway).

    Raises:
        ProfileError: The profile has no host yet, or a value cannot be passed to ssh safely.
        ClientConfigError: There is no ssh client.
    """
    system = system or LocalSystem.current()
    if inputs.host is None:
        raise ProfileError(
            f"profile '{inputs.name}' has no host address yet",
            hint=f"launch it with `mcpctl provision {inputs.name}`",
        )
    line = remote_command_line(inputs.server_argv())
    args = ["-T"]
    if not inputs.use_ssh_config:
        args += ["-F", "none"]  # as `mcpctl connect` does: ~/.ssh/config must not reroute this entry
    args += ["-o", "BatchMode=yes"]
    if inputs.identity_file is not None or not inputs.use_agent:
        args += ["-o", "IdentitiesOnly=yes"]
    args += [
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=" + _ssh_option_path(inputs.known_hosts, system.windows),
        "-o", f"ServerAliveInterval={max(1, math.ceil(inputs.keepalive_interval))}",
        "-o", "ServerAliveCountMax=3",
        "-o", f"ConnectTimeout={max(1, math.ceil(inputs.connect_timeout))}",
    ]  # fmt: skip
    if inputs.host_key_alias:
        args += ["-o", f"HostKeyAlias={inputs.host_key_alias}"]
    if inputs.identity_file is not None:
        identity = str(inputs.identity_file)
        # ssh checks an -i path before expanding %-tokens in it, so such a path only works as an option.
        if "%" in identity:
            args += ["-o", "IdentityFile=" + _ssh_option_path(inputs.identity_file, system.windows)]
        else:
            args += ["-i", identity]
    args += ["-p", str(inputs.port), f"{inputs.user}@{inputs.host}", line]
    entry: dict[str, Any] = {"command": ssh_path or find_ssh(system), "args": args}
    if system.windows:
        entry["env"] = {"PROGRAMDATA": system.getenv("PROGRAMDATA") or WINDOWS_PROGRAMDATA}
    return entry


def _ssh_option_path(path: Path, windows: bool) -> str:
    """Write a path as the value of an ``-o Option=value`` argument, which ssh parses like a config line."""
    text = str(path).replace("\\", "/") if windows else str(path)  # Win32-OpenSSH takes '/' too
    if '"' in text or "\\" in text or any(ord(c) < 32 for c in text):
        raise ProfileError(
            f"the path {path} cannot be passed to ssh (quote, backslash or control character)",
            hint="move the file to a path without those characters, or use the default --style proxy entry",
        )
    text = text.replace("%", "%%")  # ssh expands %-tokens in these paths
    return f'"{text}"' if " " in text else text


def build_entry(
    inputs: EntryInputs, style: Style = "proxy", system: LocalSystem | None = None
) -> dict[str, Any]:
    """Return the entry for ``style``.

    Raises:
        ProfileError: The profile cannot be expressed as an ssh entry.
        ClientConfigError: The executable the entry launches is not found.
    """
    return proxy_entry(inputs.name, system) if style == "proxy" else ssh_entry(inputs, system)


def is_mcpctl_entry(entry: object) -> bool:
    """Tell whether an existing entry has the shape of one we write (so it may be replaced or removed)."""
    if not isinstance(entry, dict):
        return False
    if isinstance(entry.get("httpUrl"), str):  # `config gemini NAME --http` (provision.clients.http_entry)
        headers = entry.get("headers")
        value = headers.get(HTTP_KEY_HEADER) if isinstance(headers, dict) else None
        return isinstance(value, str) and _HTTP_KEY_REFERENCE.fullmatch(value) is not None
    command, args = entry.get("command"), entry.get("args")
    if not isinstance(command, str) or not isinstance(args, list) or not args:
        return False
    program = re.split(r"[\\/]", command)[-1].lower().removesuffix(".exe")
    first: object = args[0]
    last: object = args[-1]
    if program == "mcpctl":
        return first == "connect"
    return (
        program == "ssh"
        and isinstance(last, str)
        and last.startswith("exec ")
        # The warm-start launcher, or the server module that entries written before it start.
        and (f"/{ATTACH_SCRIPT} " in f"{last} " or f" -m {SERVER_MODULE}" in last)
    )
