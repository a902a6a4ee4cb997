"""The proxy across server changes, run in process against a real sshd and a stand-in server.

See ``helpers`` for the stand-in server and how a test finds its processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provision.connect import jsonrpc
from provision.connect.proxy import Proxy
from tests.provision.connect.helpers import (
    fast,
    in_process,
    initialize_params,
    new_marker,
    new_server,
    received_by,
    standin_command,
)


@pytest.mark.anyio
async def test_handshake_is_replayed_to_a_new_server_and_the_client_sees_one_answer(
    sshd: Any, standin: Path, tmp_path: Path
) -> None:
    marker, received = new_marker(), tmp_path / "received.log"
    proxy = Proxy("replay", sshd.target(), standin_command(standin, marker, log=received), settings=fast())
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        client = running.client
        client.send({"id": 1, "method": "initialize", "params": initialize_params()})
        assert (await client.response(1))["result"]["serverInfo"]["name"] == "stand-in"
        client.send({"method": "notifications/initialized"})
        client.send({"id": 2, "method": "logging/setLevel", "params": {"level": "debug"}})
        await client.response(2)
        client.send({"id": 3, "method": "echo"})
        first = (await client.response(3))["result"]["pid"]

        sshd.kill_session_processes()
        second = await new_server(marker, old=first)
        client.send({"id": 4, "method": "echo"})
        assert (await client.response(4))["result"]["pid"] == second  # not "not initialized"

        seen = received_by(received, second)
        assert [m.get("method") for m in seen] == [
            "initialize",
            "notifications/initialized",
            "logging/setLevel",
            "echo",
        ]
        assert seen[0]["params"] == initialize_params()
        assert str(seen[0]["id"]).startswith("mcpctl-proxy-")
        assert received_by(received, first)[0]["method"] == "initialize"
        running.close_stdin()
        assert await running.exit_code() == 0
    # One answer per client request, none to the proxy's own.
    assert [m["id"] for m in client.seen] == [1, 2, 3, 4]


@pytest.mark.anyio
async def test_in_flight_requests_get_an_error_and_server_requests_pass_both_ways(
    sshd: Any, standin: Path, tmp_path: Path
) -> None:
    marker, received = new_marker(), tmp_path / "received.log"
    proxy = Proxy("inflight", sshd.target(), standin_command(standin, marker, log=received), settings=fast())
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        client = running.client
        await client.handshake()
        # A server-to-client request and its answer, through the proxy both ways, ids untouched.
        client.send({"id": 2, "method": "ask"})
        asked = await client.recv()
        assert asked == {"jsonrpc": "2.0", "id": "s-2", "method": "roots/list"}
        client.send({"id": "s-2", "result": {"roots": []}})
        assert (await client.response(2))["result"] == {"answer": {"roots": []}}

        client.send({"id": 3, "method": "ask"})  # left unanswered when the link drops
        assert (await client.recv())["id"] == "s-3"
        client.send({"id": 4, "method": "hold"})
        holding = await client.recv()
        assert holding["method"] == "test/holding"
        first = await new_server(marker)

        sshd.kill_session_processes()
        told = [await client.recv() for _ in range(3)]
        errors = {m["id"]: m["error"] for m in told if "error" in m}
        assert set(errors) == {3, 4}
        assert errors[4]["code"] == jsonrpc.LINK_DROPPED and "retry" in errors[4]["message"]
        cancelled = [m for m in told if m.get("method") == "notifications/cancelled"]
        assert [m["params"]["requestId"] for m in cancelled] == ["s-3"]

        second = await new_server(marker, old=first)
        client.send({"id": "s-3", "result": {"roots": []}})  # late: its server is gone
        client.send({"id": 5, "method": "echo"})
        assert (await client.response(5))["result"]["pid"] == second
        assert all(m.get("id") != "s-3" for m in received_by(received, second))
    assert "2 request(s) in flight answered with an error" in (tmp_path / "proxy.log").read_text()


@pytest.mark.anyio
async def test_a_server_that_cannot_start_fails_requests_fast_instead_of_hanging(
    sshd: Any, tmp_path: Path
) -> None:
    proxy = Proxy(
        "broken", sshd.target(), ["/nonexistent/.venv/bin/python", "-m", "mcp_sales"], settings=fast()
    )
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        running.client.send({"id": 1, "method": "initialize", "params": initialize_params()})
        answer = await running.client.response(1)
        assert answer["error"]["code"] == jsonrpc.GAVE_UP
        assert "exit status 127" in answer["error"]["message"]
        assert "mcpctl doctor broken" in answer["error"]["message"]
        assert await running.exit_code() == 5  # RemoteError
    assert "gave up on the server of 'broken'" in (tmp_path / "proxy.log").read_text()


# ---------------------------------------------------------------------------- the entry point, as a process
