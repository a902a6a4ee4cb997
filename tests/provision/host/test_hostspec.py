"""host/hostspec.py: ``--host [ssh://][user@]host[:port]`` read as ssh reads it."""

from __future__ import annotations

import pytest

from provision.errors import ProfileError
from provision.host.hostspec import parse_host_spec


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
