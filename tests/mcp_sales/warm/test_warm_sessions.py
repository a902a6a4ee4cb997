"""Sessions forked by one real warm server, started through the real launch command.

One warm server (``mcp-sales warm``) serves the whole module; each test starts the launch command
(``python -I -S mcp_sales/warm/attach.py``) as an MCP client would and checks what the session does:
it is served by a process forked from the warm server, ends with its status, relays signals, takes
its process with it when killed, keeps stdout for JSON-RPC during a Prophet fit, and two sessions
with different data do not see each other's. The socket is private to its user; an idle server exits.
"""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_sales.warm import attach
from tests.mcp_sales.conftest import AWKWARD_OVERRIDES
from tests.mcp_sales.warm.helpers import (
    WAIT,
    Session,
    alive,
    daemon_pid,
    last_session,
    launch_argv,
    served,
    start_daemon,
    stop_daemon,
    until,
    wait_ready,
    warm_env,
)
from tests.sshd import ensure_noisy_user

SYSTEM_PYTHON = "/usr/bin/python3"  # the test venv's interpreter may sit where another user cannot go
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_PEERCRED and /proc: Linux")


@pytest.fixture(scope="module")
def warm_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The directory of the module's warm server, running and ready."""
    directory = tmp_path_factory.mktemp("warm") / "run"
    process = start_daemon(directory, "--idle-timeout", "600")
    try:
        wait_ready(directory)
        yield directory
    finally:
        process.terminate()
        process.wait(timeout=30)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def children_of(daemon: int, name: str) -> list[int]:
    """Running children of ``daemon`` whose kernel name is ``name``."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            try:
                if parent_of(int(entry)) == daemon and comm(int(entry)) == name:
                    children.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return children


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def session_pid(directory: Path) -> int:
    """The pid of the one process the warm server serves a session with now (not the standby:
    the next session's process, forked ahead of time, keeps the warm server's name until used)."""
    children = children_of(daemon_pid(directory), "mcp-sales")
    assert len(children) == 1, children
    return children[0]


def open_session(directory: Path, data: Path, tmp_path: Path, *extra: str) -> Session:
    argv = launch_argv("--data", str(data), "--cache-dir", str(tmp_path / "cache"), *extra)
    return Session(argv, warm_env(directory), tmp_path)


def test_a_session_is_forked_by_the_warm_server_and_ends_with_its_status(
    warm_dir: Path, sample_csv: Path, tmp_path: Path
) -> None:
    before = served(warm_dir)
    session = open_session(warm_dir, sample_csv, tmp_path)
    result = session.initialize()
    assert result["serverInfo"]["name"]
    pid = session_pid(warm_dir)
    assert pid != session.process.pid
    until("the launch command's record", lambda: f"warm pid {pid} " in last_session(warm_dir))
    assert served(warm_dir) == before + 1
    tools = {tool["name"] for tool in session.request("tools/list")["result"]["tools"]}
    assert {"top_n_products", "forecast_sales"} <= tools
    assert session.close() == 0  # stdin EOF: the server's own clean exit, passed on
    until("the session process to exit", lambda: not alive(pid))
    session.assert_all_json_rpc()


def test_a_usage_error_reaches_the_client_with_the_servers_status(warm_dir: Path, tmp_path: Path) -> None:
    session = Session(launch_argv("--no-such-option"), warm_env(warm_dir), tmp_path)
    assert session.close() == 2
    assert b"unrecognized arguments: --no-such-option" in session.stderr
    assert session.raw == b""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_launch_command_ends_the_session(
    warm_dir: Path, sample_csv: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    session = open_session(warm_dir, sample_csv, tmp_path)
    session.initialize()
    pid = session_pid(warm_dir)
    session.process.send_signal(signum)
    assert session.process.wait(timeout=WAIT) == 0  # the server exits 0 on SIGTERM and SIGHUP
    until("the session process to exit", lambda: not alive(pid))


def test_a_killed_launch_command_leaves_no_process_behind(
    warm_dir: Path, sample_csv: Path, tmp_path: Path
) -> None:
    session = open_session(warm_dir, sample_csv, tmp_path)
    session.initialize()
    pid = session_pid(warm_dir)
    session.process.kill()  # stdin stays open: only the warm server can notice
    session.process.wait(timeout=WAIT)
    until("the orphaned session process to be stopped", lambda: not alive(pid))
    # Reaped too (its threads end a moment after it): the server counts no running session.
    until("the session to be reaped", lambda: " sessions 0 " in (attach.ask("status", str(warm_dir)) or ""))


@pytest.mark.slow
def test_two_sessions_with_different_data_are_independent_and_stdout_stays_json_rpc_during_a_fit(
    warm_dir: Path, sample_csv: Path, awkward_csv: Path, tmp_path: Path
) -> None:
    dallas = open_session(warm_dir, sample_csv, tmp_path)
    columns = [arg for pair in AWKWARD_OVERRIDES.items() for arg in ("--column", "=".join(pair))]
    reims = open_session(warm_dir, awkward_csv, tmp_path, *columns)
    dallas.initialize()
    reims.initialize()
    # A forecast (a Prophet fit) in one session while the other answers its own questions.
    dallas.send(
        {
            "jsonrpc": "2.0",
            "id": 99,
            "method": "tools/call",
            "params": {"name": "forecast_sales", "arguments": {"operation": "Dallas", "horizon_months": 3}},
        }
    )
    top = reims.call("top_n_products", {"n": 3, "operation": "Reims"})
    assert top["structuredContent"]["operation"] == "Reims"
    reims_operations = str(reims.call("list_operations", {}))
    forecast = dallas.receive(99)["result"]
    assert not forecast.get("isError"), forecast
    assert forecast["structuredContent"]["operation"] == "Dallas"
    dallas_operations = str(dallas.call("list_operations", {}))
    assert "Reims" in reims_operations and "Reims" not in dallas_operations
    assert "Dallas" in dallas_operations and "Dallas" not in reims_operations
    assert dallas.close() == 0 and reims.close() == 0
    dallas.assert_all_json_rpc()
    reims.assert_all_json_rpc()


def test_the_socket_is_private_and_refuses_another_user(warm_dir: Path, tmp_path: Path) -> None:
    assert stat.S_IMODE(warm_dir.stat().st_mode) == 0o700
    socket_path = warm_dir / attach.SOCKET_NAME
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    other = ensure_noisy_user()
    if other is None or not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"a second user needs root to create, and {SYSTEM_PYTHON} to run as")
    account = pwd.getpwnam(other)
    # Open the doors the file system keeps shut (a hard link to the socket in a directory others can
    # enter, the socket's mode), so that only the server's own uid check is left.
    door = Path(tempfile.mkdtemp(prefix="warm-door-", dir="/tmp"))  # reachable by others
    os.chmod(door, 0o711)
    os.link(socket_path, door / "sock")
    os.chmod(socket_path, 0o666)
    probe = (
        "import _socket, sys\n"
        "s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)\n"
        "s.settimeout(30)\n"
        "s.connect(sys.argv[1])\n"
        "body = b'mcp-sales-warm/1\\0status'\n"
        "try:\n"
        "    s.sendall(str(len(body)).encode() + b'\\n' + body)\n"
        "    answer = s.recv(100)\n"
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    answer = b''\n"
        "print('answer:', answer)\n"
    )
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-S", "-c", probe, str(door / "sock")],
            capture_output=True,
            text=True,
            timeout=WAIT,
            cwd="/",
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
        )
    finally:
        os.chmod(socket_path, 0o600)
        (door / "sock").unlink()
        door.rmdir()
    assert done.stdout.strip() == "answer: b''", done.stderr
    assert f"refused a connection from uid {account.pw_uid}" in (warm_dir / "daemon.log").read_text()
    assert (attach.ask("status", str(warm_dir)) or "").startswith("ready")  # and it serves its own user


def test_the_next_sessions_process_waits_forked_ahead_and_goes_with_the_warm_server(
    tmp_path: Path, sample_csv: Path
) -> None:
    directory = tmp_path / "standby"
    process = start_daemon(directory, "--idle-timeout", "600", "--no-prophet")
    try:
        wait_ready(directory)
        until("a standby process", lambda: len(children_of(process.pid, "mcp-sales-warm")) == 1)
        standby = children_of(process.pid, "mcp-sales-warm")[0]
        session = open_session(directory, sample_csv, tmp_path)
        session.initialize()
        assert session_pid(directory) == standby  # the session got the process forked ahead of time
        until("the next standby", lambda: len(children_of(process.pid, "mcp-sales-warm")) == 1)
        following = children_of(process.pid, "mcp-sales-warm")[0]
        assert session.close() == 0
        process.terminate()
        assert process.wait(timeout=WAIT) == 0
        until("the standby to go with the warm server", lambda: not alive(following))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_idle_warm_server_exits(tmp_path: Path) -> None:
    directory = tmp_path / "idle"
    process = start_daemon(directory, "--idle-timeout", "0.5", "--no-prophet")
    try:
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (directory / "daemon.log").read_text()
    assert "ready" in log and "idle; exiting" in log
    assert not (directory / attach.SOCKET_NAME).exists()


def test_a_second_warm_server_for_the_same_directory_leaves_at_once(warm_dir: Path) -> None:
    second = start_daemon(warm_dir, "--no-prophet")
    assert second.wait(timeout=WAIT) == 0
    assert "another warm server runs" in (warm_dir / "daemon.log").read_text()
    assert (attach.ask("status", str(warm_dir)) or "").startswith("ready")


def test_stop_lets_running_sessions_finish(tmp_path: Path, sample_csv: Path) -> None:
    directory = tmp_path / "stop"
    process = start_daemon(directory, "--no-prophet")
    try:
        wait_ready(directory)
        session = open_session(directory, sample_csv, tmp_path)
        session.initialize()
        assert attach.ask("stop", str(directory)) == "stopping"
        assert not (directory / attach.SOCKET_NAME).exists()
        assert session.request("tools/list")["result"]["tools"]  # still served
        assert session.close() == 0
        assert process.wait(timeout=WAIT) == 0
    finally:
        stop_daemon(directory)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_warm_server_killed_under_a_session_leaves_the_session_running_to_its_end(
    tmp_path: Path, sample_csv: Path
) -> None:
    directory = tmp_path / "dies"
    process = start_daemon(directory, "--no-prophet")
    try:
        wait_ready(directory)
        session = open_session(directory, sample_csv, tmp_path)
        session.initialize()
        pid = session_pid(directory)
        process.kill()
        process.wait(timeout=WAIT)
        assert session.request("tools/list")["result"]["tools"]  # the session itself goes on
        assert session.process.poll() is None  # and so does its stand-in, for sshd and the proxy
        assert session.close() == 70  # its exit status went with the warm server
        until("the session process to exit", lambda: not alive(pid))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
