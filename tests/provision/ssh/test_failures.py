"""failures.py: what a failed login says, provoked against a real OpenSSH sshd (the ``sshd`` fixture in
tests/conftest.py), and the translation of each foreign error on its own."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import anyio
import asyncssh
import pytest

from provision.errors import ConnectError, KeyNeedsPassphrase, ProfileError
from provision.ssh import failures
from provision.ssh.remote import connect
from provision.ssh.target import Target

pytestmark = pytest.mark.anyio

BOUND = 30  # seconds: an upper bound on any single test step, never an expectation


# ------------------------------------------------------------------------------- reachability, auth


@pytest.fixture
def refused_port() -> int:
    """A loopback port nobody listens on (bound, never listened, so the kernel answers RST)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_port_fails_fast_with_advice(sshd: Any, refused_port: int) -> None:
    with anyio.fail_after(5), pytest.raises(ConnectError) as info:  # far below connect_timeout
        async with connect(sshd.target(port=refused_port, connect_timeout=60)):
            pass
    message = str(info.value)
    assert f"cannot reach 127.0.0.1:{refused_port}: connection refused" in message
    assert "mcpctl doctor test" in message


async def test_silent_host_times_out_after_connect_timeout(sshd: Any) -> None:
    with socket.socket() as silent:  # accepts TCP (backlog) but never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with anyio.fail_after(BOUND), pytest.raises(ConnectError) as info:
            async with connect(sshd.target(port=port, connect_timeout=0.5)):
                pass
    assert "no answer within 0.5 s" in str(info.value)
    assert "firewall" in str(info.value)


async def test_unresolvable_host_is_reported(sshd: Any) -> None:
    with anyio.fail_after(BOUND), pytest.raises(ConnectError) as info:
        async with connect(sshd.target(host="no-such-host.invalid", connect_timeout=5)):
            pass
    assert "no-such-host.invalid" in str(info.value)


async def test_unauthorised_key_names_the_key_and_user(sshd: Any, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_ed25519"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(stranger)
    with anyio.fail_after(BOUND), pytest.raises(ConnectError) as info:
        async with connect(sshd.target(identity_file=stranger)):
            pass
    message = str(info.value)
    assert f"refused the login of user '{sshd.user}'" in message
    assert str(stranger) in message
    assert "authorized_keys" in message


async def test_missing_identity_file_is_a_profile_error(sshd: Any, tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        async with connect(sshd.target(identity_file=tmp_path / "nope")):
            pass


async def test_encrypted_identity_without_agent_is_a_profile_error(sshd: Any, tmp_path: Path) -> None:
    locked = tmp_path / "locked_ed25519"
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(locked, format_name="pkcs8-pem", passphrase="pw")
    with pytest.raises(ProfileError, match="ssh-agent"):
        async with connect(sshd.target(identity_file=locked)):
            pass


async def test_an_encrypted_identity_is_told_by_its_class(sshd: Any, tmp_path: Path) -> None:
    locked = tmp_path / "locked_ed25519"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(
        locked, format_name="pkcs8-pem", passphrase="pw"
    )
    with pytest.raises(KeyNeedsPassphrase) as info:
        async with connect(sshd.target(identity_file=locked)):
            pass
    assert info.value.path == locked
    assert info.value.exit_code == 2  # a profile problem: waiting or retrying cannot fix it
    assert info.value.hint is not None and "use_agent = true" in info.value.hint


# --------------------------------------------------------------------------- each translation alone


def _target(**overrides: Any) -> Target:
    fields: dict[str, Any] = {"host": "h.example", "port": 2222, "user": "ana", "known_hosts": Path("/kh")}
    return Target(**{**fields, "name": "demo", **overrides})


def test_a_refused_connection_says_so() -> None:
    error = failures.unreachable(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "h", 22, 5, "demo")
    assert error.message == "cannot reach h:22: connection refused"
    assert error.hint == "is sshd running and the port right? (`mcpctl doctor demo` checks each step)"


def test_a_name_with_several_addresses_is_refused_when_one_of_them_refused() -> None:
    # asyncio's one OSError for all the addresses of a name: no errno, only its text lists the attempts.
    combined = OSError(
        f"Multiple exceptions: [Errno {errno.ECONNREFUSED}] Connect call failed ('127.0.0.1', 22), "
        f"[Errno {errno.ENETUNREACH}] Connect call failed ('::1', 22, 0, 0)"
    )
    assert failures.unreachable(combined, "localhost", 22, 5, "demo").message.endswith("connection refused")
    unreachable_only = OSError(
        f"Multiple exceptions: [Errno {errno.ENETUNREACH}] a, [Errno {errno.EHOSTUNREACH}] b"
    )
    assert (
        "connection refused" not in failures.unreachable(unreachable_only, "localhost", 22, 5, "demo").message
    )


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "cannot resolve the host name 'h'"),
        (TimeoutError(), "no answer within 5 s"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "cannot reach h:22: Network is unreachable"),
        (asyncssh.DisconnectError(asyncssh.DISC_PROTOCOL_ERROR, "too many"), "closed the SSH connection"),
        (OSError(errno.EPERM, "Operation not permitted"), "cannot reach h:22: Operation not permitted"),
    ],
)
def test_each_way_of_not_reaching_a_host_has_its_words_and_a_hint(exc: BaseException, words: str) -> None:
    error = failures.unreachable(exc, "h", 22, 5, "demo")
    assert isinstance(error, ConnectError)
    assert words in error.message
    assert error.hint and not error.hint[0].isupper() and not error.hint.endswith(".")
    assert str(error) == f"{error.message}; {error.hint}"


def test_an_ipv6_address_is_shown_in_brackets() -> None:
    error = failures.unreachable(TimeoutError(), "::1", 2222, 5, "demo")
    assert error.message.startswith("cannot reach [::1]:2222:")


def test_a_refused_login_names_what_was_offered() -> None:
    with_file = failures.login_refused(_target(identity_file=Path("/keys/id")))
    assert with_file.message == "h.example:2222 refused the login of user 'ana' with identity file /keys/id"
    assert with_file.hint is not None and "add /keys/id.pub to ~ana/.ssh/authorized_keys" in with_file.hint
    defaults = failures.login_refused(_target(use_agent=True))
    assert defaults.message.endswith("with the default keys in ~/.ssh and the ssh-agent")
    assert defaults.hint is not None and "profile 'demo'" in defaults.hint


def test_an_unusable_identity_file_is_encrypted_or_not_a_key(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(
        locked, format_name="pkcs8-pem", passphrase="pw"
    )
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    refusal = asyncssh.KeyImportError("whatever asyncssh says")
    encrypted = failures.identity_unusable(_target(identity_file=locked), refusal)
    assert isinstance(encrypted, KeyNeedsPassphrase) and encrypted.path == locked
    broken = failures.identity_unusable(_target(identity_file=garbage), refusal)
    assert type(broken) is ProfileError
    assert (
        broken.message == f"cannot use the identity file {garbage} of profile 'demo': whatever asyncssh says"
    )


def test_a_missing_identity_file_is_told_from_an_unreadable_one(tmp_path: Path) -> None:
    assert failures.identity_missing(_target(identity_file=tmp_path / "nope")).message.endswith(
        "does not exist"
    )
    there = tmp_path / "there"
    there.write_text("")
    assert failures.identity_missing(_target(identity_file=there)).message.endswith("is not readable")


def test_a_dropped_connection_says_what_it_was_doing() -> None:
    error = failures.dropped(_target(), asyncssh.ConnectionLost("reset by peer"), "running `ls`")
    assert error.message == "the SSH connection to h.example:2222 dropped while running `ls` (reset by peer)"
    assert error.hint == "run the command again, and `mcpctl doctor demo` if it keeps happening"
