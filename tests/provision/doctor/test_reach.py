"""What the connect phase advises for each way a login fails."""

from __future__ import annotations

from pathlib import Path

import asyncssh

from provision.doctor.reach import connect_fix, distinct
from provision.errors import ConnectError, HostKeyError, KeyNeedsPassphrase
from provision.ssh.sandbox import SandboxInfo

from .conftest import MakeDiagnosis


def test_a_host_key_error_brings_its_own_advice(diagnosis: MakeDiagnosis) -> None:
    error = HostKeyError("the host key of h.example:2222 CHANGED", hint="re-pin it if the host was rebuilt")
    assert connect_fix(diagnosis(), error) == "re-pin it if the host was rebuilt"


def test_an_unusable_identity_file_points_at_the_profile(diagnosis: MakeDiagnosis) -> None:
    error = KeyNeedsPassphrase(
        Path("/k/id"), "cannot use the identity file /k/id", hint="load it into ssh-agent"
    )
    assert connect_fix(diagnosis(), error) == "fix identity_file in profile 'demo'."


def test_a_refused_login_names_authorized_keys(diagnosis: MakeDiagnosis) -> None:
    error = ConnectError("h.example:2222 refused the login")
    error.__cause__ = asyncssh.PermissionDenied("no")
    fix = connect_fix(diagnosis(target={"identity_file": Path("/k/id")}), error)
    assert fix.startswith("add /k/id.pub to ~u/.ssh/authorized_keys on the host")


def test_an_unreachable_host_gets_the_firewall_fix_and_an_ec2_one_the_start_command(
    diagnosis: MakeDiagnosis,
) -> None:
    error = ConnectError(
        "cannot reach h.example:2222: connection refused", hint="`mcpctl doctor demo` checks"
    )
    host = connect_fix(diagnosis(), error)
    assert "security group" in host and "mcpctl start" not in host
    assert "`mcpctl start demo`" in connect_fix(diagnosis(kind="ec2"), error)


def test_a_sandbox_that_is_stopped_is_told_from_one_that_does_not_answer(
    diagnosis: MakeDiagnosis, mcpctl_home: Path
) -> None:
    error = ConnectError("cannot reach 127.0.0.1:2222: connection refused")
    stopped = connect_fix(diagnosis(kind="sandbox"), error)
    assert stopped.startswith("the sandbox is not running: start it with `mcpctl sandbox up`")
    info = SandboxInfo(4242, "127.0.0.1", 2222, "u", "ssh-ed25519 AAAA", Path("/k"), Path("/h"), 0.0)
    frozen = connect_fix(diagnosis(kind="sandbox", sandbox=info), error)
    assert frozen.startswith("the sandbox (pid 4242) runs on 127.0.0.1:2222 but does not answer")


def test_distinct_keeps_the_first_of_each_key() -> None:
    one, two = asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-ed25519")
    assert distinct([one, two, one]) == [one, two]
