"""``mcpctl doctor`` against the real sshd fixture, the real server of this checkout and real config files.

The profiles log into this same machine and use the repository root as ``remote_dir``: its ``.venv``
already runs ``python -m mcp_sales``, so nothing is bootstrapped (as in the proxy tests). Each failure
test provokes one real problem and checks that the failing phase is named and its fix says what to do.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.clients import configure, entries
from provision.connect.log import log_path
from provision.doctor import PHASES, Check, DoctorReport, run_doctor
from provision.errors import HostKeyError
from provision.profiles import Profile, known_hosts_path, load_profile, save_profile
from provision.ssh import sandbox
from provision.ssh.hostkeys import pin_host_key
from provision.ssh.profile_target import target_for
from provision.ssh.remote import open_remote
from provision.ssh.sandbox import SandboxInfo

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample_sales_data.csv"
BOUND = 60.0  # seconds each MCP request may take: an upper bound, never an expectation


def _profile(sshd: Any, name: str = "demo", **fields: Any) -> Profile:
    """Save a profile for the fixture host (remote_dir: this checkout) and pin the host's key."""
    values: dict[str, Any] = {
        "name": name,
        "host": sshd.host,
        "port": sshd.port,
        "user": sshd.user,
        "identity_file": sshd.client_key,
        "remote_dir": str(REPO),
        "data": [SAMPLE],
        **fields,
    }
    profile = Profile(**values)
    save_profile(profile)
    pin_host_key(known_hosts_path(name), sshd.host, sshd.port, sshd.host_key_line)
    return profile


def _configure(profile: Profile, path: Path, style: entries.Style = "proxy") -> Path:
    """Write the client entry exactly as `mcpctl config claude` does, into ``path``."""
    configure.configure_client(entries.EntryInputs.from_profile(profile), style=style, path=path)
    return path


def _doctor(
    name: str, config: Path, *, timeout: float = BOUND, **options: Any
) -> tuple[DoctorReport, list[Check]]:
    seen: list[Check] = []
    report = run_doctor(name, config_path=config, on_check=seen.append, timeout=timeout, **options)
    return report, seen


def _check(report: DoctorReport, phase: str) -> Check:
    return next(c for c in report.checks if c.phase == phase)


def _assert_skipped_after(report: DoctorReport, phase: str) -> None:
    """``phase`` failed and every later phase is marked skipped (not failed on its own)."""
    failed = _check(report, phase)
    assert not failed.ok and not failed.skipped and failed.fix
    later = PHASES[PHASES.index(phase) + 1 :]
    assert [c.phase for c in report.checks if c.skipped] == list(later)
    assert all(not c.ok and c.seconds == 0.0 and phase in c.detail for c in report.checks if c.skipped)


def _all_ok_from(report: DoctorReport, phases: Sequence[str]) -> None:
    for phase in phases:
        check = _check(report, phase)
        assert check.ok and not check.skipped, check


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------- healthy


def test_healthy_proxy_entry_passes_every_phase_with_a_time_each(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    config = _configure(_profile(sshd), tmp_path / "claude_desktop_config.json")
    report, seen = _doctor("demo", config)
    for check in report.checks:  # shown with `pytest -s`: what each phase costs here
        print(f"{check.phase:<13} {check.seconds:7.3f} s  {check.detail}")
    assert report.ok, report.failures
    assert [c.phase for c in report.checks] == list(PHASES)
    assert seen == list(report.checks)  # reported live, in order
    assert all(c.ok and not c.skipped and not c.warning and c.fix is None for c in report.checks)
    assert all(c.seconds > 0 for c in report.checks)
    assert "entry 'sales-demo'" in _check(report, "config entry").detail
    assert "mcpctl connect demo" in _check(report, "config entry").detail
    assert "present" in _check(report, "connect").detail
    tools = _check(report, "tools/list").detail
    assert "top_n_products" in tools and "forecast_sales" in tools
    assert "list_operations" in _check(report, "tool call").detail
    spawn, init = _check(report, "spawn"), _check(report, "initialize")
    assert report.total_s == pytest.approx(spawn.seconds + init.seconds)
    assert "mcp-sales" in init.detail
    assert "link #1: server started" in log_path("demo").read_text()  # the proxy really ran


def test_healthy_ssh_entry_runs_the_openssh_command_line(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client (ssh) on PATH")
    config = _configure(_profile(sshd), tmp_path / "claude.json", style="ssh")
    report, _ = _doctor("demo", config)
    assert report.ok, report.failures
    detail = _check(report, "spawn").detail
    assert detail.startswith("started `ssh ") and f"{sshd.user}@{sshd.host}" in detail


# -------------------------------------------------------------------------------- local failures


def test_a_missing_profile_fails_first_and_skips_the_rest(mcpctl_home: Path, tmp_path: Path) -> None:
    report, seen = _doctor("nosuch", tmp_path / "claude.json")
    assert not report.ok
    _assert_skipped_after(report, "profile")
    assert "mcpctl provision nosuch" in (_check(report, "profile").fix or "")
    assert len(seen) == len(PHASES)
    assert report.total_s == 0.0


def test_findings_that_do_not_block_are_all_reported_and_the_rest_runs(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    # Two problems at once, neither stopping the SSH path: invalid JSON, and a key others can read.
    key = tmp_path / "id_shared"
    shutil.copyfile(sshd.client_key, key)
    key.chmod(0o644)
    _profile(sshd, identity_file=key)
    config = tmp_path / "claude.json"
    config.write_text('{"mcpServers": {"x": {"command": "a",}}}')
    report, _ = _doctor("demo", config)
    entry = _check(report, "config entry")
    assert not entry.ok and "not valid JSON" in entry.detail
    assert "mcpctl config claude demo" in (entry.fix or "")
    assert "checking `mcpctl connect demo` instead" in entry.detail
    key_check = _check(report, "key file")
    assert not key_check.ok and "mode 0644" in key_check.detail
    assert key_check.fix == f"run `chmod 600 {key}`."
    _all_ok_from(report, PHASES[3:])  # the default proxy ran; its own SSH client accepts the key
    assert report.failures == (entry, key_check) and not report.ok


def test_a_missing_entry_is_a_warning_and_the_rest_runs(sshd: Any, mcpctl_home: Path, tmp_path: Path) -> None:
    _profile(sshd)
    config = tmp_path / "claude.json"
    config.write_text(json.dumps({"mcpServers": {"other": {"command": "/bin/true", "args": []}}}))
    report, _ = _doctor("demo", config, client="gemini")
    entry = _check(report, "config entry")
    assert entry.ok and entry.warning
    assert "no entry for profile 'demo'" in entry.detail
    assert entry.fix is not None and "mcpctl config gemini demo" in entry.fix
    assert report.warnings == (entry,)
    _all_ok_from(report, PHASES)
    assert report.ok


def test_an_entry_whose_command_is_gone_fails_at_config_and_at_spawn(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    _profile(sshd)
    config = tmp_path / "claude.json"
    gone = str(tmp_path / "old-venv" / "bin" / "mcpctl")
    entry = {"command": gone, "args": ["connect", "demo"], "env": {"MCPCTL_HOME": str(mcpctl_home)}}
    config.write_text(json.dumps({"mcpServers": {"sales-demo": entry}}))
    report, _ = _doctor("demo", config)
    found = _check(report, "config entry")
    assert not found.ok and f"{gone} does not exist" in found.detail and "ENOENT" in found.detail
    assert "mcpctl config claude demo" in (found.fix or "")
    _all_ok_from(report, ("key file", "host key", "connect"))  # independent of the entry: still checked
    spawn = _check(report, "spawn")
    assert "cannot start" in spawn.detail and "No such file" in spawn.detail
    assert "mcpctl config claude demo" in (spawn.fix or "")
    _assert_skipped_after(report, "spawn")


def test_a_missing_key_file_stops_before_the_network(sshd: Any, mcpctl_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "id_gone"
    _profile(sshd, identity_file=missing)
    report, _ = _doctor("demo", tmp_path / "claude.json")
    key = _check(report, "key file")
    assert f"{missing} does not exist" in key.detail
    assert "identity_file" in (key.fix or "")
    _assert_skipped_after(report, "key file")


def test_an_encrypted_key_without_the_agent_names_ssh_add(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    key = tmp_path / "id_locked"
    asyncssh.read_private_key(str(sshd.client_key)).write_private_key(
        str(key), format_name="pkcs8-pem", passphrase="secret"
    )
    key.chmod(0o600)
    _profile(sshd, identity_file=key)
    report, _ = _doctor("demo", tmp_path / "claude.json")
    check = _check(report, "key file")
    assert "encrypted" in check.detail and f"ssh-add {key}" in (check.fix or "")
    _assert_skipped_after(report, "key file")


# ----------------------------------------------------------------------------- network failures


def test_a_changed_host_key_names_the_new_fingerprint_and_how_to_re_pin(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    _profile(sshd)
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    impostor_line = impostor.export_public_key("openssh").decode()
    pin_host_key(known_hosts_path("demo"), sshd.host, sshd.port, impostor_line)
    real = asyncssh.import_public_key(sshd.host_key_line).get_fingerprint("sha256")
    report, _ = _doctor("demo", tmp_path / "claude.json")
    check = _check(report, "host key")
    assert "CHANGED" in check.detail and impostor.get_fingerprint("sha256") in check.detail
    assert real in check.detail
    assert f"mcpctl provision demo --host-key {real}" in (check.fix or "")
    _assert_skipped_after(report, "host key")


def test_a_host_key_never_pinned_says_how_to_pin(sshd: Any, mcpctl_home: Path, tmp_path: Path) -> None:
    _profile(sshd)
    known_hosts_path("demo").unlink()
    report, _ = _doctor("demo", tmp_path / "claude.json")
    assert "mcpctl provision demo" in (_check(report, "host key").fix or "")
    _assert_skipped_after(report, "host key")


@pytest.mark.parametrize(("kind", "start_hint"), [("host", False), ("ec2", True)])
def test_a_closed_port_fails_connect_with_the_firewall_fix(
    sshd: Any, mcpctl_home: Path, tmp_path: Path, kind: str, start_hint: bool
) -> None:
    port = _closed_port()
    _profile(sshd, kind=kind, port=port)
    pin_host_key(known_hosts_path("demo"), sshd.host, port, sshd.host_key_line)
    report, _ = _doctor("demo", tmp_path / "claude.json")
    host_key = _check(report, "host key")
    assert host_key.ok and host_key.warning and "did not answer" in host_key.detail
    connect = _check(report, "connect")
    assert "connection refused" in connect.detail
    assert "security group" in (connect.fix or "") and f"127.0.0.1:{port}" in (connect.fix or "")
    assert ("`mcpctl start demo`" in (connect.fix or "")) is start_hint
    _assert_skipped_after(report, "connect")


def test_a_key_the_host_does_not_authorise_names_authorized_keys(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "id_stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    stranger.chmod(0o600)
    _profile(sshd, identity_file=stranger)
    report, _ = _doctor("demo", tmp_path / "claude.json")
    fix = _check(report, "connect").fix or ""
    assert f"{stranger}.pub" in fix and "authorized_keys" in fix
    _assert_skipped_after(report, "connect")


# ------------------------------------------------------------------------------ server failures


def test_no_python_on_the_host_fails_initialize_and_says_provision(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-remote-dir"
    empty.mkdir()
    profile = _profile(sshd, remote_dir=str(empty))
    config = _configure(profile, tmp_path / "claude.json")
    report, _ = _doctor("demo", config)
    assert "MISSING" in _check(report, "connect").detail
    assert _check(report, "spawn").ok
    init = _check(report, "initialize")
    assert not init.ok and "exit status 127" in init.detail
    assert "`mcpctl provision demo`" in (init.fix or "")
    assert str(empty / ".venv" / "bin" / "python") in (init.fix or "")
    _assert_skipped_after(report, "initialize")


def test_a_server_that_never_answers_fails_initialize_and_names_the_slow_part(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    remote_dir = tmp_path / "silent"
    python = remote_dir / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\nexec cat >/dev/null\n")  # starts, reads its stdin, never answers
    python.chmod(0o755)
    config = _configure(_profile(sshd, remote_dir=str(remote_dir)), tmp_path / "claude.json")
    report, _ = _doctor("demo", config, timeout=3.0)  # well above a loopback connect, however loaded
    assert "present" in _check(report, "connect").detail
    init = _check(report, "initialize")
    assert not init.ok and "timed out" in init.detail
    assert init.fix is not None and init.fix.startswith("the server's start on the host takes over")
    assert "`mcpctl logs demo`" in init.fix
    _assert_skipped_after(report, "initialize")


def test_a_missing_data_file_fails_the_tool_call_with_the_servers_message(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    profile = _profile(sshd, data=[tmp_path / "nowhere.csv"])  # the server reads REMOTE_DIR/data/nowhere.csv
    config = _configure(profile, tmp_path / "claude.json")
    report, _ = _doctor("demo", config)
    _all_ok_from(report, PHASES[: PHASES.index("tool call")])
    call = _check(report, "tool call")
    assert not call.ok and "tool error" in call.detail
    assert call.fix is not None
    assert f"data file {REPO / 'data' / 'nowhere.csv'} not found" in call.fix
    assert report.failures == (call,)


# ------------------------------------------------------------------------------------------- CLI


runner = CliRunner()


def test_cli_doctor_exit_codes_and_json(sshd: Any, mcpctl_home: Path, tmp_path: Path) -> None:
    config = _configure(_profile(sshd), tmp_path / "claude.json")
    healthy = runner.invoke(app, ["doctor", "demo", "--config-path", str(config)])
    assert healthy.exit_code == 0, healthy.output
    assert "healthy" in healthy.output and "tools/list" in healthy.output

    missing = runner.invoke(app, ["doctor", "nosuch", "--config-path", str(config), "--json"])
    assert missing.exit_code != 0
    data = json.loads(missing.stdout)
    assert data["ok"] is False
    assert [c["phase"] for c in data["checks"]] == list(PHASES)
    assert data["checks"][0]["fix"].startswith("no profile named 'nosuch'")

    broken = runner.invoke(app, ["doctor", "nosuch", "--config-path", str(config)])
    assert broken.exit_code != 0 and "profile" in broken.output and "needs attention" in broken.output


# ---------------------------------------------------------------------------------------- sandbox


@pytest.fixture
def box(mcpctl_home: Path) -> Iterator[SandboxInfo]:
    """A running sandbox and profile 'box' on it; remote_dir is this checkout (the sandbox is here)."""
    info = sandbox.up()
    try:
        save_profile(
            Profile(
                name="box",
                kind="sandbox",
                host=info.host,
                port=info.port,
                user=info.user,
                identity_file=info.client_key,
                remote_dir=str(REPO),
                data=[SAMPLE],
                connect_timeout=3.0,  # bounds the frozen-sandbox test's waits
            )
        )
        pin_host_key(known_hosts_path("box"), info.host, info.port, info.host_key_line)
        yield info
    finally:
        sandbox.down()


def _restart_elsewhere(info: SandboxInfo) -> SandboxInfo:
    """`sandbox down`, then `sandbox up` while another program holds its port: it comes back elsewhere."""
    sandbox.down()
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the old port may be in TIME_WAIT
        blocker.bind(("127.0.0.1", info.port))
        blocker.listen()
        moved = sandbox.up()
    assert moved.port != info.port
    return moved


def test_a_sandbox_back_on_another_port_passes_and_the_profile_says_it_moved(
    box: SandboxInfo, tmp_path: Path
) -> None:
    config = _configure(load_profile("box"), tmp_path / "claude_desktop_config.json")
    moved = _restart_elsewhere(box)
    report, _ = _doctor("box", config)
    assert report.ok, report.failures
    assert f"moved from port {box.port}" in _check(report, "profile").detail
    assert f"127.0.0.1:{moved.port}" in _check(report, "connect").detail
    assert load_profile("box").port == moved.port


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")
def test_an_ssh_entry_left_on_the_old_port_names_the_command_that_rewrites_it(
    box: SandboxInfo, tmp_path: Path
) -> None:
    config = _configure(load_profile("box"), tmp_path / "claude_desktop_config.json", style="ssh")
    moved = _restart_elsewhere(box)
    report, _ = _doctor("box", config)
    entry = _check(report, "config entry")
    assert not entry.ok and not entry.skipped
    assert f"the sandbox now listens on port {moved.port} but the entry says {box.port}" in entry.detail
    assert entry.fix == "run `mcpctl config claude box --style ssh` again, then restart Claude Desktop."
    assert _check(report, "connect").ok  # the profile itself follows the sandbox
    initialize = _check(report, "initialize")  # the entry as written reaches nothing
    assert not initialize.ok and initialize.fix == entry.fix

    rewrite = runner.invoke(app, ["config", "claude", "box", "--style", "ssh", "--config-path", str(config)])
    assert rewrite.exit_code == 0, rewrite.output
    assert str(moved.port) in json.loads(config.read_text())["mcpServers"]["sales-box"]["args"]
    again, _ = _doctor("box", config)
    assert again.ok, again.failures


def test_a_stopped_sandbox_is_told_from_one_that_runs_but_does_not_answer(
    box: SandboxInfo, tmp_path: Path
) -> None:
    sandbox.down()
    stopped, _ = _doctor("box", tmp_path / "claude.json")
    assert "(the sandbox is not running)" in _check(stopped, "profile").detail
    connect = _check(stopped, "connect")
    assert (connect.fix or "").startswith("the sandbox is not running: start it with `mcpctl sandbox up`")
    _assert_skipped_after(stopped, "connect")

    running = sandbox.up()
    assert running.port == box.port
    os.kill(running.pid, signal.SIGSTOP)  # alive, listening, answering nothing
    try:
        frozen, _ = _doctor("box", tmp_path / "claude.json")
    finally:
        os.kill(running.pid, signal.SIGCONT)
    assert "not running" not in _check(frozen, "profile").detail
    fix = _check(frozen, "connect").fix or ""
    assert f"the sandbox (pid {running.pid}) runs on 127.0.0.1:{running.port} but does not answer" in fix
    assert "`mcpctl sandbox down` and `mcpctl sandbox up`" in fix
    _assert_skipped_after(frozen, "connect")


def test_cli_doctor_does_not_claim_a_first_answer_when_none_came(mcpctl_home: Path, tmp_path: Path) -> None:
    broken = runner.invoke(app, ["doctor", "nosuch", "--config-path", str(tmp_path / "claude.json")])
    assert broken.exit_code == 1
    summary = " ".join(broken.stderr.split()).rsplit("nosuch: ", 1)[-1]
    assert summary == "needs attention; no answer to initialize (first failure: profile)"


def test_a_sandbox_with_a_new_host_key_is_re_pinned_with_provision_sandbox(
    box: SandboxInfo, tmp_path: Path
) -> None:
    """--host-key does not apply to a sandbox profile, so the advice names `provision NAME --sandbox`."""
    sandbox.down()
    for key_file in sandbox.sandbox_dir().glob("host_key*"):
        key_file.unlink()  # the sandbox makes a new key on its next start
    sandbox.up()
    report, _ = _doctor("box", tmp_path / "claude.json")
    check = _check(report, "host key")
    assert not check.ok and "CHANGED" in check.detail
    assert "`mcpctl provision box --sandbox`" in (check.fix or "")
    assert "--host-key" not in (check.fix or "")

    with pytest.raises(HostKeyError) as refused:
        asyncio.run(open_remote(target_for(load_profile("box"))))
    assert "`mcpctl provision box --sandbox`" in (refused.value.hint or "")
    assert "--host-key" not in (refused.value.hint or "")


def test_an_ssh_entry_for_a_remote_dir_with_a_quote_is_recognised_as_the_profiles(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client (ssh) on PATH")
    quoted = tmp_path / "it's here"
    quoted.symlink_to(REPO)  # the same checkout, reached by a path the remote command must quote
    config = _configure(_profile(sshd, remote_dir=str(quoted)), tmp_path / "claude.json", style="ssh")
    report, _ = _doctor("demo", config)
    entry = _check(report, "config entry")
    assert entry.ok and "which is not profile" not in entry.detail, entry
    assert report.ok, report.failures


def test_a_profile_the_server_cannot_run_fails_the_profile_check(mcpctl_home: Path, tmp_path: Path) -> None:
    save_profile(Profile(name="two", host="127.0.0.1", user="someone", data=[SAMPLE, tmp_path / "more.csv"]))
    report, _ = _doctor("two", tmp_path / "claude.json")
    check = _check(report, "profile")
    assert not check.ok and "the server reads one data file but the profile lists 2" in (check.fix or "")
    _assert_skipped_after(report, "profile")
