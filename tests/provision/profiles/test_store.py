"""profiles/store.py: the saved profiles, listed, loaded, saved atomically (0600) and removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision.errors import ProfileError, ProfileNotFound
from provision.profiles import (
    Ec2Settings,
    Profile,
    known_hosts_path,
    list_profiles,
    load_profile,
    new_profile,
    profiles_dir,
    remove_profile,
    save_profile,
)
from provision.ssh.profile_target import target_for
from tests.provision.profiles.helpers import mode


def test_full_profile_round_trips(mcpctl_home: Path) -> None:
    original = Profile(
        name="sales-east_1",
        kind="ec2",
        host="203.0.113.7",
        port=2222,
        user="ubuntu",
        identity_file=mcpctl_home / "id_ed25519",
        host_key_alias="i-0123456789abcdef0",
        remote_dir="/srv/mcpctl/sales",
        data=[mcpctl_home / "sales.csv", mcpctl_home / "more data.csv"],
        columns={"date": "Order Date", "revenue": "Sales $"},
        server_args=["--log-level", "debug"],
        use_agent=True,
        use_ssh_config=True,
        keepalive_interval=30,
        connect_timeout=4.5,
        ec2=Ec2Settings(region="us-east-2", instance_type="t3.small", volume_gb=20, autostop_minutes=0),
    )
    path = save_profile(original)
    assert path == mcpctl_home / "config" / "profiles" / "sales-east_1.toml"
    assert load_profile("sales-east_1") == original


def test_saved_file_is_private_and_no_temp_file_is_left(mcpctl_home: Path) -> None:
    profile = new_profile(name="web", host="h", user="u")
    path = save_profile(profile)
    save_profile(profile.model_copy(update={"port": 2200}))  # overwrite keeps the mode
    assert mode(path) == 0o600
    assert [p.name for p in profiles_dir().iterdir()] == ["web.toml"]
    assert load_profile("web").port == 2200


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_profile(new_profile(name="web", host="h", user="u"))
    before = (profiles_dir() / "web.toml").read_text()

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(ProfileError, match="No space left on device"):
        save_profile(new_profile(name="web", host="other", user="u"))
    assert (profiles_dir() / "web.toml").read_text() == before
    assert [p.name for p in profiles_dir().iterdir()] == ["web.toml"]


def test_ec2_profile_may_wait_for_its_host(mcpctl_home: Path) -> None:
    profile = new_profile(name="cloud", kind="ec2", user="ubuntu", ec2={"region": "eu-west-1"})
    save_profile(profile)
    assert load_profile("cloud").host is None
    with pytest.raises(ProfileError, match="no host address yet"):
        target_for(profile)


def test_missing_profile_lists_existing_ones(mcpctl_home: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("web")
    assert "(existing: none yet)" in str(info.value)
    for name in ("beta", "alpha"):
        save_profile(new_profile(name=name, host="h", user="u"))
    with pytest.raises(ProfileNotFound) as missing:
        load_profile("web")
    assert missing.value.name == "web"  # what callers branch on, never the words
    assert missing.value.message == "no profile named 'web'"
    assert (
        missing.value.hint == "create it with `mcpctl provision web --host user@host` (existing: alpha, beta)"
    )


def test_non_utf8_file_is_reported(mcpctl_home: Path) -> None:
    path = profiles_dir() / "web.toml"
    path.write_bytes(b'host = "\xff"\nuser = "u"\n')
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile("web")


def test_list_profiles_is_sorted_and_ignores_other_files(mcpctl_home: Path) -> None:
    for name in ("web", "api", "db-2"):
        save_profile(new_profile(name=name, host="h", user="u"))
    (profiles_dir() / "notes.txt").write_text("")
    (profiles_dir() / "Bad Name.toml").write_text("")
    assert list_profiles() == ["api", "db-2", "web"]


def test_remove_profile_removes_its_known_hosts_too(mcpctl_home: Path) -> None:
    save_profile(new_profile(name="web", host="h", user="u"))
    known_hosts_path("web").write_text("h ssh-ed25519 AAAA\n")
    remove_profile("web")
    assert list_profiles() == []
    assert not known_hosts_path("web").exists()
    with pytest.raises(ProfileNotFound, match="no profile named 'web'"):
        remove_profile("web")
    remove_profile("web", missing_ok=True)
