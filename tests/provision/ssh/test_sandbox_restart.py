"""A restarted sandbox does not strand its profiles: same port when it can, profiles follow when not.

Everything is real: the sandbox server runs as its own process on 127.0.0.1, its port is taken away by
a real socket, profiles and known_hosts are real files in a private ``MCPCTL_HOME``, and logins go
through mcpctl's SSH seam with strict host key checking.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import asyncssh
import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.errors import HostKeyError
from provision.profiles import Profile, known_hosts_path, load_profile, save_profile
from provision.ssh import remote, sandbox
from provision.ssh.hostkeys import move_pin, pin_host_key
from provision.ssh.profile_target import follow_sandbox, target_for
from provision.ssh.sandbox import SandboxInfo
from provision.ssh.target import known_hosts_entry

TIMEOUT = 20.0  # an upper bound on any single wait, never an expectation


def _public_line() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


KEY_A, KEY_B = _public_line(), _public_line()  # keys nobody serves: "ssh-ed25519 AAAA..."


@pytest.fixture
def home(mcpctl_home: Path) -> Iterator[Path]:
    """A private MCPCTL_HOME; whatever sandbox a test leaves running is stopped afterwards."""
    yield mcpctl_home
    sandbox.down()


@contextmanager
def occupied(port: int) -> Iterator[None]:
    """Listen on 127.0.0.1:``port`` as another program would, so the sandbox cannot have it.

    SO_REUSEADDR: the stopped sandbox may leave connections in TIME_WAIT on that port.
    """
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        yield


def _sandbox_profile(info: SandboxInfo, name: str = "box") -> Profile:
    """Save a sandbox profile and pin the sandbox's key, as `mcpctl provision NAME --sandbox` does."""
    profile = Profile(
        name=name,
        kind="sandbox",
        host=info.host,
        port=info.port,
        user=info.user,
        identity_file=info.client_key,
        remote_dir=str(info.home),
    )
    save_profile(profile)
    pin_host_key(known_hosts_path(name), info.host, info.port, info.host_key_line)
    return profile


def _restart_elsewhere() -> SandboxInfo:
    """Stop the sandbox and bring it back while its last port is held by someone else."""
    last = sandbox.last_port()
    assert last is not None
    sandbox.down()
    with occupied(last):
        moved = sandbox.up()
    assert moved.port != last
    return moved


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


async def _echo(profile: Profile) -> str:
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(target_for(profile)) as host:
            return (await host.run(["echo", "in"])).stdout


# ------------------------------------------------------------------------------------------- the port


def test_up_returns_to_its_last_port_which_down_keeps(home: Path) -> None:
    assert sandbox.last_port() is None
    first = sandbox.up()
    assert sandbox.last_port() == first.port
    sandbox.down()
    assert sandbox.last_port() == first.port  # remembered while stopped
    again = sandbox.up()
    assert again.pid != first.pid
    assert again.port == first.port
    assert again.host_key_line == first.host_key_line


def test_up_takes_a_free_port_when_its_last_one_is_taken_and_remembers_that(home: Path) -> None:
    first = sandbox.up()
    moved = _restart_elsewhere()
    assert moved.host_key_line == first.host_key_line  # same key: pins stay valid, only the port moved
    assert sandbox.last_port() == moved.port
    sandbox.down()
    assert sandbox.up().port == moved.port  # the new port is now the one it returns to


def test_an_unreadable_port_file_means_any_free_port(home: Path) -> None:
    (sandbox.sandbox_dir() / "port").write_text("not a port\n")
    assert sandbox.last_port() is None
    info = sandbox.up()
    assert sandbox.last_port() == info.port


def test_cli_up_says_the_sandbox_moved_and_what_ssh_entries_need(home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["sandbox", "up"])
    assert first.exit_code == 0, first.output
    assert "moved" not in first.output
    last = sandbox.last_port()
    assert last is not None
    assert runner.invoke(app, ["sandbox", "down"]).exit_code == 0
    stopped = runner.invoke(app, ["sandbox", "status"])
    assert stopped.exit_code == 1 and f"last on port {last}" in stopped.output
    with occupied(last):
        moved = runner.invoke(app, ["sandbox", "up"])
    assert moved.exit_code == 0, moved.output
    text = " ".join(moved.output.split())
    assert f"moved from port {last} (it was taken)" in text
    assert "mcpctl config claude NAME --style ssh" in text


# ----------------------------------------------------------------------------------- profiles follow


@pytest.mark.anyio
async def test_a_profile_follows_the_sandbox_and_its_pins_do_not_pile_up(home: Path) -> None:
    info = sandbox.up()
    profile = _sandbox_profile(info)
    known_hosts = known_hosts_path("box")
    assert await _echo(profile) == "in\n"

    for _ in range(3):
        moved = await anyio.to_thread.run_sync(_restart_elsewhere)
        # The profile loaded from disk still names the old port: the target follows the sandbox.
        assert await _echo(load_profile("box")) == "in\n"
        assert load_profile("box").port == moved.port  # and the file is updated
        assert _lines(known_hosts) == [f"[127.0.0.1]:{moved.port} {info.host_key_line}"]

    # `provision --sandbox` pins the new port beside the old one; the next use drops the old line.
    sandbox.down()
    with occupied(moved.port):
        again = sandbox.up()
    pin_host_key(known_hosts, again.host, again.port, again.host_key_line)
    assert len(_lines(known_hosts)) == 2
    assert target_for(load_profile("box")).port == again.port
    assert _lines(known_hosts) == [f"[127.0.0.1]:{again.port} {info.host_key_line}"]


def test_a_stopped_sandbox_leaves_the_profile_as_it_is(home: Path) -> None:
    info = sandbox.up()
    _sandbox_profile(info)
    before = known_hosts_path("box").read_bytes()
    sandbox.down()
    assert target_for(load_profile("box")).port == info.port
    assert known_hosts_path("box").read_bytes() == before


@pytest.mark.anyio
async def test_a_moved_pin_keeps_its_key_so_a_changed_key_is_still_refused(home: Path) -> None:
    info = sandbox.up()
    profile = _sandbox_profile(info)
    # The pin names another key than the sandbox's: moving it must not turn it into the sandbox's.
    pin_host_key(known_hosts_path("box"), info.host, info.port, KEY_A)
    moved = await anyio.to_thread.run_sync(_restart_elsewhere)
    target = target_for(profile)
    assert target.port == moved.port
    assert _lines(known_hosts_path("box")) == [f"[127.0.0.1]:{moved.port} {KEY_A}"]
    with anyio.fail_after(TIMEOUT), pytest.raises(HostKeyError):
        async with remote.connect(target):
            pass


def test_only_sandbox_profiles_on_loopback_follow(home: Path) -> None:
    info = sandbox.up()
    host = Profile(name="plain", host=info.host, port=1, user=info.user)
    assert follow_sandbox(host) is host
    elsewhere = Profile(name="far", kind="sandbox", host="192.0.2.1", port=1, user=info.user)
    assert follow_sandbox(elsewhere) is elsewhere
    unsaved = Profile(name="unsaved", kind="sandbox", host=info.host, port=1, user=info.user)
    assert follow_sandbox(unsaved).port == info.port  # a profile not saved yet still follows


# ------------------------------------------------------------------------------------------ move_pin


def test_move_pin_renames_the_last_port_and_drops_older_ones(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(
        "# pinned by mcpctl\n"
        f"[127.0.0.1]:2001 {KEY_B}\n"
        f"other.example {KEY_B}\n"
        f"@revoked [127.0.0.1]:2002 {KEY_B}\n"
        f"[127.0.0.1]:2002,alias {KEY_A}\n"
        f"[127.0.0.1]:2002 {KEY_B}\n"
    )
    assert move_pin(path, "127.0.0.1", 2003) is True
    assert path.read_text().splitlines() == [
        "# pinned by mcpctl",
        f"other.example {KEY_B}",
        f"@revoked [127.0.0.1]:2002 {KEY_B}",
        f"alias,[127.0.0.1]:2003 {KEY_A}",
        f"[127.0.0.1]:2003 {KEY_B}",
    ]
    assert move_pin(path, "127.0.0.1", 2003) is False  # nothing left to move


def test_move_pin_keeps_an_existing_pin_of_the_new_port(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"[127.0.0.1]:2001 {KEY_A}\n127.0.0.1 {KEY_A}\n[127.0.0.1]:2003 {KEY_B}\n")
    assert move_pin(path, "127.0.0.1", 2003) is True
    assert path.read_text() == f"[127.0.0.1]:2003 {KEY_B}\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_move_pin_to_port_22_and_without_anything_to_move(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    assert move_pin(path, "127.0.0.1", 2001) is False  # no file: nothing pinned
    assert not path.exists()
    path.write_text(f"[127.0.0.10]:2001 {KEY_A}\n[127.0.0.1]:2001 {KEY_B}\n")
    assert move_pin(path, "127.0.0.1", 22) is True
    assert path.read_text() == f"[127.0.0.10]:2001 {KEY_A}\n{known_hosts_entry('127.0.0.1', 22)} {KEY_B}\n"
    untouched = path.read_text()
    assert move_pin(path, "192.0.2.1", 2001) is False
    assert path.read_text() == untouched
