"""The CHANGED host-key messages of `connect` and `doctor`, provoked against the real sshd fixture.

Each test pins keys the host does not have, then connects (or runs the doctor's host-key phase) and
reads the message: every pinned key is listed once, the presented key once, each with its type.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import asyncssh
import pytest

from provision.doctor import run_doctor
from provision.errors import HostKeyError
from provision.profiles import Profile, known_hosts_path, save_profile
from provision.ssh.hostkeys import pin_host_key
from provision.ssh.remote import connect
from provision.ssh.target import known_hosts_entry

BOUND = 60.0  # seconds for any connection or doctor run: an upper bound, never an expectation
FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def _impostor() -> tuple[str, str]:
    """A fresh ed25519 public key line the host does not have, and its fingerprint."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    line = " ".join(key.export_public_key("openssh").decode().split()[:2])
    return line, key.get_fingerprint("sha256")


def _real(sshd: Any) -> str:
    return str(asyncssh.import_public_key(sshd.host_key_line).get_fingerprint("sha256"))


def _pin_several(path: Path, sshd: Any, lines: list[str]) -> None:
    """Pin ``lines`` (in this order, repeats kept) for the fixture host, as a hand-edited file would."""
    name = known_hosts_entry(sshd.host, sshd.port)
    path.write_text("".join(f"{name} {line}\n" for line in lines))


async def _changed_message(sshd: Any, known_hosts: Path) -> str:
    with anyio.fail_after(BOUND), pytest.raises(HostKeyError) as caught:
        async with connect(sshd.target(known_hosts=known_hosts)):
            pass
    return str(caught.value)


@pytest.mark.anyio
async def test_a_changed_key_on_an_ip_address_lists_the_pinned_key_once(sshd: Any, tmp_path: Path) -> None:
    # 127.0.0.1 is both the host name and the address the key is looked up under.
    known_hosts = tmp_path / "known_hosts"
    line, pinned = _impostor()
    pin_host_key(known_hosts, sshd.host, sshd.port, line)

    message = await _changed_message(sshd, known_hosts)

    assert "CHANGED" in message
    assert FINGERPRINT.findall(message).count(pinned) == 1
    assert f"pins {pinned} (ssh-ed25519) for [{sshd.host}]:{sshd.port}" in message
    assert f"but the host now presents {_real(sshd)} (ssh-ed25519)" in message


@pytest.mark.anyio
async def test_several_pinned_keys_of_one_type_are_each_listed_once(sshd: Any, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    (first, first_fp), (second, second_fp) = _impostor(), _impostor()
    _pin_several(known_hosts, sshd, [first, second, first])

    message = await _changed_message(sshd, known_hosts)

    assert f"pins 2 keys ({first_fp} (ssh-ed25519), {second_fp} (ssh-ed25519))" in message
    shown = FINGERPRINT.findall(message)
    assert (shown.count(first_fp), shown.count(second_fp)) == (1, 1)
    # The presented key: once as what the host presents, once in the command that re-pins it.
    assert shown.count(_real(sshd)) == 2
    assert f"--host-key {_real(sshd)}" in message


def test_doctor_lists_each_pinned_and_presented_key_once(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    profile = Profile(
        name="demo",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity_file=sshd.client_key,
        remote_dir=str(tmp_path / "app"),
    )
    save_profile(profile)
    (first, first_fp), (second, second_fp) = _impostor(), _impostor()
    _pin_several(known_hosts_path("demo"), sshd, [first, second, first])

    report = run_doctor("demo", config_path=tmp_path / "claude.json", timeout=BOUND)

    check = next(c for c in report.checks if c.phase == "host key")
    assert not check.ok and "CHANGED" in check.detail
    real = _real(sshd)
    assert f"pins 2 keys ({first_fp} (ssh-ed25519), {second_fp} (ssh-ed25519))" in check.detail
    assert check.detail.endswith(f"but the host presents {real} (ssh-ed25519)")
    shown = FINGERPRINT.findall(check.detail)
    assert (shown.count(first_fp), shown.count(second_fp), shown.count(real)) == (1, 1, 1)
    assert f"mcpctl provision demo --host-key {real}" in (check.fix or "")
