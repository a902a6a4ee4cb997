"""``mcpctl connect NAME`` as an MCP client runs it: a separate process, real sshd, real servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from provision.connect import jsonrpc
from provision.connect.main import loop_runner
from provision.connect.settings import GIVE_UP_ENV
from provision.profiles import log_dir
from tests.provision.connect.helpers import (
    BOUND,
    MODERN_META,
    checkout_profile,
    initialize_params,
    marked_pids,
    mcpctl_connect,
    new_marker,
    new_server,
    poll,
    raw_client,
    standin_command,
    subprocess_proxy,
)


@pytest.mark.anyio
async def test_claude_style_session_survives_dropped_links_and_a_dead_server(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    marker = str(tmp_path / new_marker())  # a unique --cache-dir: finds the server in /proc
    checkout_profile(sshd, "e2e", server_args=["--cache-dir", marker])
    command = mcpctl_connect("e2e")
    params = StdioServerParameters(
        command=command[0], args=command[1:], env={"MCPCTL_HOME": str(mcpctl_home)}
    )
    with anyio.fail_after(BOUND * 3):
        async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
            assert client.protocol_version == "2025-11-25"  # the handshake era, as Claude Desktop speaks
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"top_n_products", "list_operations"} <= tools
            operations = await client.call_tool("list_operations", {})
            assert not operations.is_error
            city = operations.structured_content["operations"][0]["name"]
            top = await client.call_tool("top_n_products", {"n": 3, "operation": city})
            assert not top.is_error and len(top.structured_content["products"]) == 3

            first = await new_server(marker)
            assert sshd.kill_session_processes() > 0  # every SSH session dies, the listener stays
            second = await new_server(marker, old=first)
            again = await client.call_tool("top_n_products", {"n": 2, "operation": city})
            assert not again.is_error and len(again.structured_content["products"]) == 2

            os.kill(second, signal.SIGKILL)  # the server dies, the SSH connection lives
            await new_server(marker, old=second)
            listed = await client.call_tool("list_operations", {})
            assert not listed.is_error and listed.structured_content == operations.structured_content
    # The client closed the proxy's stdin: the proxy closed the server's, and the server is gone.
    await poll(lambda: not marked_pids(marker), "the server to exit")
    text = (log_dir() / "e2e.log").read_text()
    assert text.count("replaying the client's initialize") == 2
    assert "link #3: server started" in text


@pytest.mark.anyio
async def test_modern_client_passes_through_survives_a_drop_and_sigterm_ends_it(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    marker = str(tmp_path / new_marker())
    checkout_profile(sshd, "modern", server_args=["--cache-dir", marker])
    argv = [sys.executable, "-m", "provision.connect", "modern"]
    async with subprocess_proxy(argv, tmp_path / "stderr") as process:
        client = raw_client(process)
        client.send({"id": 1, "method": "server/discover", "params": {"_meta": MODERN_META}})
        discovered = await client.response(1)
        assert "2026-07-28" in discovered["result"]["supportedVersions"]
        call = {"name": "list_operations", "arguments": {}, "_meta": MODERN_META}
        client.send({"id": 2, "method": "tools/call", "params": call})
        before = await client.response(2)
        assert before["result"]["isError"] is False

        first = await new_server(marker)
        sshd.kill_session_processes()
        await new_server(marker, old=first)
        client.send({"id": 3, "method": "tools/call", "params": call})
        after = await client.response(3)
        assert after["result"]["structuredContent"] == before["result"]["structuredContent"]

        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(BOUND):
            assert await process.wait() == 0
    await poll(lambda: not marked_pids(marker), "the server to exit")
    text = (log_dir() / "modern.log").read_text()
    assert "received SIGTERM" in text
    assert "replaying" not in text  # the 2026-07-28 revision has no session to replay


# --------------------------------------------------------------------------- stand-in server, in process


@pytest.mark.anyio
async def test_stdin_eof_exits_0_and_a_server_ignoring_eof_is_terminated(
    sshd: Any, standin: Path, mcpctl_home: Path, tmp_path: Path
) -> None:
    checkout_profile(sshd, "linger")
    marker = new_marker()
    # connect_main with a command of our choosing: the stand-in, which ignores stdin EOF.
    code = (
        "import sys, provision.connect.main as m; sys.exit(m.connect_main(sys.argv[1], command=sys.argv[2:]))"
    )
    argv = [sys.executable, "-c", code, "linger", *standin_command(standin, marker, flags=["--linger"])]
    async with subprocess_proxy(argv, tmp_path / "stderr") as process:
        client = raw_client(process)
        await client.handshake()
        client.send({"id": 2, "method": "echo"})
        assert "result" in await client.response(2)
        assert process.stdin is not None
        process.stdin.close()
        with anyio.fail_after(BOUND):
            assert await process.wait() == 0
    await poll(lambda: not marked_pids(marker), "the lingering server to be terminated")
    text = (log_dir() / "linger.log").read_text()
    assert "sending SIGTERM" in text
    assert "sending SIGTERM" in (tmp_path / "stderr").read_text()  # also on stderr, for the client's log


@pytest.mark.anyio
async def test_gives_up_on_a_host_that_refuses_and_answers_waiting_requests(
    sshd: Any, mcpctl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    checkout_profile(sshd, "refused", port=closed_port)
    monkeypatch.setenv(GIVE_UP_ENV, "1.5")
    async with subprocess_proxy(
        [sys.executable, "-m", "provision.connect", "refused"], tmp_path / "stderr"
    ) as process:
        client = raw_client(process)
        client.send({"id": 1, "method": "initialize", "params": initialize_params()})
        answer = await client.response(1)
        assert answer["error"]["code"] == jsonrpc.GAVE_UP
        assert "connection refused" in answer["error"]["message"]
        with anyio.fail_after(BOUND):
            assert await process.wait() == 3  # ConnectError
    assert "gave up on the server of 'refused' after" in (log_dir() / "refused.log").read_text()


@pytest.mark.anyio
async def test_a_missing_profile_is_one_line_on_stderr_and_exit_2(mcpctl_home: Path, tmp_path: Path) -> None:
    async with subprocess_proxy(
        [sys.executable, "-m", "provision.connect", "nosuch"], tmp_path / "stderr"
    ) as process:
        assert process.stdout is not None
        with anyio.fail_after(BOUND):
            assert await process.wait() == 2
            assert await process.stdout.read() == b""
    assert "no profile named 'nosuch'" in (tmp_path / "stderr").read_text()


# -------------------------------------------------------------------------------- a restarted sandbox


# Runs an entry point and writes the names of the modules loaded by its end to a file (its first argument).
_IMPORTED_AT_EXIT = """
import atexit, runpy, sys

path = sys.argv.pop(1)

def _record():
    with open(path, "w") as out:
        out.write("\\n".join(sorted(sys.modules)))

atexit.register(_record)
if sys.argv[1] == "cli":  # what the client's entry runs: `mcpctl connect NAME`
    from provision.cli import app
    sys.argv[1:2] = []
    app(prog_name="mcpctl")
else:
    sys.argv[1:2] = []
    runpy.run_module("provision.connect", run_name="__main__", alter_sys=True)
"""


def _aws_modules(names: list[str]) -> list[str]:
    """The AWS SDK and mcpctl's EC2 code: a second or so at every start, for nothing on other hosts."""
    return [
        name
        for name in names
        if name.split(".")[0] in ("boto3", "botocore")
        or name == "provision.ec2"
        or name.startswith("provision.ec2.")
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("entry", [["module", "plain"], ["cli", "connect", "plain"]], ids=["module", "cli"])
async def test_connecting_a_host_that_is_not_ec2_loads_no_aws_code(
    sshd: Any, mcpctl_home: Path, tmp_path: Path, entry: list[str]
) -> None:
    checkout_profile(sshd, "plain")
    modules = tmp_path / "modules.txt"
    argv = [sys.executable, "-c", _IMPORTED_AT_EXIT, str(modules), *entry]
    async with subprocess_proxy(argv, tmp_path / "stderr") as process:
        client = raw_client(process)
        await client.handshake()  # the whole path ran: profile, log, host, SSH, server, relay
        client.send({"id": 2, "method": "tools/list"})
        assert "result" in await client.response(2)
        assert process.stdin is not None
        process.stdin.close()
        with anyio.fail_after(BOUND):
            assert await process.wait() == 0
    names = modules.read_text().split()
    assert "provision.connect.proxy" in names  # the recorder saw the proxy run
    assert _aws_modules(names) == []


def test_the_module_entry_point_wants_exactly_one_profile_name() -> None:
    for args in ([], ["a", "b"], ["--help"]):
        done = subprocess.run(
            [sys.executable, "-m", "provision.connect", *args], capture_output=True, text=True, timeout=BOUND
        )
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.strip() == "usage: python -m provision.connect NAME"


# ---------------------------------------------------------------------------------- start-up and loop


def test_the_loop_is_uvloop_where_installed_and_asyncio_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert loop_runner("asyncio") is asyncio.run
    if sys.platform != "win32":
        import uvloop

        assert loop_runner("uvloop") is uvloop.run
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed: import fails
    assert loop_runner("uvloop") is asyncio.run


def test_the_relay_imports_without_running_the_compiler_to_find_libraries(tmp_path: Path) -> None:
    # Each compiler or linker run by ctypes.util.find_library is a new process: count them by audit hook.
    code = (
        "import sys\n"
        "runs = []\n"
        "sys.addaudithook(lambda event, args: runs.append(str(args[1])) "
        "if event == 'subprocess.Popen' else None)\n"
        "import ctypes.util\n"
        "before = ctypes.util.find_library\n"
        "from provision.connect import main\n"
        "proxy = main._import_relay()\n"
        "assert 'asyncssh' in sys.modules and proxy.__name__ == 'Proxy'\n"
        "assert ctypes.util.find_library is before\n"
        "print(repr(runs))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND)
    assert done.returncode == 0, done.stderr
    runs = done.stdout.strip()
    assert "gcc" not in runs and "'cc'" not in runs
    if sys.platform.startswith("linux") and shutil.which("gcc") is not None:
        assert "ldconfig" in runs or runs == "[]"  # the loader's cache is still asked
