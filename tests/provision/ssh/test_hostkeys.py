"""hostkeys.py: fetching, verifying, parsing and pinning host keys, and strict checking at login
against a real OpenSSH sshd (the ``sshd`` fixture in tests/conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncssh
import pytest

from provision.errors import HostKeyError
from provision.ssh.hostkeys import fetch_host_key, parse_host_key, pin_host_key, verify_host_key
from provision.ssh.remote import connect
from provision.ssh.target import HostKeySpec, known_hosts_entry

pytestmark = pytest.mark.anyio

BOUND = 30  # seconds: an upper bound on any single test step, never an expectation


def _fingerprint(key_line: str) -> str:
    return asyncssh.import_public_key(key_line).get_fingerprint("sha256")


def _other_key_line() -> str:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


@pytest.fixture
def known_hosts_copy(sshd: Any, tmp_path: Path) -> Path:
    """A private copy of the fixture's known_hosts, free to modify."""
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts.read_text())
    return path


# ------------------------------------------------------------------------------------------ host keys


async def test_changed_host_key_is_refused_with_both_fingerprints(sshd: Any, known_hosts_copy: Path) -> None:
    other = _other_key_line()
    pin_host_key(known_hosts_copy, sshd.host, sshd.port, other)
    with anyio.fail_after(BOUND), pytest.raises(HostKeyError) as info:
        async with connect(sshd.target(known_hosts=known_hosts_copy)):
            pass
    message = str(info.value)
    assert "CHANGED" in message
    assert _fingerprint(other) in message
    assert _fingerprint(sshd.host_key_line) in message
    assert str(known_hosts_copy) in message
    assert "mcpctl provision test --host-key" in message


async def test_unpinned_host_is_refused(sshd: Any, tmp_path: Path) -> None:
    other_host = tmp_path / "other_host"
    other_host.write_text(f"[10.9.8.7]:{sshd.port} {sshd.host_key_line}\n")  # the right key, wrong host
    with anyio.fail_after(BOUND), pytest.raises(HostKeyError) as info:
        async with connect(sshd.target(known_hosts=other_host)):
            pass
    assert "not pinned" in str(info.value)
    assert _fingerprint(sshd.host_key_line) in str(info.value)
    assert "CHANGED" not in str(info.value)


async def test_missing_known_hosts_file_is_refused_before_connecting(sshd: Any, tmp_path: Path) -> None:
    missing = tmp_path / "never-written"
    with pytest.raises(HostKeyError, match="not pinned"):
        async with connect(sshd.target(known_hosts=missing)):
            pass
    assert not missing.exists()


async def test_user_known_hosts_is_never_consulted(
    sshd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a ~/.ssh/known_hosts that trusts the host does not help an unpinned target."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts.read_text())
    monkeypatch.setenv("HOME", str(home))
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with anyio.fail_after(BOUND), pytest.raises(HostKeyError, match="not pinned"):
        async with connect(sshd.target(known_hosts=empty)):
            pass


async def test_host_key_alias_is_looked_up_instead_of_the_address(sshd: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    pin_host_key(known, sshd.host, sshd.port, sshd.host_key_line, alias="i-0abc123")
    async with connect(sshd.target(known_hosts=known, host_key_alias="i-0abc123")) as remote:
        assert (await remote.run(["echo", "ok"])).stdout == "ok\n"
    with pytest.raises(HostKeyError, match="not pinned"):
        async with connect(sshd.target(known_hosts=known, host_key_alias="i-0other")):
            pass


async def test_fetch_host_key_returns_the_servers_key(sshd: Any) -> None:
    with anyio.fail_after(BOUND):
        key = await fetch_host_key(sshd.host, sshd.port)
    assert key.public_key_line == sshd.host_key_line
    assert key.algorithm == "ssh-ed25519"
    assert key.fingerprint == _fingerprint(sshd.host_key_line)


async def test_verify_host_key_accepts_the_key_or_its_fingerprint_and_refuses_others(sshd: Any) -> None:
    with anyio.fail_after(BOUND):
        by_line = await verify_host_key(sshd.host, sshd.port, parse_host_key(sshd.host_key_line))
        by_print = await verify_host_key(sshd.host, sshd.port, parse_host_key(by_line.fingerprint))
        assert by_line == by_print
        with pytest.raises(HostKeyError) as info:
            await verify_host_key(sshd.host, sshd.port, parse_host_key(_other_key_line()))
    assert by_line.fingerprint in str(info.value)


async def test_fetch_pin_then_connect(sshd: Any, tmp_path: Path) -> None:
    """The provisioning flow: fetch the key, pin it in a fresh file, connect with strict checking."""
    known = tmp_path / "state" / "known_hosts" / "demo"
    key = await fetch_host_key(sshd.host, sshd.port)
    pin_host_key(known, sshd.host, sshd.port, key.public_key_line)
    assert known.read_text() == f"[{sshd.host}]:{sshd.port} {sshd.host_key_line}\n"
    assert known.stat().st_mode & 0o777 == 0o600
    async with connect(sshd.target(known_hosts=known)) as remote:
        assert (await remote.run(["echo", "pinned"])).stdout == "pinned\n"


def test_pin_host_key_replaces_the_entry_and_keeps_the_others(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    old, new, unrelated = _other_key_line(), _other_key_line(), _other_key_line()
    salt = os.urandom(20)
    hashed = hmac.new(salt, b"[10.0.0.5]:2222", hashlib.sha1).digest()
    hashed_name = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(hashed).decode()}"
    known.write_text(
        "# a comment\n"
        f"[10.0.0.5]:2222 {old}\n"
        f"[10.0.0.5]:2222,other.example {old}\n"
        f"{hashed_name} {old}\n"
        f"example.org {unrelated}\n"
    )
    pin_host_key(known, "10.0.0.5", 2222, new + " a comment to drop")
    assert known.read_text().splitlines() == [
        "# a comment",
        f"other.example {old}",
        f"example.org {unrelated}",
        f"[10.0.0.5]:2222 {new}",
    ]
    pin_host_key(known, "10.0.0.5", 22, new)
    assert known.read_text().splitlines()[-1] == f"10.0.0.5 {new}"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_pin_host_key_needs_a_key_line_not_a_fingerprint(tmp_path: Path) -> None:
    fingerprint = _fingerprint(_other_key_line())
    with pytest.raises(HostKeyError, match="public key line"):
        pin_host_key(tmp_path / "known_hosts", "h", 22, fingerprint)


@pytest.mark.parametrize(
    "make_text",
    [
        pytest.param(lambda line: line, id="key line"),
        pytest.param(lambda line: line + " root@host", id="key line with comment"),
        pytest.param(lambda line: "[10.0.0.1]:22 " + line, id="keyscan line"),
        pytest.param(lambda line: "  " + line + "\n", id="surrounding whitespace"),
    ],
)
def test_parse_host_key_accepts_key_lines(make_text: Callable[[str], str]) -> None:
    line = _other_key_line()
    spec = parse_host_key(make_text(line))
    assert spec == HostKeySpec(
        fingerprint=_fingerprint(line),
        public_key_line=line,
        algorithm="ssh-ed25519",
        host_key_algorithms=("ssh-ed25519",),
    )


def test_parse_host_key_accepts_fingerprints_with_or_without_padding() -> None:
    fingerprint = _fingerprint(_other_key_line())
    assert parse_host_key(fingerprint).fingerprint == fingerprint
    assert parse_host_key(fingerprint + "=").fingerprint == fingerprint
    assert parse_host_key("sha256:" + fingerprint[7:]).fingerprint == fingerprint


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SHA256:tooshort", "not a SHA256 fingerprint"),
        ("MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", "MD5"),
        ("ssh-ed25519 not-base64", "neither"),
        ("", "neither"),
    ],
)
def test_parse_host_key_rejects_garbage(text: str, reason: str) -> None:
    with pytest.raises(HostKeyError, match=reason):
        parse_host_key(text)


def test_known_hosts_entry() -> None:
    assert known_hosts_entry("example.org", 22) == "example.org"
    assert known_hosts_entry("127.0.0.1", 2222) == "[127.0.0.1]:2222"
