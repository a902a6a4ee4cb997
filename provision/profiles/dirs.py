"""The local directories mcpctl keeps its files in, created on first use with private modes.

Layout (``MCPCTL_HOME`` replaces both roots with ``$MCPCTL_HOME/config`` and ``$MCPCTL_HOME/state``)::

    ~/.config/mcpctl/profiles/NAME.toml      the profile (XDG_CONFIG_HOME honoured)
    ~/.local/state/mcpctl/known_hosts/NAME   the profile's pinned host key (XDG_STATE_HOME honoured)
    ~/.local/state/mcpctl/keys/              private keys mcpctl generated (0700)
    ~/.local/state/mcpctl/logs/              log files

Every directory mcpctl creates is 0700 and every file it writes is 0600: they can hold key paths,
instance ids and host keys, which are nobody else's business.
"""

from __future__ import annotations

import os
from pathlib import Path

from provision.errors import ProfileError
from provision.profiles.model import check_name

_DIR_MODE = 0o700


def ensure_dir(path: Path, *, private: bool = False) -> Path:
    """Create ``path`` (0700) if needed; with ``private``, also tighten an existing directory to 0700."""
    try:
        path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        if private and (path.stat().st_mode & 0o777) != _DIR_MODE:
            path.chmod(_DIR_MODE)
    except OSError as exc:
        raise ProfileError(
            f"cannot create the directory {path}: {exc.strerror or exc}",
            hint="make it writable or set MCPCTL_HOME to a writable directory",
        ) from exc
    return path


def _home_override() -> Path | None:
    value = os.environ.get("MCPCTL_HOME")
    return Path(value).expanduser().absolute() if value else None


def _xdg_base(variable: str, default: str) -> Path:
    # The XDG spec says relative values are invalid and must be ignored.
    value = os.environ.get(variable)
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / default


def config_dir() -> Path:
    """Return (and create) the config directory: ``$MCPCTL_HOME/config`` or ``~/.config/mcpctl``.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    home = _home_override()
    return ensure_dir(home / "config" if home else _xdg_base("XDG_CONFIG_HOME", ".config") / "mcpctl")


def state_dir() -> Path:
    """Return (and create) the state directory: ``$MCPCTL_HOME/state`` or ``~/.local/state/mcpctl``.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    home = _home_override()
    return ensure_dir(
        home / "state" if home else _xdg_base("XDG_STATE_HOME", ".local/state") / "mcpctl", private=True
    )


def profiles_dir() -> Path:
    """Return (and create) the directory holding ``NAME.toml`` profiles.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    return ensure_dir(config_dir() / "profiles")


def known_hosts_path(name: str) -> Path:
    """Return the path of profile ``name``'s own known_hosts file (its directory is created).

    Raises:
        ProfileError: If ``name`` is not a valid profile name or the directory cannot be created.
    """
    check_name(name)
    return ensure_dir(state_dir() / "known_hosts", private=True) / name


def log_dir() -> Path:
    """Return (and create, 0700) the directory for log files.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    return ensure_dir(state_dir() / "logs", private=True)


def keys_dir() -> Path:
    """Return (and create, 0700) the directory for private keys mcpctl generates.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    return ensure_dir(state_dir() / "keys", private=True)
