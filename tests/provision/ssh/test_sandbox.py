"""The sandbox host: lifecycle of the background server, and that it behaves like a real SSH host.

Everything is real: the server runs as its own process on 127.0.0.1, the client is mcpctl's own SSH
seam (``provision.ssh.remote``) with strict host key checking, plus the OpenSSH ``ssh``/``sftp`` binaries
when installed; commands are real processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncssh
import pytest

from provision.errors import ConnectError, HostKeyError, SandboxError
from provision.ssh import remote, sandbox
from provision.ssh.hostkeys import pin_host_key
from provision.ssh.sandbox import SandboxInfo
from provision.ssh.target import Target

TIMEOUT = 20.0  # generous upper bound for any single wait; the happy paths take milliseconds


@pytest.fixture
def home(mcpctl_home: Path) -> Iterator[Path]:
    """A private MCPCTL_HOME; whatever sandbox a test leaves running is stopped afterwards."""
    yield mcpctl_home
    sandbox.down()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxInfo]:
    """One sandbox shared by the tests that only use it (not start or stop it): keeps the suite fast."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCPCTL_HOME", str(tmp_path_factory.mktemp("mcpctl")))
        info = sandbox.up()
        try:
            yield info
        finally:
            sandbox.down()


def _target(
    info: SandboxInfo,
    directory: Path,
    *,
    key_line: str | None = None,
    key: Path | None = None,
    user: str = "",
) -> Target:
    """A target for the sandbox with its own known_hosts, pinned the way a profile pins it."""
    known_hosts = directory / "known_hosts"
    pin_host_key(known_hosts, info.host, info.port, key_line or info.host_key_line)
    return Target(
        host=info.host,
        port=info.port,
        user=user or info.user,
        known_hosts=known_hosts,
        identity_file=key or info.client_key,
        connect_timeout=TIMEOUT,
    )


async def _communicate(
    process: asyncssh.SSHClientProcess[bytes], data: bytes = b""
) -> tuple[bytes, asyncssh.SSHCompletedProcess]:
    """Feed ``data`` then EOF, read stdout to its end, wait for the exit."""
    async with anyio.create_task_group() as tg:
        # Write while reading: a large payload would otherwise fill both directions' windows.
        async def feed() -> None:
            process.stdin.write(data)
            await process.stdin.drain()
            process.stdin.write_eof()

        tg.start_soon(feed)
        out = await process.stdout.read()
    return out, await process.wait()


def _process_gone(pid: int) -> bool:
    """Whether ``pid`` has terminated (a zombie waiting for an init that may never reap it counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(b")") + 2 :][:1] == b"Z"


async def _wait_gone(pid: int) -> None:
    # Polling a real condition with a deadline: the process is not ours to wait on.
    with anyio.fail_after(TIMEOUT):
        while True:
            if _process_gone(pid):
                return
            await anyio.sleep(0.02)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------------------------------- lifecycle


def test_up_status_down(home: Path) -> None:
    assert sandbox.status() is None
    info = sandbox.up()

    assert sandbox.status() == info
    assert info.host == "127.0.0.1"
    assert not _process_gone(info.pid)
    assert sandbox.known_hosts_line(info) == f"[127.0.0.1]:{info.port} {info.host_key_line}"
    assert info.host_key_line.startswith("ssh-ed25519 AAAA")
    assert len(info.host_key_line.split()) == 2
    assert info.uptime >= 0.0
    record = json.loads((sandbox.sandbox_dir() / "sandbox.json").read_text())
    assert record["pid"] == info.pid and record["port"] == info.port
    for name in ("host_key", "client_key", "client_key.pub", "sandbox.json"):
        assert (sandbox.sandbox_dir() / name).stat().st_mode & 0o777 == 0o600, name
    assert info.client_key == sandbox.sandbox_dir() / "client_key"

    assert sandbox.down() is True
    assert _process_gone(info.pid)
    assert _refused(info.port)
    assert sandbox.status() is None
    assert not (sandbox.sandbox_dir() / "sandbox.json").exists()
    assert sandbox.down() is False


def test_listens_on_loopback_only(home: Path) -> None:
    info = sandbox.up()
    listening = Path("/proc/net/tcp")
    if not listening.exists():
        pytest.skip("needs /proc/net/tcp")
    # Local address column of LISTEN sockets (state 0A): 0100007F is 127.0.0.1, 00000000 is any.
    rows = [line.split() for line in listening.read_text().splitlines()[1:]]
    ours = [row[1] for row in rows if row[3] == "0A" and int(row[1].split(":")[1], 16) == info.port]
    assert ours == [f"0100007F:{info.port:04X}"]


def test_up_is_idempotent(home: Path) -> None:
    first = sandbox.up()
    assert sandbox.up() == first
    with pytest.raises(SandboxError, match=f"already runs on port {first.port}"):
        sandbox.up(port=first.port + 1 if first.port < 65535 else first.port - 1)
    assert sandbox.up(port=first.port) == first


def test_stale_record_with_dead_pid_is_replaced(home: Path) -> None:
    info = sandbox.up()
    sandbox.down()
    stale = {**json.loads(json.dumps(dataclasses.asdict(info), default=str)), "pid": _dead_pid()}
    (sandbox.sandbox_dir() / "sandbox.json").write_text(json.dumps(stale))

    assert sandbox.status() is None
    fresh = sandbox.up()
    assert fresh.pid != stale["pid"]
    assert sandbox.status() == fresh
    assert json.loads((sandbox.sandbox_dir() / "sandbox.json").read_text())["pid"] == fresh.pid


def test_record_naming_another_live_process_never_kills_it(home: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        info = sandbox.up()
        sandbox.down()
        record = {**json.loads(json.dumps(dataclasses.asdict(info), default=str)), "pid": bystander.pid}
        (sandbox.sandbox_dir() / "sandbox.json").write_text(json.dumps(record))

        assert sandbox.status() is None
        assert sandbox.down() is False  # the record is stale: nothing of ours was running
        (sandbox.sandbox_dir() / "sandbox.json").write_text(json.dumps(record))
        fresh = sandbox.up()
        assert fresh.pid != bystander.pid
        assert sandbox.down() is True
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_host_key_is_kept_across_restarts(home: Path) -> None:
    first = sandbox.up()
    client_key = first.client_key.read_bytes()
    sandbox.down()
    second = sandbox.up()
    assert second.pid != first.pid
    assert second.host_key_line == first.host_key_line
    assert second.client_key.read_bytes() == client_key


def test_unreadable_host_key_is_reported_not_replaced(home: Path) -> None:
    directory = sandbox.sandbox_dir()
    (directory / "host_key").write_bytes(b"not a key\n")
    with pytest.raises(SandboxError, match="host_key is unreadable"):
        sandbox.up()
    assert (directory / "host_key").read_bytes() == b"not a key\n"
    assert sandbox.status() is None


def test_lost_host_key_is_reported_not_replaced(home: Path) -> None:
    info = sandbox.up()
    sandbox.down()
    directory = sandbox.sandbox_dir()
    (directory / "host_key").unlink()
    with pytest.raises(SandboxError, match="host_key is missing"):
        sandbox.up()
    assert info.host_key_line in (directory / "host_key.pub").read_text()
    assert not (directory / "host_key").exists()


def test_busy_port_is_reported_then_usable_once_free(home: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        with pytest.raises(SandboxError, match=f"cannot listen on 127.0.0.1:{port}"):
            sandbox.up(port=port)
        assert sandbox.status() is None
    finally:
        blocker.close()
    assert sandbox.up(port=port).port == port


@pytest.mark.anyio
async def test_down_kills_running_commands(home: Path, tmp_path: Path) -> None:
    info = sandbox.up()
    async with remote.connect(_target(info, tmp_path)) as host:
        with anyio.fail_after(TIMEOUT):
            _, grandchild = await _start_grandchild(host, "sleep 300 & echo $!; wait")
        assert await anyio.to_thread.run_sync(sandbox.down) is True
        await _wait_gone(grandchild)


# ------------------------------------------------------------------------------------ authentication


@pytest.mark.anyio
async def test_other_client_key_is_rejected(running: SandboxInfo, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    stranger.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    stranger.chmod(0o600)
    with anyio.fail_after(TIMEOUT), pytest.raises(ConnectError):
        async with remote.connect(_target(running, tmp_path, key=stranger)):
            pass


@pytest.mark.anyio
async def test_other_user_is_rejected(running: SandboxInfo, tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT), pytest.raises(ConnectError):
        async with remote.connect(_target(running, tmp_path, user=f"not-{running.user}")):
            pass


@pytest.mark.anyio
async def test_wrong_pinned_host_key_is_refused(running: SandboxInfo, tmp_path: Path) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with anyio.fail_after(TIMEOUT), pytest.raises(HostKeyError):
        async with remote.connect(_target(running, tmp_path, key_line=impostor)):
            pass


# ---------------------------------------------------------------------------------------------- exec


@pytest.mark.anyio
async def test_exec_output_stderr_and_exit_status(running: SandboxInfo, tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host:
            result = await host.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
            env = await host.run(["sh", "-c", "pwd; echo $PATH; echo $HOME; echo $USER"])
            killed = await host.run(["sh", "-c", "kill -KILL $$"], check=False)
    assert (result.stdout, result.stderr, result.exit_status) == ("out\n", "err\n", 3)
    home = str(running.home)
    assert env.stdout == f"{home}\n/usr/local/bin:/usr/bin:/bin\n{home}\n{running.user}\n"
    assert killed.exit_status == -9


@pytest.mark.anyio
async def test_exec_stdin_round_trip_is_binary_safe_and_large(running: SandboxInfo, tmp_path: Path) -> None:
    every_byte = bytes(range(256)) * 64
    big = os.urandom(5 * 1024 * 1024)
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host:
            small, small_done = await _communicate(await host.create_process(["cat"]), every_byte)
            large, large_done = await _communicate(await host.create_process(["cat"]), big)
            generated, _ = await _communicate(
                await host.create_process(["sh", "-c", "head -c 5242880 /dev/zero | tr '\\0' x"])
            )
    assert small == every_byte and small_done.exit_status == 0
    assert large == big and large_done.exit_status == 0
    assert generated == b"x" * 5 * 1024 * 1024


@pytest.mark.anyio
async def test_stdin_eof_reaches_the_child(running: SandboxInfo, tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host:
            proc = await host.create_process(["sh", "-c", "cat; echo done"])
            proc.stdin.write(b"line\n")
            assert await proc.stdout.readline() == b"line\n"
            proc.stdin.write_eof()
            assert await proc.stdout.read() == b"done\n"
            assert (await proc.wait()).exit_status == 0


@pytest.mark.anyio
async def test_signal_request_reaches_the_command(running: SandboxInfo, tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host:
            proc = await host.create_process(["sh", "-c", "echo ready; exec sleep 300"])
            assert await proc.stdout.readline() == b"ready\n"
            proc.send_signal("TERM")
            result = await proc.wait()
    assert result.exit_signal is not None and result.exit_signal[0] == "TERM"


@pytest.mark.anyio
async def test_shell_request_is_refused(running: SandboxInfo, tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host:
            result = await (await host.conn.create_process(encoding=None)).wait()
    assert result.exit_status == 1
    assert isinstance(result.stderr, bytes) and b"runs commands only" in result.stderr


# --------------------------------------------------------------------------------------- no orphans


async def _start_grandchild(host: remote.Remote, script: str) -> tuple[asyncssh.SSHClientProcess[bytes], int]:
    proc = await host.create_process(["sh", "-c", script])
    grandchild = int(await proc.stdout.readline())
    assert not _process_gone(grandchild)
    return proc, grandchild


@pytest.mark.anyio
async def test_closing_the_connection_kills_the_process_group(running: SandboxInfo, tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host:
            _, grandchild = await _start_grandchild(host, "sleep 300 & echo $!; wait")
    await _wait_gone(grandchild)


@pytest.mark.anyio
async def test_closing_the_channel_kills_even_a_sigterm_ignoring_group(
    running: SandboxInfo, tmp_path: Path
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host:
            # Ignored signals are inherited: the sleep survives SIGTERM and needs the SIGKILL fallback.
            proc, grandchild = await _start_grandchild(host, "trap '' TERM; sleep 300 & echo $!; wait")
            proc.close()
            await _wait_gone(grandchild)
            # The connection is still good for more work.
            assert (await host.run(["echo", "alive"])).stdout == "alive\n"


# ---------------------------------------------------------------------------------------------- SFTP


@pytest.mark.anyio
async def test_sftp_put_rename_stat_get(running: SandboxInfo, tmp_path: Path) -> None:
    local = tmp_path / "payload.bin"
    payload = os.urandom(300_000)
    local.write_bytes(payload)
    remote_dir = tmp_path / "remote"
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host, host.sftp() as sftp:
            assert await sftp.realpath(".") == str(running.home)
            await sftp.mkdir(str(remote_dir))
            await sftp.put(str(local), str(remote_dir / "payload.tmp"))
            (remote_dir / "payload.bin").write_bytes(b"old version")
            await sftp.posix_rename(str(remote_dir / "payload.tmp"), str(remote_dir / "payload.bin"))
            await sftp.utime(str(remote_dir / "payload.bin"), (1_700_000_000, 1_700_000_000))
            attrs = await sftp.stat(str(remote_dir / "payload.bin"))
            names = sorted(await sftp.listdir(str(remote_dir)))
            await sftp.get(str(remote_dir / "payload.bin"), str(tmp_path / "back.bin"))
    assert attrs.size == len(payload) and attrs.mtime == 1_700_000_000
    assert names == [".", "..", "payload.bin"]
    assert (remote_dir / "payload.bin").read_bytes() == payload
    assert (tmp_path / "back.bin").read_bytes() == payload


# ------------------------------------------------------------------------------------ OpenSSH client


@pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("sftp") is None, reason="no OpenSSH client")
def test_openssh_client_works_against_the_sandbox(running: SandboxInfo, tmp_path: Path) -> None:
    options = [
        "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={_target(running, tmp_path).known_hosts}",
        "-i", str(running.client_key),
    ]  # fmt: skip
    ssh = subprocess.run(
        ["ssh", *options, "-p", str(running.port), f"{running.user}@127.0.0.1", "printf hi; exit 4"],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (ssh.stdout, ssh.returncode) == (b"hi", 4), ssh.stderr

    (tmp_path / "a").write_bytes(b"data")
    batch = tmp_path / "batch"
    batch.write_text(
        f"put {tmp_path / 'a'} {tmp_path / 'b.tmp'}\nrename {tmp_path / 'b.tmp'} {tmp_path / 'b'}\n"
    )
    sftp = subprocess.run(
        ["sftp", *options, "-P", str(running.port), "-b", str(batch), f"{running.user}@127.0.0.1"],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert sftp.returncode == 0, sftp.stderr
    assert (tmp_path / "b").read_bytes() == b"data"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.anyio
async def test_server_and_each_command_lead_their_own_session(running: SandboxInfo, tmp_path: Path) -> None:
    # The server outlives the terminal that started it; each command's group is killable as a whole.
    assert os.getsid(running.pid) == running.pid
    with anyio.fail_after(TIMEOUT):
        async with remote.connect(_target(running, tmp_path)) as host:
            result = await host.run(["sh", "-c", "echo $$; cat /proc/$$/stat"])
    pid, stat = result.stdout.split("\n", 1)
    _state, _ppid, pgrp, session = stat[stat.rfind(")") + 2 :].split()[:4]
    assert pgrp == session == pid
