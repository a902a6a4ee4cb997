"""Where each MCP client keeps its config file (and Claude Desktop its server logs), per platform.

Claude Desktop: macOS ``~/Library/Application Support/Claude``; Windows the MSIX package's
``%LOCALAPPDATA%\\Packages\\Claude_*\\LocalCache\\Roaming\\Claude`` when that package exists (the
packaged app never reads the classic file), else ``%APPDATA%\\Claude``; elsewhere
``$XDG_CONFIG_HOME/Claude``. Gemini CLI: ``~/.gemini/settings.json`` on every OS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from provision.clients.system import LocalSystem
from provision.errors import ClientConfigError

Client = Literal["claude", "gemini"]

CLAUDE_FILE = "claude_desktop_config.json"
# The app that also writes each client's file, as messages name it.
APP_NAMES: dict[Client, str] = {"claude": "Claude Desktop", "gemini": "the Gemini CLI"}


def app_name(client: Client) -> str:
    """The program that reads (and may rewrite) ``client``'s config file, as messages name it."""
    return APP_NAMES.get(client, "the app that uses it")


def config_path(client: Client = "claude", system: LocalSystem | None = None) -> Path:
    """Return the user-level config file of ``client`` (it may not exist yet).

    Raises:
        ClientConfigError: The client is unknown, or several Claude packages are installed and none or
            several have a config.
    """
    system = system or LocalSystem.current()
    if client == "gemini":
        return system.home / ".gemini" / "settings.json"
    if client != "claude":
        raise ClientConfigError(f"unknown client {client!r}", hint="use claude or gemini")
    return _claude_dir(system) / CLAUDE_FILE


def chosen_config_path(path: Path | None, client: Client, system: LocalSystem | None = None) -> Path:
    """The file to edit: ``path`` (``--config-path``) made absolute, else the client's usual one.

    Raises:
        ClientConfigError: As :func:`config_path`.
    """
    if path is not None:
        return Path(os.path.abspath(path.expanduser()))
    return config_path(client, system)


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
            f"several Claude packages are installed ({names}) and it is unclear which one is in use",
            hint="name the config file with --config-path",
        )
    return dirs[0] if dirs else None
