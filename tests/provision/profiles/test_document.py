"""profiles/document.py: a profile's TOML text, read with file, line and field in errors, and
written back without losing the user's comments and key order."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ProfileError
from provision.profiles import load_profile, new_profile, parse_profile, profile_text, save_profile
from tests.provision.profiles.helpers import BASIC, write_profile

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
    path = write_profile("lab", EDITED)
    profile = load_profile("lab")
    profile.host = "198.51.100.9"  # what `mcpctl start` does with a new public IP
    profile.ec2 = profile.ec2.model_copy(update={"instance_type": "t3.small"}) if profile.ec2 else None
    save_profile(profile)
    text = path.read_text()
    assert text == EDITED.replace("203.0.113.7", "198.51.100.9") + 'instance_type = "t3.small"\n'
    assert load_profile("lab") == profile


def test_saving_an_unchanged_profile_leaves_the_file_as_written(mcpctl_home: Path) -> None:
    path = write_profile("lab", EDITED)
    save_profile(load_profile("lab"))
    assert path.read_text() == EDITED  # defaults stay implicit, ~ stays ~


def test_saving_removes_a_value_that_became_none(mcpctl_home: Path) -> None:
    path = write_profile("lab", EDITED)
    profile = load_profile("lab")
    profile.ec2 = profile.ec2.model_copy(update={"instance_id": None}) if profile.ec2 else None
    save_profile(profile)
    assert "instance_id" not in path.read_text()
    assert "# close to the office" in path.read_text()
    assert load_profile("lab") == profile


def test_a_file_that_is_not_toml_is_written_anew(mcpctl_home: Path) -> None:
    path = write_profile("web", "this is [not toml\n")
    save_profile(new_profile(name="web", host="h", user="u"))
    assert path.read_text().startswith("# mcpctl profile 'web': edit freely")
    assert load_profile("web").host == "h"


def test_invalid_toml_reports_file_and_line(mcpctl_home: Path) -> None:
    path = write_profile("web", 'host = "h"\nuser = "u"\nport = = 22\n')
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
    path = write_profile("web", BASIC + extra)
    with pytest.raises(ProfileError) as info:
        load_profile("web")
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_required_fields_are_named(mcpctl_home: Path) -> None:
    write_profile("web", 'host = "h"\n')
    with pytest.raises(ProfileError) as info:
        load_profile("web")
    assert str(info.value).endswith("web.toml: field 'user': is required; fix the file or remove it")
    write_profile("web", 'user = "u"\n')
    with pytest.raises(ProfileError, match="field 'host' is required for a profile of kind 'host'"):
        load_profile("web")


def test_name_in_file_must_match_file_name(mcpctl_home: Path) -> None:
    write_profile("web", 'name = "api"\n' + BASIC)
    with pytest.raises(ProfileError, match="field 'name': 'api' does not match the file name"):
        load_profile("web")


def test_a_new_file_has_the_header_and_every_set_value() -> None:
    text = profile_text(new_profile(name="web", host="h.example", user="ann", port=2222))
    assert text.startswith("# mcpctl profile 'web': edit freely, unknown keys are rejected.\n")
    parsed = parse_profile(text, name="web", source=Path("web.toml"))
    assert (parsed.host, parsed.user, parsed.port) == ("h.example", "ann", 2222)


def test_parse_profile_names_the_source_and_takes_the_name_from_it() -> None:
    assert parse_profile(BASIC, name="web", source=Path("/p/web.toml")).name == "web"
    with pytest.raises(ProfileError) as info:
        parse_profile("port = 0\n" + BASIC, name="web", source=Path("/p/web.toml"))
    assert info.value.message == "/p/web.toml: field 'port': must be between 1 and 65535"
    assert info.value.hint == "fix the file or remove it"
