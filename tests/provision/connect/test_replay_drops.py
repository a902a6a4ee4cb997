"""Links killed under requests in flight: what cannot change anything is sent again, the rest fails.

Run in process against the real sshd fixture, with the stand-in server and with the real ``mcp_sales``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provision.connect import jsonrpc
from provision.connect.proxy import Proxy
from provision.connect.replay import MAX_REPLAYS
from provision.layout import RemoteLayout
from tests.provision.connect.helpers import (
    REPO,
    SAMPLE,
    RawClient,
    fast,
    in_process,
    new_marker,
    received_by,
    standin_command,
)


async def _holding(client: RawClient, request_id: Any) -> int:
    """Wait until the stand-in says it holds ``request_id``; return the pid of that server."""
    while True:
        message = await client.recv()
        if message.get("method") == "test/holding" and message["params"]["id"] == request_id:
            return int(message["params"]["pid"])


@pytest.mark.anyio
async def test_a_safe_tool_call_is_sent_again_under_its_id_until_the_bound_and_others_fail(
    sshd: Any, standin: Path, tmp_path: Path
) -> None:
    marker, received = new_marker(), tmp_path / "received.log"
    proxy = Proxy("resend", sshd.target(), standin_command(standin, marker, log=received), settings=fast())
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        client = running.client
        await client.handshake()
        client.send({"id": 2, "method": "tools/list"})
        assert len((await client.response(2))["result"]["tools"]) == 2
        call = {"arguments": {}, "_meta": {"progressToken": "t"}}
        client.send({"id": "safe", "method": "tools/call", "params": {"name": "safe_hold", **call}})
        client.send({"id": 4, "method": "tools/call", "params": {"name": "write_hold", **call}})
        client.send({"id": 5, "method": "tools/call", "params": {"name": "unlisted_hold", **call}})
        server = await _holding(client, "safe")
        await _holding(client, 4)
        await _holding(client, 5)

        sshd.kill_session_processes()
        errors = [await client.recv(), await client.recv()]
        assert sorted(m["id"] for m in errors) == [4, 5]
        assert all(m["error"]["code"] == jsonrpc.LINK_DROPPED for m in errors)
        servers = [server]
        for _ in range(MAX_REPLAYS):
            servers.append(await _holding(client, "safe"))  # the next server holds it: sent again
            seen = received_by(received, servers[-1])
            methods = [m.get("method") for m in seen]
            assert methods == ["initialize", "notifications/initialized", "tools/call"]
            assert seen[2] == {
                "jsonrpc": "2.0",
                "id": "safe",
                "method": "tools/call",
                "params": {"name": "safe_hold", **call},
            }
            sshd.kill_session_processes()
        # One drop more than the bound: the request is answered with the error after all.
        dropped = await client.response("safe")
        assert dropped["error"]["code"] == jsonrpc.LINK_DROPPED
        assert len(set(servers)) == MAX_REPLAYS + 1
        client.send({"id": 6, "method": "ping"})
        assert (await client.response(6))["result"]["echo"] == "ping"
    log = (tmp_path / "proxy.log").read_text()
    assert "2 request(s) in flight answered with an error, 1 sent again to the next server" in log
    assert "1 request(s) in flight answered with an error, 0 sent again to the next server" in log


def _progress(client: RawClient, token: int) -> list[float]:
    return [
        m["params"]["progress"]
        for m in client.seen
        if m.get("method") == "notifications/progress" and m["params"]["progressToken"] == token
    ]


async def _first_progress(client: RawClient, token: int) -> None:
    """Wait until the server reports progress on ``token``: it is in the middle of the forecast."""
    while not _progress(client, token):
        await client.recv()


@pytest.mark.slow  # fits Prophet three times over
@pytest.mark.anyio
async def test_a_link_killed_in_the_middle_of_a_forecast_still_gives_the_client_its_forecast(
    sshd: Any, tmp_path: Path
) -> None:
    cache = tmp_path / new_marker()  # fresh: no fit is cached, so each forecast takes a while
    # A cold server, not the warm launch: its first forecast imports Prophet, so the fit reliably
    # outlasts the first progress notification (one a second), which is when the link is killed.
    layout = RemoteLayout.of(str(REPO))
    command = [
        str(layout.python),
        "-m",
        "mcp_sales",
        *layout.server_args([SAMPLE], {}, ["--cache-dir", str(cache)]),
    ]
    proxy = Proxy("forecast", sshd.target(), command, settings=fast())
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        client = running.client
        await client.handshake()
        client.send({"id": 2, "method": "tools/call", "params": {"name": "list_operations", "arguments": {}}})
        city = (await client.response(2))["result"]["structuredContent"]["operations"][0]["name"]
        forecast = {"name": "forecast_sales", "arguments": {"operation": city, "horizon_months": 3}}

        # Before any tools/list the proxy has not seen the tool's annotations: the call is not sent again.
        client.send({"id": 3, "method": "tools/call", "params": {**forecast, "_meta": {"progressToken": 1}}})
        await _first_progress(client, 1)
        sshd.kill_session_processes()
        assert (await client.response(3))["error"]["code"] == jsonrpc.LINK_DROPPED

        client.send({"id": 4, "method": "tools/list"})
        tools = {tool["name"]: tool for tool in (await client.response(4))["result"]["tools"]}
        assert tools["forecast_sales"]["annotations"]["readOnlyHint"] is True
        assert tools["forecast_sales"]["annotations"]["idempotentHint"] is True
        client.send({"id": 5, "method": "tools/call", "params": {**forecast, "_meta": {"progressToken": 2}}})
        await _first_progress(client, 2)
        sshd.kill_session_processes()
        answer = await client.response(5)
        assert answer["result"]["isError"] is False
        result = answer["result"]["structuredContent"]
        assert result["operation"] == city and result["horizon_months"] == 3 and not result["cached"]
        assert [point for point in result["points"] if point.get("actual") is None]
        progress = _progress(client, 2)
        assert progress == sorted(set(progress))  # it never went back, though a new server started over
    log = (tmp_path / "proxy.log").read_text()
    assert "1 request(s) in flight answered with an error, 0 sent again to the next server" in log
    assert "0 request(s) in flight answered with an error, 1 sent again to the next server" in log
