"""profiles/model.py: the Profile's defaults and what each field may hold, in our words."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ProfileError
from provision.profiles import check_name, default_remote_dir, load_profile, new_profile
from tests.provision.profiles.helpers import BASIC, write_profile


def test_defaults_and_derived_remote_dir(mcpctl_home: Path) -> None:
    write_profile("web", BASIC)
    web = load_profile("web")
    assert (web.kind, web.port, web.use_agent, web.use_ssh_config) == ("host", 22, False, False)
    assert (web.keepalive_interval, web.connect_timeout) == (15.0, 10.0)
    assert web.remote_dir == "/home/ubuntu/mcpctl/web"
    assert (web.data, web.columns, web.server_args, web.ec2, web.identity_file) == ([], {}, [], None, None)
    assert new_profile(name="adm", host="h", user="root").remote_dir == "/root/mcpctl/adm"


def test_tilde_paths_are_expanded(mcpctl_home: Path) -> None:
    write_profile("web", BASIC + 'identity_file = "~/.ssh/id_ed25519"\ndata = ["~/sales.csv"]\n')
    web = load_profile("web")
    assert web.identity_file == Path.home() / ".ssh" / "id_ed25519"
    assert web.data == [Path.home() / "sales.csv"]


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


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("host", "-oProxyCommand=x", "must not start with '-'"),
        ("user", "-lroot", "must not start with '-'"),
        ("host", "a b", "must be a host name or IP address"),
        ("user", "a@b", "must be a user name"),
    ],
)
def test_host_and_user_are_refused_with_the_reason_that_applies(field: str, value: str, reason: str) -> None:
    values = {"host": "h", "user": "u", field: value}
    with pytest.raises(ProfileError, match=f"field '{field}': {reason}"):
        new_profile(name="web", **values)


def test_check_name_returns_a_valid_name_and_says_the_rule_otherwise() -> None:
    assert check_name("db-2_east") == "db-2_east"
    with pytest.raises(ProfileError) as info:
        check_name("Web")
    assert info.value.message == "'Web' is not a valid profile name"
    assert (
        info.value.hint
        == "a name must be 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
    )


def test_default_remote_dir_is_under_the_login_users_home() -> None:
    assert default_remote_dir("ann", "web") == "/home/ann/mcpctl/web"
    assert default_remote_dir("root", "web") == "/root/mcpctl/web"
