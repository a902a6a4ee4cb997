"""``mcpctl connect`` and the sandbox: it starts a stopped one (Claude runs it on demand) and follows a
restarted one to its new port."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from provision.profiles import Profile, known_hosts_path, load_profile, log_dir, save_profile
from provision.ssh import sandbox
from provision.ssh.hostkeys import pin_host_key
from provision.ssh.sandbox import SandboxInfo
from tests.provision.connect.helpers import SAMPLE, marked_pids, mcpctl_connect, new_marker, poll

REPO = Path(__file__).resolve().parents[3]
BOUND = 90.0  # an upper bound on the whole session, never an expectation


@pytest.mark.anyio
async def test_connect_restarts_a_stopped_sandbox_on_its_pinned_port(mcpctl_home: Path) -> None:
    info = sandbox.up()
    # The sandbox runs commands as this user on this machine: the checkout's own .venv is the install.
    save_profile(
        Profile(
            name="box",
            kind="sandbox",
            host=info.host,
            port=info.port,
            user=info.user,
            identity_file=info.client_key,
            remote_dir=str(REPO),
            data=[REPO / "data" / "sample_sales_data.csv"],
        )
    )
    pin_host_key(known_hosts_path("box"), info.host, info.port, info.host_key_line)
    assert sandbox.down()
    assert sandbox.status() is None

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "provision.connect", "box"],
        env={"MCPCTL_HOME": str(mcpctl_home)},
    )
    try:
        with anyio.fail_after(BOUND):
            async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
                result = await client.call_tool("list_operations", {})
                assert not result.is_error
                assert len(result.structured_content["operations"]) == 20
        running = sandbox.status()
        assert running is not None and running.port == info.port
    finally:
        sandbox.down()


def _sandbox_profile(info: SandboxInfo, name: str, marker: str) -> None:
    """A sandbox profile running this checkout's server (the sandbox is this machine), its key pinned."""
    save_profile(
        Profile(
            name=name,
            kind="sandbox",
            host=info.host,
            port=info.port,
            user=info.user,
            identity_file=info.client_key,
            remote_dir=str(REPO),
            data=[SAMPLE],
            server_args=["--cache-dir", marker],
            connect_timeout=5.0,  # an attempt that reaches the port's squatter gives up this soon
        )
    )
    pin_host_key(known_hosts_path(name), info.host, info.port, info.host_key_line)


@contextlib.contextmanager
def _squatted(port: int | None) -> Iterator[None]:
    """Listen on 127.0.0.1:``port`` (None: nothing) as another program would, so the sandbox cannot."""
    if port is None:
        yield
        return
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the old port may be in TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        yield


@pytest.mark.anyio
@pytest.mark.parametrize("port_taken", [False, True], ids=["same-port", "port-taken"])
async def test_a_live_session_carries_on_when_the_sandbox_comes_back(
    mcpctl_home: Path, tmp_path: Path, port_taken: bool
) -> None:
    info = sandbox.up()
    marker = str(tmp_path / new_marker())
    _sandbox_profile(info, "box", marker)
    command = mcpctl_connect("box")
    params = StdioServerParameters(
        command=command[0], args=command[1:], env={"MCPCTL_HOME": str(mcpctl_home)}
    )
    log = log_dir() / "box.log"
    try:
        with anyio.fail_after(BOUND * 3):
            async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
                before = {tool.name for tool in (await client.list_tools()).tools}
                assert "top_n_products" in before

                await anyio.to_thread.run_sync(sandbox.down)
                await poll(
                    lambda: "link #1 lost" in log.read_text(), "the proxy to notice the sandbox is gone"
                )
                with _squatted(info.port if port_taken else None):
                    back = await anyio.to_thread.run_sync(sandbox.up)
                assert (back.port != info.port) is port_taken

                after = {tool.name for tool in (await client.list_tools()).tools}
                assert after == before
                listed = await client.call_tool("list_operations", {})
                assert not listed.is_error
        text = log.read_text()
        assert "replaying the client's initialize" in text
        assert (f"'box' moved from 127.0.0.1:{info.port} to 127.0.0.1:{back.port}" in text) is port_taken
        assert load_profile("box").port == back.port
        known = [line for line in known_hosts_path("box").read_text().splitlines() if line.strip()]
        assert known == [f"[127.0.0.1]:{back.port} {info.host_key_line}"]
    finally:
        sandbox.down()
    await poll(lambda: not marked_pids(marker), "the server to exit")


@pytest.mark.anyio
async def test_connect_starts_a_stopped_sandbox_elsewhere_when_its_port_is_taken(
    mcpctl_home: Path, tmp_path: Path
) -> None:
    info = sandbox.up()
    _sandbox_profile(info, "box", str(tmp_path / new_marker()))
    sandbox.down()
    command = mcpctl_connect("box")
    params = StdioServerParameters(
        command=command[0], args=command[1:], env={"MCPCTL_HOME": str(mcpctl_home)}
    )
    try:
        with _squatted(info.port), anyio.fail_after(BOUND * 2):
            async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
                assert "top_n_products" in {tool.name for tool in (await client.list_tools()).tools}
        running = sandbox.status()
        assert running is not None and running.port != info.port
        assert load_profile("box").port == running.port
    finally:
        sandbox.down()
