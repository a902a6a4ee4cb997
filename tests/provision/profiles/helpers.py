"""Shared by the profile tests: a file's mode, and a profile file written by hand."""

from __future__ import annotations

import stat
from pathlib import Path

from provision.profiles import profiles_dir

BASIC = 'host = "10.0.0.5"\nuser = "ubuntu"\n'


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_profile(name: str, text: str) -> Path:
    """Write ``profiles/NAME.toml`` as a user would, and return its path."""
    path = profiles_dir() / f"{name}.toml"
    path.write_text(text)
    return path
