"""Profiles: one TOML file per remote host, and the local directories mcpctl keeps its files in.

- :mod:`~provision.profiles.model`     the :class:`Profile` and what each of its fields may hold;
- :mod:`~provision.profiles.dirs`      where mcpctl keeps its local files (``MCPCTL_HOME``, XDG);
- :mod:`~provision.profiles.document`  a profile's TOML text, written back without losing the user's
  comments and key order;
- :mod:`~provision.profiles.store`     the saved profiles: list, load, save, remove.

Callers import from here; the names below are the whole public surface.
"""

from __future__ import annotations

from provision.profiles.dirs import config_dir, keys_dir, known_hosts_path, log_dir, profiles_dir, state_dir
from provision.profiles.document import parse_profile, profile_text
from provision.profiles.model import (
    NAME_PATTERN,
    NAME_RULE,
    SANDBOX_HOSTS,
    Ec2Settings,
    HttpSettings,
    Profile,
    check_name,
    default_remote_dir,
    new_profile,
)
from provision.profiles.store import list_profiles, load_profile, remove_profile, save_profile

__all__ = [
    "NAME_PATTERN",
    "NAME_RULE",
    "SANDBOX_HOSTS",
    "Ec2Settings",
    "HttpSettings",
    "Profile",
    "check_name",
    "config_dir",
    "default_remote_dir",
    "keys_dir",
    "known_hosts_path",
    "list_profiles",
    "load_profile",
    "log_dir",
    "new_profile",
    "parse_profile",
    "profile_text",
    "profiles_dir",
    "remove_profile",
    "save_profile",
    "state_dir",
]
