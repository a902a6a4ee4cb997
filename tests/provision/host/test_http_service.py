"""The HTTP server's unit file and command line (provision.host.http_service), and its local key file.

The unit is checked line by line for the hardening it promises, and by ``systemd-analyze verify`` (the
real parser: unknown directives, bad values, an ExecStart that is not executable) where it is installed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision.errors import ProfileError
from provision.host.http_keys import ensure_key, env_variable, key_path, read_key
from provision.host.http_service import (
    HttpService,
    default_port,
    exec_line,
    systemd_arg,
    unit_name,
    unit_text,
)
from provision.profiles import HttpSettings, Profile

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _profile(remote_dir: str, **fields: object) -> Profile:
    values: dict[str, object] = {
        "name": "sales",
        "host": "203.0.113.7",
        "user": "ann",
        "remote_dir": remote_dir,
        "data": ["/exports/sales 2024.csv"],
        "columns": {"operation": "CITY NAME"},
        "http": HttpSettings(port=18765),
    }
    values.update(fields)
    return Profile.model_validate(values)


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_unit_is_hardened_and_binds_the_server_to_loopback() -> None:
    service = HttpService.of(_profile("/srv/sales"))
    text = unit_text(service)
    units = _directives(text)
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "tmpfs",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "CapabilityBoundingSet": "",
        "BindReadOnlyPaths": "/srv/sales",
        "CacheDirectory": "mcp-sales-sales",
        "LoadCredential": "api-key:/srv/sales/.mcpctl/http/api-key",
        "UMask": "0077",
    }.items():
        assert units[key] == [value], key
    # The one writable place is the cache; the key comes as a credential, never as a literal.
    assert units["ReadWritePaths"] == ["%C/mcp-sales-sales"]
    assert "EnvironmentFile" not in units and "MCP_API_KEY" not in text
    argv = shlex.split(units["ExecStart"][0].replace("%%", "%"))
    assert argv[:5] == ["/srv/sales/.venv/bin/python", "-m", "mcp_sales", "serve", "--transport"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "18765"
    assert argv[argv.index("--api-key-file") + 1] == "%d/api-key"
    assert argv[argv.index("--cache-dir") + 1] == "%C/mcp-sales-sales"
    assert argv[argv.index("--data") + 1] == "/srv/sales/data/sales 2024.csv"
    assert argv[argv.index("--column") + 1] == "operation=CITY NAME"
    assert unit_name("sales") == "mcp-sales-sales.service"


def test_a_remote_dir_that_a_unit_cannot_name_is_refused_with_what_to_do() -> None:
    with pytest.raises(ProfileError) as caught:
        unit_text(HttpService.of(_profile("/srv/my sales")))
    assert "--remote-dir" in (caught.value.hint or "")


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30))
def test_an_exec_argument_reaches_the_server_exactly(arg: str) -> None:
    # systemd reads ExecStart= with C-like quoting, '%%' for '%' and '$$' for '$' (no expansion).
    quoted = systemd_arg(arg)
    unescaped = quoted.replace("%%", "%").replace("$$", "$")
    assert shlex.split(unescaped, posix=True) == [arg]


def test_a_control_character_in_an_argument_is_refused() -> None:
    with pytest.raises(ProfileError):
        exec_line(["/bin/python", "line\nbreak"])


def test_default_ports_are_stable_and_in_range() -> None:
    ports = {default_port(f"p{i}") for i in range(50)}
    assert all(20000 <= port < 30000 for port in ports) and len(ports) > 40
    assert default_port("sales") == default_port("sales")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    remote = tmp_path / "srv"
    (remote / ".venv" / "bin").mkdir(parents=True)
    (remote / ".venv" / "bin" / "python").symlink_to(sys.executable)
    unit = tmp_path / unit_name("sales")
    unit.write_text(unit_text(HttpService.of(_profile(str(remote)))))
    checked = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr
    assert "mcp-sales-sales.service" not in checked.stderr  # no warning about our unit at all
    # The check can fail: an unknown value is reported.
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    broken = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "Restart" in broken.stderr or "restart" in broken.stderr


# ------------------------------------------------------------------------------------- local key


def test_the_local_key_is_made_once_in_a_private_file(mcpctl_home: Path) -> None:
    profile = _profile("/srv/sales")
    key = ensure_key(profile)
    path = key_path(profile)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(key) >= 40 and read_key(profile) == key
    assert ensure_key(profile) == key  # a re-provision keeps the key every client already has
    assert key not in profile.to_toml()


def test_a_missing_or_broken_key_file_says_how_to_make_one(mcpctl_home: Path) -> None:
    profile = _profile("/srv/sales")
    with pytest.raises(ProfileError) as caught:
        read_key(profile)
    assert "provision sales --http" in (caught.value.hint or "")
    key_path(profile).write_text("short\n")
    with pytest.raises(ProfileError) as caught:
        read_key(profile)
    assert "does not hold a key" in caught.value.message


def test_the_environment_variable_name_is_a_valid_name() -> None:
    assert env_variable("east-1_a") == "MCPCTL_EAST_1_A_API_KEY"
    assert env_variable("east-1_a").isidentifier()
    assert os.sep not in env_variable("x")
