"""``mcpctl connect`` brings a stopped sandbox back by itself (Claude runs it on demand)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from provision.profiles import Profile, known_hosts_path, save_profile
from provision.ssh import sandbox
from provision.ssh.hostkeys import pin_host_key

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
        args=["-m", "provision.connect.proxy", "box"],
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
