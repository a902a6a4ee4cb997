"""What the client config tests share: fixed values, a described computer, entries and edits."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from provision.clients import entries, jsonedit
from provision.clients.entries import EntryInputs
from provision.clients.system import LocalSystem

NOW = datetime(2026, 11, 21, 21, 30, 0)
SERVER = "sales-demo"
BOUND = 60.0  # seconds any writer may take: an upper bound, never an expectation
SECRET_KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAnotreallyakey\n"


def posix_system(tmp_path: Path, **env: str) -> LocalSystem:
    return LocalSystem("linux", env, tmp_path / "home", tmp_path / "venv" / "bin" / "python")


def tool_system(tmp_path: Path, **env: str) -> LocalSystem:
    """A POSIX system with an mcpctl script beside its interpreter and an ssh on its PATH."""
    system = posix_system(tmp_path, PATH=str(tmp_path / "bin"), **env)
    for program in (system.executable.parent / "mcpctl", tmp_path / "bin" / "ssh"):
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    return system


def windows(tmp_path: Path, **env: str) -> LocalSystem:
    return LocalSystem("win32", env, tmp_path / "User", tmp_path / "venv" / "Scripts" / "python.exe")


def inputs(tmp_path: Path, **overrides: Any) -> EntryInputs:
    values: dict[str, Any] = {
        "name": "demo",
        "host": "203.0.113.7",
        "port": 2222,
        "user": "ubuntu",
        "remote_dir": "/home/ubuntu/mcpctl/demo",
        "known_hosts": tmp_path / "state" / "known_hosts" / "demo",
        "identity_file": tmp_path / "keys" / "demo_ed25519",
        "data": (str(tmp_path / "data" / "sales.csv"),),
    }
    values.update(overrides)
    return EntryInputs(**values)


def ours(command: str = "/opt/mcpctl/bin/mcpctl") -> dict[str, Any]:
    return {"command": command, "args": ["connect", "demo"]}


def write(path: Path, entry: dict[str, Any] | None = None, **kwargs: Any) -> jsonedit.ConfigChange:
    kwargs.setdefault("now", NOW)
    return jsonedit.set_server(path, SERVER, entry or ours(), is_ours=entries.is_mcpctl_entry, **kwargs)


def remove(path: Path, **kwargs: Any) -> jsonedit.ConfigChange:
    kwargs.setdefault("now", NOW)
    return jsonedit.remove_server(path, SERVER, is_ours=entries.is_mcpctl_entry, **kwargs)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def app_saves_before_our_rename(
    monkeypatch: pytest.MonkeyPatch, path: Path, versions: list[str]
) -> list[str]:
    """Make the running app save ``path`` again between our read and our rename, once per version.

    The save happens when our temp file is created, i.e. after the file was read and backed up and
    before it is replaced. Returns the list of versions saved so far.
    """
    real_mkstemp = tempfile.mkstemp
    saved: list[str] = []

    def app_saves(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if len(saved) < len(versions):
            saved.append(versions[len(saved)])
            path.write_text(saved[-1])  # in place, as an editor or the app does: the mode stays
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", app_saves)
    return saved
