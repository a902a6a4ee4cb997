"""profiles/dirs.py: where mcpctl keeps its local files (MCPCTL_HOME, XDG), created private."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ProfileError
from provision.profiles import config_dir, keys_dir, known_hosts_path, log_dir, profiles_dir, state_dir
from tests.provision.profiles.helpers import mode


def test_mcpctl_home_overrides_both_roots(mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(mcpctl_home / "ignored-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(mcpctl_home / "ignored-state"))
    assert config_dir() == mcpctl_home / "config"
    assert state_dir() == mcpctl_home / "state"
    assert profiles_dir() == mcpctl_home / "config" / "profiles"
    assert known_hosts_path("web") == mcpctl_home / "state" / "known_hosts" / "web"
    assert log_dir() == mcpctl_home / "state" / "logs"
    assert keys_dir() == mcpctl_home / "state" / "keys"
    for private in (state_dir(), keys_dir(), log_dir(), known_hosts_path("web").parent, profiles_dir()):
        assert mode(private) == 0o700, private


def test_xdg_directories_are_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPCTL_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    assert config_dir() == tmp_path / "xdg-config" / "mcpctl"
    assert state_dir() == tmp_path / "xdg-state" / "mcpctl"


def test_default_directories_without_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPCTL_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/invalid")  # the spec says: ignore it
    assert config_dir() == tmp_path / "home" / ".config" / "mcpctl"
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "mcpctl"


def test_keys_dir_is_tightened_if_it_exists_too_open(mcpctl_home: Path) -> None:
    loose = mcpctl_home / "state" / "keys"
    loose.mkdir(parents=True, mode=0o755)
    loose.chmod(0o755)
    assert mode(keys_dir()) == 0o700


def test_unwritable_home_is_a_profile_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MCPCTL_HOME", str(blocker))  # a file where a directory must go
    with pytest.raises(ProfileError, match="MCPCTL_HOME"):
        config_dir()
