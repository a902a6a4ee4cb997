"""Where Claude Desktop and the Gemini CLI keep their config files (and Claude its logs), per platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.clients import locations
from provision.clients.system import LocalSystem
from provision.errors import ClientConfigError
from tests.provision.clients.helpers import (
    posix_system,
    windows,
)


def test_claude_location_on_macos(tmp_path: Path) -> None:
    system = LocalSystem("darwin", {}, tmp_path, Path("/usr/bin/python3"))
    expected = tmp_path / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
    assert locations.config_path("claude", system) == expected
    assert locations.claude_log_files("sales-demo", system) == [
        tmp_path / "Library" / "Logs" / "Claude" / "mcp-server-sales-demo.log"
    ]


def test_claude_location_on_windows_classic(tmp_path: Path) -> None:
    appdata, local = tmp_path / "Roaming", tmp_path / "Local"
    (local / "Packages" / "Microsoft.Something_123").mkdir(parents=True)
    system = windows(tmp_path, APPDATA=str(appdata), LOCALAPPDATA=str(local))
    assert locations.config_path("claude", system) == appdata / "Claude" / "claude_desktop_config.json"


def test_windows_env_names_are_case_insensitive_and_have_fallbacks(tmp_path: Path) -> None:
    assert locations.config_path("claude", windows(tmp_path, AppData=str(tmp_path / "R"))) == (
        tmp_path / "R" / "Claude" / "claude_desktop_config.json"
    )
    assert locations.config_path("claude", windows(tmp_path)) == (
        tmp_path / "User" / "AppData" / "Roaming" / "Claude" / "claude_desktop_config.json"
    )


def test_claude_location_on_windows_prefers_msix_package(tmp_path: Path) -> None:
    local = tmp_path / "Local"
    (local / "Packages" / "Claude_pzs8sxrjxfjjc").mkdir(parents=True)
    (tmp_path / "Roaming" / "Claude").mkdir(parents=True)
    (tmp_path / "Roaming" / "Claude" / "claude_desktop_config.json").write_text("{}")  # stale classic file
    system = windows(tmp_path, APPDATA=str(tmp_path / "Roaming"), LOCALAPPDATA=str(local))

    expected = local / "Packages" / "Claude_pzs8sxrjxfjjc" / "LocalCache" / "Roaming" / "Claude"
    assert locations.config_path("claude", system) == expected / "claude_desktop_config.json"
    assert locations.claude_log_files("s", system)[0] == expected / "logs" / "mcp-server-s.log"


def test_several_msix_packages_pick_the_one_with_a_config_or_refuse(tmp_path: Path) -> None:
    packages = tmp_path / "Local" / "Packages"
    for name in ("Claude_old", "Claude_new"):
        (packages / name / "LocalCache" / "Roaming" / "Claude").mkdir(parents=True)
    system = windows(tmp_path, LOCALAPPDATA=str(tmp_path / "Local"))

    with pytest.raises(ClientConfigError, match=r"several Claude packages.*--config-path"):
        locations.config_path("claude", system)

    in_use = packages / "Claude_new" / "LocalCache" / "Roaming" / "Claude" / "claude_desktop_config.json"
    in_use.write_text("{}")
    assert locations.config_path("claude", system) == in_use


def test_claude_location_on_linux(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    assert locations.config_path("claude", posix_system(tmp_path, XDG_CONFIG_HOME=str(xdg))) == (
        xdg / "Claude" / "claude_desktop_config.json"
    )
    # A relative XDG_CONFIG_HOME is invalid by the spec and ignored.
    assert locations.config_path("claude", posix_system(tmp_path, XDG_CONFIG_HOME="rel")) == (
        tmp_path / "home" / ".config" / "Claude" / "claude_desktop_config.json"
    )


def test_unknown_client_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError, match="unknown client 'cursor'"):
        locations.config_path("cursor", posix_system(tmp_path))  # type: ignore[arg-type]


@pytest.mark.parametrize("platform", ["darwin", "win32", "linux"])
def test_gemini_location(tmp_path: Path, platform: str) -> None:
    system = LocalSystem(platform, {}, tmp_path, Path("/x/python"))
    assert locations.config_path("gemini", system) == tmp_path / ".gemini" / "settings.json"
