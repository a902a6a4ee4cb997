"""profiles.py: paths, the TOML round trip, and error messages that name the file, line and field."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from provision import profiles
from provision.errors import ProfileError
from provision.profiles import (
    Ec2Settings,
    Profile,
    config_dir,
    keys_dir,
    known_hosts_path,
    list_profiles,
    load_profile,
    log_dir,
    new_profile,
    parse_host_spec,
    profiles_dir,
    remove_profile,
    save_profile,
    state_dir,
)
from provision.ssh.profile_target import target_for


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(name: str, text: str) -> Path:
    path = profiles_dir() / f"{name}.toml"
    path.write_text(text)
    return path


BASIC = 'host = "10.0.0.5"\nuser = "ubuntu"\n'


# -------------------------------------------------------------------------------------------- paths


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
        assert _mode(private) == 0o700, private


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
    assert _mode(keys_dir()) == 0o700


def test_unwritable_home_is_a_profile_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MCPCTL_HOME", str(blocker))  # a file where a directory must go
    with pytest.raises(ProfileError, match="MCPCTL_HOME"):
        config_dir()


# ---------------------------------------------------------------------------------------- round trip


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


def test_defaults_and_derived_remote_dir(mcpctl_home: Path) -> None:
    _write("web", BASIC)
    web = load_profile("web")
    assert (web.kind, web.port, web.use_agent, web.use_ssh_config) == ("host", 22, False, False)
    assert (web.keepalive_interval, web.connect_timeout) == (15.0, 10.0)
    assert web.remote_dir == "/home/ubuntu/mcpctl/web"
    assert (web.data, web.columns, web.server_args, web.ec2, web.identity_file) == ([], {}, [], None, None)
    assert new_profile(name="adm", host="h", user="root").remote_dir == "/root/mcpctl/adm"


def test_tilde_paths_are_expanded(mcpctl_home: Path) -> None:
    _write("web", BASIC + 'identity_file = "~/.ssh/id_ed25519"\ndata = ["~/sales.csv"]\n')
    web = load_profile("web")
    assert web.identity_file == Path.home() / ".ssh" / "id_ed25519"
    assert web.data == [Path.home() / "sales.csv"]


def test_saved_file_is_private_and_no_temp_file_is_left(mcpctl_home: Path) -> None:
    profile = new_profile(name="web", host="h", user="u")
    path = save_profile(profile)
    save_profile(profile.model_copy(update={"port": 2200}))  # overwrite keeps the mode
    assert _mode(path) == 0o600
    assert [p.name for p in profiles_dir().iterdir()] == ["web.toml"]
    assert load_profile("web").port == 2200


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_profile(new_profile(name="web", host="h", user="u"))
    before = (profiles_dir() / "web.toml").read_text()

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(profiles.os, "replace", no_rename)
    with pytest.raises(ProfileError, match="No space left on device"):
        save_profile(new_profile(name="web", host="other", user="u"))
    assert (profiles_dir() / "web.toml").read_text() == before
    assert [p.name for p in profiles_dir().iterdir()] == ["web.toml"]


EDITED = """\
# my lab box: ask Ann before changing it
user = "ann"   # the login she made for us
host = "203.0.113.7"
kind = "ec2"
identity_file = "~/.ssh/lab"  # written with ~ on purpose

# AWS side
[ec2]
region = "eu-west-1"  # close to the office
instance_id = "i-0123456789abcdef0"
"""


def test_saving_keeps_the_users_comments_and_key_order(mcpctl_home: Path) -> None:
    path = _write("lab", EDITED)
    profile = load_profile("lab")
    profile.host = "198.51.100.9"  # what `mcpctl start` does with a new public IP
    profile.ec2 = profile.ec2.model_copy(update={"instance_type": "t3.small"}) if profile.ec2 else None
    save_profile(profile)
    text = path.read_text()
    assert text == EDITED.replace("203.0.113.7", "198.51.100.9") + 'instance_type = "t3.small"\n'
    assert load_profile("lab") == profile


def test_saving_an_unchanged_profile_leaves_the_file_as_written(mcpctl_home: Path) -> None:
    path = _write("lab", EDITED)
    save_profile(load_profile("lab"))
    assert path.read_text() == EDITED  # defaults stay implicit, ~ stays ~


def test_saving_removes_a_value_that_became_none(mcpctl_home: Path) -> None:
    path = _write("lab", EDITED)
    profile = load_profile("lab")
    profile.ec2 = profile.ec2.model_copy(update={"instance_id": None}) if profile.ec2 else None
    save_profile(profile)
    assert "instance_id" not in path.read_text()
    assert "# close to the office" in path.read_text()
    assert load_profile("lab") == profile


def test_a_file_that_is_not_toml_is_written_anew(mcpctl_home: Path) -> None:
    path = _write("web", "this is [not toml\n")
    save_profile(new_profile(name="web", host="h", user="u"))
    assert path.read_text().startswith("# mcpctl profile 'web': edit freely")
    assert load_profile("web").host == "h"


# -------------------------------------------------------------------------------------------- errors


def test_invalid_toml_reports_file_and_line(mcpctl_home: Path) -> None:
    path = _write("web", 'host = "h"\nuser = "u"\nport = = 22\n')
    with pytest.raises(ProfileError) as info:
        load_profile("web")
    assert str(path) in str(info.value)
    assert "line 3" in str(info.value)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("port = 0\n", "field 'port': must be between 1 and 65535"),
        ("port = 70000\n", "field 'port': must be between 1 and 65535"),
        ('port = "22"\n', "field 'port': "),
        ('remote_dir = "srv/mcpctl"\n', "field 'remote_dir': must be an absolute POSIX path"),
        ('remote_dir = "/srv/../etc"\n', "field 'remote_dir': must be an absolute POSIX path"),
        ('remote_dir = "/"\n', "field 'remote_dir': must be an absolute POSIX path"),
        ("prot = 22\n", "field 'prot': unknown key (did you mean 'port'?)"),
        ('kind = "vm"\n', "field 'kind': "),
        ('identity_file = "keys/id"\n', "field 'identity_file': must be an absolute path or start with ~"),
        (
            "keepalive_interval = 0\n",
            "field 'keepalive_interval': must be a number of seconds greater than 0",
        ),
        ('[ec2]\nregoin = "us-east-1"\n', "field 'ec2.regoin': unknown key (did you mean 'region'?)"),
        ("[ec2]\nvolume_gb = 0\n", "field 'ec2.volume_gb': "),
        ('[columns]\n"a=b" = "c"\n', "field 'columns': "),
    ],
)
def test_bad_fields_are_reported_with_file_and_field(mcpctl_home: Path, extra: str, expected: str) -> None:
    path = _write("web", BASIC + extra)
    with pytest.raises(ProfileError) as info:
        load_profile("web")
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_required_fields_are_named(mcpctl_home: Path) -> None:
    _write("web", 'host = "h"\n')
    with pytest.raises(ProfileError) as info:
        load_profile("web")
    assert str(info.value).endswith("web.toml: field 'user': is required; fix the file or remove it")
    _write("web", 'user = "u"\n')
    with pytest.raises(ProfileError, match="field 'host' is required for a profile of kind 'host'"):
        load_profile("web")


def test_ec2_profile_may_wait_for_its_host(mcpctl_home: Path) -> None:
    profile = new_profile(name="cloud", kind="ec2", user="ubuntu", ec2={"region": "eu-west-1"})
    save_profile(profile)
    assert load_profile("cloud").host is None
    with pytest.raises(ProfileError, match="no host address yet"):
        target_for(profile)


def test_name_in_file_must_match_file_name(mcpctl_home: Path) -> None:
    _write("web", 'name = "api"\n' + BASIC)
    with pytest.raises(ProfileError, match="field 'name': 'api' does not match the file name"):
        load_profile("web")


@pytest.mark.parametrize("name", ["Web", "-web", "web.prod", "../etc/passwd", "", "a" * 64, "we b"])
def test_invalid_names_are_refused(mcpctl_home: Path, name: str) -> None:
    with pytest.raises(ProfileError, match="not a valid profile name"):
        load_profile(name)
    with pytest.raises(ProfileError, match="field 'name': must be 1-63 characters"):
        new_profile(name=name, host="h", user="u")


def test_new_profile_reports_fields_as_profile_errors() -> None:
    with pytest.raises(
        ProfileError, match="invalid profile 'web': field 'port': must be between 1 and 65535"
    ):
        new_profile(name="web", host="h", user="u", port=0)


def test_missing_profile_lists_existing_ones(mcpctl_home: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("web")
    assert "(existing: none yet)" in str(info.value)
    for name in ("beta", "alpha"):
        save_profile(new_profile(name=name, host="h", user="u"))
    with pytest.raises(ProfileError) as info:
        load_profile("web")
    message = str(info.value)
    assert "no profile named 'web'" in message
    assert "`mcpctl provision web --host user@host`" in message
    assert "(existing: alpha, beta)" in message


def test_non_utf8_file_is_reported(mcpctl_home: Path) -> None:
    path = profiles_dir() / "web.toml"
    path.write_bytes(b'host = "\xff"\nuser = "u"\n')
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile("web")


# -------------------------------------------------------------------------------- list and remove


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
    with pytest.raises(ProfileError, match="no profile named 'web'"):
        remove_profile("web")
    remove_profile("web", missing_ok=True)


# ------------------------------------------------------------------------------------- host specs


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ubuntu@10.0.0.5", ("ubuntu", "10.0.0.5", 22)),
        ("ubuntu@10.0.0.5:2222", ("ubuntu", "10.0.0.5", 2222)),
        ("ssh://ec2-user@host.example:2200", ("ec2-user", "host.example", 2200)),
        ("root@[::1]:2222", ("root", "::1", 2222)),
        ("root@[fe80::1]", ("root", "fe80::1", 22)),
        ("root@fe80::1", ("root", "fe80::1", 22)),
        (" me@h ", ("me", "h", 22)),
    ],
)
def test_parse_host_spec(spec: str, expected: tuple[str, str, int]) -> None:
    assert parse_host_spec(spec) == expected


def test_parse_host_spec_defaults_to_the_local_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "localperson")
    monkeypatch.setenv("LOGNAME", "localperson")
    assert parse_host_spec("h:2022") == ("localperson", "h", 2022)


@pytest.mark.parametrize(
    "spec", ["", "u@", "@h", "u@h:", "u@h:0", "u@h:65536", "u@h:ssh", "u@-oProxyCommand=x", "u@[::1", "a b@h"]
)
def test_parse_host_spec_rejects_malformed(spec: str) -> None:
    with pytest.raises(ProfileError, match="not a valid host"):
        parse_host_spec(spec)
