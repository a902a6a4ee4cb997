"""MCP client config entries: where Claude Desktop and the Gemini CLI keep them, and what we write.

Two entry styles launch the same remote server:

* ``proxy`` (default): ``mcpctl connect NAME``; our own SSH client (pinned host key, keepalive,
  reconnect) reads the profile at launch, so the entry never goes stale.
* ``ssh``: the system OpenSSH client runs the remote command directly; nothing of ours runs locally.

An entry is ours when it has one of these shapes (see :func:`is_mcpctl_entry`); we add no marker key,
because the apps validate their entries and an unknown key could make them reject the whole file.
Entries hold paths and options only, never key material or tokens. File edits are in ``clientconfig``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Literal

from provision import shell
from provision.clients.configfile import ConfigChange, remove_server, set_server
from provision.errors import ClientConfigError, ProfileError

if TYPE_CHECKING:
    from provision.profiles import Profile

Client = Literal["claude", "gemini"]
Style = Literal["proxy", "ssh"]

CLAUDE_FILE = "claude_desktop_config.json"
# The app that also writes each client's file, as messages name it.
APP_NAMES: dict[Client, str] = {"claude": "Claude Desktop", "gemini": "the Gemini CLI"}
# Claude Desktop strips the environment it passes on; Win32-OpenSSH then exits 255 without a word.
WINDOWS_PROGRAMDATA = "C:\\ProgramData"
# `mcpctl connect` finds its profiles through these; a GUI app may not have them in its environment.
_XDG_VARIABLES = ("XDG_CONFIG_HOME", "XDG_STATE_HOME")


@dataclass(frozen=True)
class LocalSystem:
    """The facts about this computer that entries and locations depend on, passed in so tests can vary them.

    Attributes:
        platform: A ``sys.platform`` value: ``darwin``, ``win32``, ``linux``...
        env: Environment variables.
        home: The user's home directory.
        executable: The Python interpreter running mcpctl (its directory holds the mcpctl script).
    """

    platform: str
    env: Mapping[str, str]
    home: Path
    executable: Path

    @classmethod
    def current(cls) -> LocalSystem:
        """Describe the computer this process runs on."""
        return cls(sys.platform, dict(os.environ), Path.home(), Path(sys.executable))

    @property
    def windows(self) -> bool:
        """Whether paths and programs follow Windows rules."""
        return self.platform == "win32"

    def getenv(self, name: str) -> str | None:
        """Return a non-empty variable (names are case-insensitive on Windows), else ``None``."""
        if self.windows:
            return next((v for k, v in self.env.items() if k.upper() == name.upper() and v), None)
        return self.env.get(name) or None


# ------------------------------------------------------------------------------------------ locations


def config_path(client: Client = "claude", system: LocalSystem | None = None) -> Path:
    """Return the user-level config file of ``client`` (it may not exist yet).

    Claude Desktop: macOS ``~/Library/Application Support/Claude``; Windows the MSIX package's
    ``%LOCALAPPDATA%\\Packages\\Claude_*\\LocalCache\\Roaming\\Claude`` when that package exists (the
    packaged app never reads the classic file), else ``%APPDATA%\\Claude``; elsewhere
    ``$XDG_CONFIG_HOME/Claude``. Gemini CLI: ``~/.gemini/settings.json`` on every OS.

    Raises:
        ClientConfigError: The client is unknown, or several Claude packages are installed and none or
            several have a config.
    """
    system = system or LocalSystem.current()
    if client == "gemini":
        return system.home / ".gemini" / "settings.json"
    if client != "claude":
        raise ClientConfigError(f"unknown client {client!r}; use claude or gemini")
    return _claude_dir(system) / CLAUDE_FILE


def claude_log_files(server_name: str, system: LocalSystem | None = None) -> list[Path]:
    """Return where Claude Desktop may keep the stderr log of server ``server_name``, likeliest first.

    Raises:
        ClientConfigError: Several Claude packages are installed and none or several have a config.
    """
    system = system or LocalSystem.current()
    name = f"mcp-server-{server_name}.log"
    if system.platform == "darwin":
        return [system.home / "Library" / "Logs" / "Claude" / name]
    if system.windows:
        local = Path(system.getenv("LOCALAPPDATA") or system.home / "AppData" / "Local")
        return [_claude_dir(system) / "logs" / name, local / "Claude" / "Logs" / name]
    return [_claude_dir(system) / "logs" / name]


def _claude_dir(system: LocalSystem) -> Path:
    if system.platform == "darwin":
        return system.home / "Library" / "Application Support" / "Claude"
    if system.windows:
        local = Path(system.getenv("LOCALAPPDATA") or system.home / "AppData" / "Local")
        packaged = _msix_dir(local / "Packages")
        roaming = Path(system.getenv("APPDATA") or system.home / "AppData" / "Roaming")
        return packaged or roaming / "Claude"
    xdg = system.getenv("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else system.home / ".config"
    return base / "Claude"


def _msix_dir(packages: Path) -> Path | None:
    try:
        found = sorted(p for p in packages.iterdir() if p.name.lower().startswith("claude_") and p.is_dir())
    except OSError:
        return None
    dirs = [p / "LocalCache" / "Roaming" / "Claude" for p in found]
    if len(dirs) > 1:
        # Leftovers of an old install: the one that already has a config is the one in use.
        dirs = [d for d in dirs if (d / CLAUDE_FILE).exists()] or dirs
    if len(dirs) > 1:
        names = ", ".join(p.name for p in found)
        raise ClientConfigError(
            f"several Claude packages are installed ({names}) and it is unclear which one is in use;"
            " name the config file with --config-path"
        )
    return dirs[0] if dirs else None


# -------------------------------------------------------------------------------------------- entries


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
        from provision.profiles import follow_sandbox, known_hosts_path

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


def default_server_name(profile_name: str) -> str:
    """Return the default key of our entry: ``sales-NAME``."""
    return f"sales-{profile_name}"


def server_command(
    remote_dir: str,
    data_files: Sequence[str | PurePath],
    columns: Mapping[str, str] | Sequence[tuple[str, str]],
    server_args: Sequence[str],
) -> list[str]:
    """Return the remote server's argv: the venv's python by absolute path, no PATH, no shell profile.

    Args:
        remote_dir: The absolute POSIX directory the project was synced to.
        data_files: Local data file paths (or names); the server reads ``REMOTE_DIR/data/BASENAME``.
        columns: Column overrides, ``field -> source column``.
        server_args: Extra arguments passed to the server unchanged.

    Raises:
        ProfileError: ``remote_dir`` is not absolute, or there is more than one data file (the server
            reads one) or a data file has no usable name.
    """
    root = PurePosixPath(remote_dir)
    if not root.is_absolute():
        raise ProfileError(
            f"remote_dir {remote_dir!r} is not an absolute path; set it to one such as /srv/NAME"
        )
    if len(data_files) > 1:
        raise ProfileError(
            f"the server reads one data file but the profile lists {len(data_files)}; keep one"
        )
    argv = [str(root / ".venv" / "bin" / "python"), "-m", "mcp_sales"]
    for item in data_files:
        # Either flavour of separator: the profile may come from Windows, the remote is always POSIX.
        name = PureWindowsPath(str(item)).name
        if name in ("", ".", ".."):
            raise ProfileError(f"the data file {str(item)!r} has no file name; name a file")
        argv += ["--data", str(root / "data" / name)]
    pairs = columns.items() if isinstance(columns, Mapping) else columns
    for field, source in pairs:
        argv += ["--column", f"{field}={source}"]
    return [*argv, *server_args]


def remote_command_line(argv: Sequence[str]) -> str:
    """Return the one line ssh sends to the remote shell: ``exec`` + each part quoted exactly once.

    ``exec`` lets the server replace the shell, so a hangup or signal reaches the server itself.

    Raises:
        ProfileError: A part contains a NUL byte, which no shell can pass on.
    """
    try:
        return "exec " + shell.join(argv)
    except ValueError as err:
        raise ProfileError(f"{err}; remove it from the profile") from None


def find_mcpctl(system: LocalSystem | None = None) -> str:
    """Return the absolute path of the mcpctl executable: next to this interpreter, else on PATH.

    Raises:
        ClientConfigError: No mcpctl executable is found.
    """
    system = system or LocalSystem.current()
    beside = system.executable.parent / ("mcpctl.exe" if system.windows else "mcpctl")
    if system.executable.is_absolute() and beside.is_file():
        return str(beside)
    found = shutil.which("mcpctl", path=system.getenv("PATH"))
    if found:
        return os.path.abspath(found)
    raise ClientConfigError(
        "cannot find the mcpctl executable for the client to launch; install mcpctl as a tool"
        " (for example `uv tool install` with the project's path) and re-run, or use the ssh style"
    )


def find_ssh(system: LocalSystem | None = None) -> str:
    """Return the absolute path of the OpenSSH client (on Windows, the one shipped with Windows).

    Raises:
        ClientConfigError: There is no ssh client.
    """
    system = system or LocalSystem.current()
    if system.windows:
        path = str(
            PureWindowsPath(system.getenv("SystemRoot") or "C:\\Windows", "System32", "OpenSSH", "ssh.exe")
        )
        # The file can only be checked on Windows itself; elsewhere we are just writing a path.
        if sys.platform != "win32" or Path(path).is_file():
            return path
    else:
        found = shutil.which("ssh", path=system.getenv("PATH"))
        if found:
            return os.path.abspath(found)
    raise ClientConfigError(
        "cannot find the OpenSSH client (ssh); install it (on Windows: Settings > Optional features >"
        " OpenSSH Client) and re-run, or use the proxy style"
    )


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
            f"profile '{inputs.name}' has no host address yet;"
            f" launch it with `mcpctl provision {inputs.name}`"
        )
    line = remote_command_line(
        server_command(inputs.remote_dir, inputs.data, inputs.columns, inputs.server_args)
    )
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
        raise ProfileError(f"the path {path} cannot be passed to ssh (quote, backslash or control character)")
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
    command, args = entry.get("command"), entry.get("args")
    if not isinstance(command, str) or not isinstance(args, list) or not args:
        return False
    program = re.split(r"[\\/]", command)[-1].lower().removesuffix(".exe")
    first: object = args[0]
    last: object = args[-1]
    if program == "mcpctl":
        return first == "connect"
    return program == "ssh" and isinstance(last, str) and last.startswith("exec ") and " -m mcp_sales" in last


# --------------------------------------------------------------------------------------- the file edit


def configure_client(
    inputs: EntryInputs,
    *,
    client: Client = "claude",
    style: Style = "proxy",
    server_name: str | None = None,
    path: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    system: LocalSystem | None = None,
    now: datetime | None = None,
) -> ConfigChange:
    """Write (or, with ``dry_run``, preview) our entry in the client's config file.

    Args:
        inputs: Values from the profile.
        client: ``claude`` (Claude Desktop) or ``gemini`` (Gemini CLI, user settings).
        style: ``proxy`` (``mcpctl connect``) or ``ssh`` (the OpenSSH client).
        server_name: The entry's key; default ``sales-NAME``.
        path: Use this file instead of the client's usual one (``--config-path``).
        force: Replace an entry of that name even if it is not ours.
        dry_run: Write nothing; the result carries the diff and the new text.
        system: The local computer's facts (default: this one).
        now: Time stamp for the backup's name.

    Raises:
        ClientConfigError: The file is invalid or read-only (left untouched), the name is taken, the
            file kept changing while it was edited, or writing failed.
        ProfileError: The profile cannot be expressed as an entry of this style.
    """
    system = system or LocalSystem.current()
    target = _resolve_path(path, client, system)
    entry = build_entry(inputs, style, system)
    name = _check_server_name(server_name or default_server_name(inputs.name))
    return set_server(
        target,
        name,
        entry,
        is_ours=is_mcpctl_entry,
        force=force,
        dry_run=dry_run,
        now=now,
        app=_app_name(client),
    )


def remove_client_entry(
    profile_name: str,
    *,
    client: Client = "claude",
    server_name: str | None = None,
    path: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    system: LocalSystem | None = None,
    now: datetime | None = None,
) -> ConfigChange:
    """Remove our entry (only it) from the client's config file; ``absent`` if there is none.

    Raises:
        ClientConfigError: The file is invalid or read-only (left untouched), the entry is not ours, the
            file kept changing while it was edited, or writing failed.
    """
    system = system or LocalSystem.current()
    target = _resolve_path(path, client, system)
    name = _check_server_name(server_name or default_server_name(profile_name))
    return remove_server(
        target, name, is_ours=is_mcpctl_entry, force=force, dry_run=dry_run, now=now, app=_app_name(client)
    )


def _app_name(client: Client) -> str:
    return APP_NAMES.get(client, "the app that uses it")


def _resolve_path(path: Path | None, client: Client, system: LocalSystem) -> Path:
    return Path(os.path.abspath(path.expanduser())) if path is not None else config_path(client, system)


def _check_server_name(name: str) -> str:
    if not name.strip() or any(ord(c) < 32 for c in name):
        raise ClientConfigError(f"{name!r} is not usable as a server name; choose a visible, non-empty name")
    return name
