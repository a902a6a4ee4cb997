"""The config entry phase on config files written for each case (no SSH: the entry is only read)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from provision.doctor.entry import check_config_entry, command_problem, stale_port
from provision.doctor.launch import Launch

from .conftest import MakeDiagnosis


def _entry_check(diagnosis: MakeDiagnosis, config: Path, servers: Any = None, **fields: Any) -> Any:
    if servers is not None:
        config.write_text(json.dumps({"mcpServers": servers}))
    dx = diagnosis(config_path=config, **fields)
    check_config_entry(dx)
    return dx


def test_a_missing_file_is_a_warning_and_the_default_command_is_checked(
    diagnosis: MakeDiagnosis, mcpctl_home: Path, tmp_path: Path
) -> None:
    dx = _entry_check(diagnosis, tmp_path / "claude.json")
    check = dx.checks[-1]
    assert check.ok and check.warning and "does not exist" in check.detail
    assert check.fix == "add the entry with `mcpctl config claude demo`, then restart Claude Desktop."
    assert dx.launch is not None and dx.launch.origin == "the default command" and dx.launch.style == "proxy"


def test_an_unreadable_file_shows_what_is_wrong_without_the_config_commands_advice(
    diagnosis: MakeDiagnosis, mcpctl_home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "claude.json"
    config.write_text('{"mcpServers": {"x": 1,}}')
    check = _entry_check(diagnosis, config).checks[-1]
    assert not check.ok and "not valid JSON" in check.detail
    assert "re-run" not in check.detail  # the hint of `mcpctl config`; the check has its own fix
    assert check.fix is not None and "mcpctl config claude demo" in check.fix


def test_an_entry_mcpctl_did_not_write_is_run_but_flagged(
    diagnosis: MakeDiagnosis, mcpctl_home: Path, tmp_path: Path
) -> None:
    servers = {"sales-demo": {"command": "/bin/sh", "args": ["-c", "true"]}}
    dx = _entry_check(diagnosis, tmp_path / "claude.json", servers)
    check = dx.checks[-1]
    assert check.ok and check.warning and "an entry mcpctl did not write" in check.detail
    assert dx.launch == Launch("/bin/sh", ("-c", "true"), {}, "entry 'sales-demo'")


def test_an_ssh_entry_on_another_port_than_the_profiles_is_stale(
    diagnosis: MakeDiagnosis, mcpctl_home: Path, tmp_path: Path
) -> None:
    ssh = "/usr/bin/ssh"
    if not os.access(ssh, os.X_OK):
        pytest.skip("no /usr/bin/ssh")
    args = ["-p", "2200", "u@h.example", "exec /srv/demo/.venv/bin/python -m mcp_sales"]
    dx = _entry_check(diagnosis, tmp_path / "claude.json", {"sales-demo": {"command": ssh, "args": args}})
    check = dx.checks[-1]
    assert not check.ok and "profile 'demo' says port 2222 but the entry says 2200" in check.detail
    assert check.fix == dx.stale_entry_fix
    assert check.fix == "run `mcpctl config claude demo --style ssh` again, then restart Claude Desktop."


def test_stale_port_names_a_moved_sandbox(diagnosis: MakeDiagnosis) -> None:
    dx = diagnosis(kind="sandbox")
    assert stale_port(dx, Launch("ssh", ("-p", "2200", "u@h", "x"))) == (
        "the sandbox now listens on port 2222 but the entry says 2200"
    )
    assert stale_port(dx, Launch("ssh", ("-p", "2222", "u@h", "x"))) is None
    assert stale_port(dx, Launch("mcpctl", ("connect", "demo"))) is None


def test_command_problems_hard_and_soft(diagnosis: MakeDiagnosis, tmp_path: Path) -> None:
    dx = diagnosis()
    assert command_problem(dx, "/bin/sh", {}) is None
    hard, what, _ = command_problem(dx, "no-such-program-here", {"PATH": str(tmp_path)}) or (None, "", "")
    assert hard is True and "spawn no-such-program-here ENOENT" in what
    soft = command_problem(dx, "sh", {"PATH": "/bin:/usr/bin"})
    assert soft is not None and soft[0] is False and "looked up on PATH" in soft[1]
    assert (command_problem(dx, str(tmp_path), {}) or (None, ""))[1] == f"{tmp_path} is not a file"
    plain = tmp_path / "plain"
    plain.write_text("")
    plain.chmod(0o644)
    problem = command_problem(dx, str(plain), {})
    if os.name == "posix":
        assert problem is not None and problem[2].startswith(f"run `chmod +x {plain}`")
