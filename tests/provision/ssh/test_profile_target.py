"""profile_target.py: a profile becomes an SSH target, and a sandbox profile follows its sandbox's port.

The sandbox itself is replaced by what ``sandbox.status()`` reports (the real one is exercised in
test_sandbox_restart.py); profiles and known_hosts are real files in a private ``MCPCTL_HOME``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from provision.errors import ProfileError
from provision.profiles import Profile, known_hosts_path, load_profile, new_profile, save_profile
from provision.ssh import sandbox
from provision.ssh.hostkeys import pin_host_key
from provision.ssh.profile_target import follow_sandbox, target_for
from provision.ssh.remote import connect
from provision.ssh.sandbox import SandboxInfo

KEY = " ".join(asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()[:2])


def _running_on(monkeypatch: pytest.MonkeyPatch, port: int | None) -> None:
    """Make ``sandbox.status()`` report a sandbox on ``port`` (None: stopped)."""
    info = None
    if port is not None:
        info = SandboxInfo(
            pid=1, host="127.0.0.1", port=port, user="me", host_key_line=KEY, client_key=Path("/k"),
            home=Path("/home/me"), started_at=0.0,
        )  # fmt: skip
    monkeypatch.setattr(sandbox, "status", lambda: info)


def _sandbox_profile(port: int, **fields: Any) -> Profile:
    profile = new_profile(name="box", kind="sandbox", host="127.0.0.1", port=port, user="me", **fields)
    save_profile(profile)
    pin_host_key(known_hosts_path("box"), "127.0.0.1", port, KEY)
    return profile


# ------------------------------------------------------------------------------------------- target


def test_target_carries_the_profile_settings(mcpctl_home: Path) -> None:
    profile = new_profile(
        name="web",
        host="10.1.2.3",
        port=2022,
        user="ubuntu",
        identity_file="/keys/id",
        host_key_alias="i-0abc",
        use_agent=True,
        keepalive_interval=5,
        connect_timeout=3,
    )
    target = target_for(profile)
    assert (target.host, target.port, target.user) == ("10.1.2.3", 2022, "ubuntu")
    assert target.known_hosts == mcpctl_home / "state" / "known_hosts" / "web"
    assert (target.identity_file, target.host_key_alias) == (Path("/keys/id"), "i-0abc")
    assert (target.use_agent, target.use_ssh_config) == (True, False)
    assert (target.keepalive_interval, target.connect_timeout, target.name) == (5.0, 3.0, "web")


def test_an_ec2_profile_without_an_address_has_no_target(mcpctl_home: Path) -> None:
    profile = new_profile(name="cloud", kind="ec2", user="ubuntu", ec2={"region": "eu-west-1"})
    with pytest.raises(ProfileError) as info:
        target_for(profile)
    assert info.value.message == "profile 'cloud' has no host address yet"
    assert info.value.hint == "launch it with `mcpctl provision cloud`"


@pytest.mark.anyio
async def test_a_saved_profile_connects_to_a_real_host(mcpctl_home: Path, sshd: Any) -> None:
    save_profile(
        new_profile(
            name="local", host=sshd.host, port=sshd.port, user=sshd.user, identity_file=sshd.client_key
        )
    )
    profile = load_profile("local")
    pin_host_key(known_hosts_path("local"), sshd.host, sshd.port, sshd.host_key_line)
    async with connect(target_for(profile)) as remote:
        result = await remote.run(["id", "-un"])
    assert result.stdout.strip() == sshd.user
    assert os.stat(known_hosts_path("local")).st_mode & 0o777 == 0o600


# ------------------------------------------------------------------------------- following a sandbox


def test_a_sandbox_profile_follows_a_moved_sandbox(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = _sandbox_profile(2001)
    _running_on(monkeypatch, 2002)
    target = target_for(profile)
    assert target.port == 2002
    assert known_hosts_path("box").read_text() == f"[127.0.0.1]:2002 {KEY}\n"  # the same key, moved
    assert load_profile("box").port == 2002  # and the file says so now
    assert follow_sandbox(load_profile("box")).port == 2002


def test_a_stopped_sandbox_leaves_the_profile_and_its_pin(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = _sandbox_profile(2001)
    before = known_hosts_path("box").read_bytes()
    _running_on(monkeypatch, None)
    assert follow_sandbox(profile) is profile
    assert target_for(profile).port == 2001
    assert known_hosts_path("box").read_bytes() == before


def test_only_sandbox_profiles_on_loopback_follow(mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _running_on(monkeypatch, 2002)
    host = new_profile(name="plain", host="127.0.0.1", port=2001, user="me")
    far = new_profile(name="far", kind="sandbox", host="192.0.2.1", port=2001, user="me")
    assert follow_sandbox(host) is host
    assert follow_sandbox(far) is far
    assert target_for(host).port == 2001


def test_an_alias_pin_stays_and_an_unsaved_profile_still_follows(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _running_on(monkeypatch, 2002)
    aliased = new_profile(
        name="alias", kind="sandbox", host="127.0.0.1", port=2001, user="me", host_key_alias="sb"
    )
    pin_host_key(known_hosts_path("alias"), "127.0.0.1", 2001, KEY, alias="sb")
    assert target_for(aliased).port == 2002
    assert known_hosts_path("alias").read_text() == f"sb {KEY}\n"  # an alias pins whatever the port
    with pytest.raises(ProfileError):
        load_profile("alias")  # never saved: following it does not save it either
