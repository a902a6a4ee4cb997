"""remote.py against a real OpenSSH sshd (the ``sshd`` fixture in tests/conftest.py): commands, processes,
SFTP, the channel limit, and the connect options that keep ~/.ssh out of the way."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import anyio
import asyncssh
import pytest

from provision.errors import ConnectError, RemoteError
from provision.ssh.channels import MAX_CHANNELS
from provision.ssh.remote import KEEPALIVE_COUNT_MAX, connect

pytestmark = pytest.mark.anyio

BOUND = 30  # seconds: an upper bound on any single test step, never an expectation


# ------------------------------------------------------------------------------------------- run


async def test_run_returns_stdout_stderr_and_exit_status(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        result = await remote.run(["sh", "-c", "printf out; printf err >&2; exit 3"], check=False)
    assert result.argv == ("sh", "-c", "printf out; printf err >&2; exit 3")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out", "err")


async def test_run_check_raises_remote_error_with_command_and_stderr_tail(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        with pytest.raises(RemoteError) as info:
            await remote.run(["sh", "-c", "echo early >&2; echo 'disk is full' >&2; exit 7"])
    message = str(info.value)
    assert "exit status 7" in message
    assert "disk is full" in message
    assert "sh -c" in message
    assert f"{sshd.host}:{sshd.port}" in message


async def test_run_masks_secrets_in_errors(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        with pytest.raises(RemoteError) as info:
            await remote.run(["sh", "-c", 'echo "$0" >&2; exit 1', "tok-s3cr3t"], secrets=["tok-s3cr3t"])
    assert "tok-s3cr3t" not in str(info.value)
    assert "***" in str(info.value)


async def test_run_feeds_input_then_end_of_file(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        with anyio.fail_after(BOUND):  # `cat` would wait forever without EOF
            text = await remote.run(["cat"], input="héllo\nwörld\n")
            raw = await remote.run(["od", "-An", "-tx1"], input=bytes([0, 1, 255]))
            empty = await remote.run(["cat"])
    assert text.stdout == "héllo\nwörld\n"
    assert raw.stdout.split() == ["00", "01", "ff"]
    assert empty.stdout == ""


def _unique_sleep() -> str:
    """A `sleep` argument no other process on this machine has, to find the process by."""
    return f"600.{os.getpid()}{int.from_bytes(os.urandom(3), 'big')}"


async def _wait_until_gone(remote: Any, sleeper: str) -> None:
    """Wait (bounded) on the host itself until no `sleep SLEEPER` process is left."""
    script = 'while pgrep -x -f "sleep $0" >/dev/null; do sleep 0.05; done'
    await remote.run(["sh", "-c", script, sleeper], timeout=BOUND)


@pytest.mark.parametrize("account", ["main", "noisy"])
async def test_run_timeout_raises_and_kills_the_command(sshd: Any, account: str) -> None:
    # sshd refuses SSH signal requests for root logins, so this also proves the kill goes another way.
    target = sshd.target() if account == "main" else sshd.noisy_target()
    sleeper = _unique_sleep()
    async with connect(target) as remote:
        with anyio.fail_after(BOUND), pytest.raises(RemoteError) as info:
            await remote.run(["sleep", sleeper], timeout=0.5)
        assert "did not finish within 0.5 s" in str(info.value)
        await _wait_until_gone(remote, sleeper)


async def test_kill_stops_the_process_group(sshd: Any) -> None:
    sleeper = _unique_sleep()
    async with connect(sshd.target()) as remote:
        # The child sleep is in the command's process group: killing the group must take it too.
        process = await remote.create_process(["sh", "-c", 'sleep "$0" & echo started; wait', sleeper])
        pid = remote.remote_pid(process)
        assert pid is not None
        with anyio.fail_after(BOUND):
            assert await process.stdout.readline() == b"started\n"
            await remote.kill(process)
            await _wait_until_gone(remote, sleeper)
            alive = await remote.run(["kill", "-0", str(pid)], check=False)
    assert alive.exit_status != 0


async def test_process_is_binary_and_has_no_pty(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        process = await remote.create_process(["sh", "-c", "tty; cat"])
        with anyio.fail_after(BOUND):
            first = await process.stdout.readline()
            process.stdin.write(b"\x00\xffbytes\n")
            echoed = await process.stdout.readline()
            process.stdin.write_eof()
            await process.wait()
    assert first == b"not a tty\n"
    assert echoed == b"\x00\xffbytes\n"


async def test_connection_drop_becomes_connect_error(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        await remote.run(["true"])
        assert sshd.kill_session_processes() >= 1
        with anyio.fail_after(BOUND), pytest.raises(ConnectError) as info:
            await remote.conn.wait_closed()
            await remote.run(["true"])
    assert "dropped" in str(info.value)


async def test_raw_connection_calls_after_a_drop_become_connect_error(sshd: Any) -> None:
    with anyio.fail_after(BOUND), pytest.raises(ConnectError, match="dropped"):
        async with connect(sshd.target()) as remote:
            await remote.run(["true"])
            sshd.kill_session_processes()
            await remote.conn.wait_closed()
            await remote.conn.create_process("true")  # asyncssh's own ChannelOpenError inside the block


# ------------------------------------------------------------------------------------ noisy rc files


async def test_rc_noise_lands_in_raw_output(sshd: Any) -> None:
    """The control: without clean mode, the noisy account's junk really is in the output."""
    async with connect(sshd.noisy_target()) as remote:
        result = await remote.run(["printf", "%s", "payload"], clean=False)
    assert sshd.noise in result.stdout
    assert result.stdout.endswith("payload")
    assert sshd.noise in result.stderr


async def test_clean_run_returns_exactly_the_commands_output(sshd: Any) -> None:
    async with connect(sshd.noisy_target()) as remote:
        script = "printf 'line 1\\nline 2'; printf warn >&2; exit 4"
        result = await remote.run(["sh", "-c", script], check=False)
    assert result.stdout == "line 1\nline 2"
    assert result.stderr == "warn"
    assert result.exit_status == 4


async def test_clean_process_starts_at_the_commands_first_byte(sshd: Any) -> None:
    async with connect(sshd.noisy_target()) as remote:
        process = await remote.create_process(["cat"])
        with anyio.fail_after(BOUND):
            process.stdin.write(b'{"jsonrpc": "2.0"}\n')
            line = await process.stdout.readline()
            process.stdin.write_eof()
            await process.wait()
    assert line == b'{"jsonrpc": "2.0"}\n'


async def test_a_login_that_never_runs_the_command_is_reported(sshd_factory: Any) -> None:
    """sshd's ForceCommand stands in for an rc file that exits: the command never starts."""
    server = sshd_factory(ForceCommand="echo forced-instead")
    async with connect(server.target()) as remote:
        with anyio.fail_after(BOUND):
            with pytest.raises(RemoteError, match=r"exited .*before running `echo hi`.*forced-instead"):
                await remote.run(["echo", "hi"])
            with pytest.raises(RemoteError, match=r"exited before running `cat`.*forced-instead"):
                await remote.create_process(["cat"])
            raw = await remote.run(["echo", "hi"], clean=False)
    assert raw.stdout == "forced-instead\n"


async def test_clean_process_refuses_a_stdout_redirect(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        with pytest.raises(ValueError, match="redirect"):
            await remote.create_process(["cat"], stdout=asyncssh.DEVNULL)


# -------------------------------------------------------------------------------------------- sftp


async def test_sftp_put_get_and_posix_rename(sshd: Any, tmp_path: Path) -> None:
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(200_000))
    remote_dir = (await _remote_tmpdir(sshd)).rstrip("/")
    async with connect(sshd.target()) as remote:
        async with remote.sftp() as sftp:
            await sftp.put(str(local), f"{remote_dir}/payload.tmp")
            await sftp.posix_rename(f"{remote_dir}/payload.tmp", f"{remote_dir}/payload.bin")
            assert not await sftp.exists(f"{remote_dir}/payload.tmp")
            await sftp.get(f"{remote_dir}/payload.bin", str(tmp_path / "back.bin"))
        await remote.run(["rm", "-rf", remote_dir])
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()


async def test_sftp_session_is_shared_and_holds_one_channel(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        assert remote.channels_in_use == 0
        async with remote.sftp() as first, remote.sftp() as second:
            assert first is second
        assert remote.channels_in_use == 1
        async with remote.sftp() as again:
            assert again is first


async def test_sftp_errors_become_remote_errors(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        async with remote.sftp() as sftp:  # caught inside the block: the caller's to handle
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat("/nonexistent/mcpctl")
        with pytest.raises(RemoteError, match="file operation"):
            async with remote.sftp() as sftp:
                await sftp.stat("/nonexistent/mcpctl")


async def _remote_tmpdir(sshd: Any) -> str:
    async with connect(sshd.target()) as remote:
        return (await remote.run(["mktemp", "-d"])).stdout.strip()


# ------------------------------------------------------------------------------------ channel limit


def _quick_target(server: Any) -> Any:
    """The noisy account when there is one: its rc files are cheap, unlike some root ~/.bashrc files
    (40 login shells in one test), and it exercises the marker under concurrency too."""
    return server.noisy_target() if server.noisy_user else server.target()


async def test_server_with_stock_maxsessions_refuses_an_eleventh_session(sshd_factory: Any) -> None:
    """The control for the next test: the limit we stay under is real (raw channels, no semaphore)."""
    server = sshd_factory(MaxSessions="10")
    async with connect(server.target()) as remote:
        processes = []
        try:
            with anyio.fail_after(BOUND), pytest.raises(asyncssh.ChannelOpenError):
                for _ in range(11):
                    processes.append(await remote.conn.create_process("cat"))
        finally:
            for process in processes:
                process.close()
    assert len(processes) == 10


async def test_twenty_concurrent_processes_never_hold_more_than_eight_channels(sshd_factory: Any) -> None:
    """20 processes asked for at once on a MaxSessions-10 server: the server runs exactly 8 at a time.

    Without the limit all 20 opens reach the server at once and it runs 10 of them.
    """
    server = sshd_factory(MaxSessions="10")
    started = 0
    target = _quick_target(server)
    eight_started = asyncio.Event()
    release = asyncio.Event()

    async with connect(target) as remote:

        async def hold_one() -> None:
            nonlocal started
            process = await remote.create_process(["cat"])
            started += 1
            if started == MAX_CHANNELS:
                eight_started.set()
            await release.wait()
            process.stdin.write_eof()
            await process.wait()

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(hold_one)
                await eight_started.wait()
                running_on_server = len(server.session_processes())
                in_use = remote.channels_in_use
                release.set()
            results = await asyncio.gather(*(remote.run(["echo", str(i)]) for i in range(12)))
    assert (running_on_server, in_use) == (MAX_CHANNELS, MAX_CHANNELS)
    assert started == 20
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(12)]


# ------------------------------------------------------------------------- options and isolation


async def test_aes_gcm_is_negotiated_with_openssh_and_no_legacy_cipher_is_offered(sshd: Any) -> None:
    async with connect(sshd.target()) as remote:
        assert remote.conn.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
        offered = remote.connect_options["encryption_algs"]
        assert not [alg for alg in offered if "cbc" in alg or "arcfour" in alg]


async def test_keepalive_is_on(sshd: Any) -> None:
    async with connect(sshd.target(keepalive_interval=7.5)) as remote:
        assert remote.connect_options["keepalive_interval"] == 7.5
        assert remote.connect_options["keepalive_count_max"] == KEEPALIVE_COUNT_MAX
        # What asyncssh itself armed (private attributes: asyncssh exposes no getter).
        assert remote.conn._keepalive_interval == 7.5
        assert remote.conn._keepalive_count_max == KEEPALIVE_COUNT_MAX


@pytest.fixture
def agent_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point SSH_AUTH_SOCK at a path for a fake agent."""
    path = str(tmp_path / "agent.sock")
    monkeypatch.setenv("SSH_AUTH_SOCK", path)
    return path


async def test_agent_is_not_used_unless_asked(sshd: Any, agent_socket: str) -> None:
    connections = 0

    async def agent_without_keys(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer every agent request with "no identities" (SSH_AGENT_IDENTITIES_ANSWER, 0 keys)."""
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = int.from_bytes(await reader.readexactly(4), "big")
                await reader.readexactly(length)
                writer.write((5).to_bytes(4, "big") + bytes([12]) + (0).to_bytes(4, "big"))
        writer.close()

    server = await asyncio.start_unix_server(agent_without_keys, agent_socket)
    try:
        async with connect(sshd.target()) as remote:
            await remote.run(["true"])
        assert connections == 0
        # The control: asked to, the client does talk to the agent (and still logs in with its key).
        async with connect(sshd.target(use_agent=True)) as remote:
            await remote.run(["true"])
        assert connections >= 1
    finally:
        server.close()


async def test_ssh_config_is_not_read_unless_asked(
    sshd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n    ProxyCommand /bin/false\n")
    monkeypatch.setenv("HOME", str(home))
    async with connect(sshd.target()) as remote:
        assert (await remote.run(["echo", "direct"])).stdout == "direct\n"
    # The control: a client that reads ~/.ssh/config goes through the broken ProxyCommand.
    with anyio.fail_after(BOUND), pytest.raises(ConnectError):
        async with connect(sshd.target(use_ssh_config=True, connect_timeout=5)):
            pass
