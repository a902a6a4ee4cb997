"""The stateless fast path answers exactly as the SDK's transport does.

Two real ``--stateless`` servers on the same data, one with the fast path and one without
(``MCP_SALES_HTTP_FAST_PATH=0``), get the same raw POSTs; status, Content-Type and the parsed JSON
body must match (less the tools' own timing in ``_meta``). The servers log at DEBUG, where the SDK
writes one line per request it builds a transport for: that shows which path answered.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from mcp_sales.http.app import build_app
from mcp_sales.http.fastpath import SDK_TRANSPORT_LOGGER
from mcp_sales.http.settings import HttpSettings
from mcp_sales.server import ELAPSED_META, ServerConfig
from tests.mcp_sales.http.helpers import HttpServer, http_client

KEY = "fast-path-key-0123456789abcdef"
WAIT = 60
SDK_TRANSPORT_LINE = r"Stateless mode: Creating new transport"
ACCESS_LINE = r"POST /mcp \d+ "
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def _start(sales_csv: Path, cache_root: Path, fast: bool) -> HttpServer:
    args = ["--transport", "streamable-http", "--stateless", "--data", str(sales_csv)]
    args += ["--cache-dir", str(cache_root), "--log-level", "DEBUG"]
    return HttpServer.start(args, env={"MCP_API_KEY": KEY, "MCP_SALES_HTTP_FAST_PATH": "1" if fast else "0"})


@pytest.fixture(scope="module")
def servers(sales_csv: Path, cache_root: Path) -> Iterator[tuple[HttpServer, HttpServer]]:
    fast = _start(sales_csv, cache_root, fast=True)
    try:
        sdk = _start(sales_csv, cache_root, fast=False)
    except BaseException:
        fast.stop()
        raise
    yield fast, sdk
    fast.stop()
    sdk.stop()


def _call(name: str, arguments: Any = None, request_id: Any = 1, meta: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _without_timing(value: Any) -> Any:
    """``value`` less the tools' elapsed-time stamp, the one field two runs of a call differ in."""
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k != ELAPSED_META}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


async def _post(
    client: httpx2.AsyncClient, server: HttpServer, body: Any, headers: dict[str, str]
) -> tuple[int, str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(f"{server.url}/mcp", content=raw, headers=headers)
    json_body = response.content and response.headers.get("content-type", "").startswith("application/json")
    parsed = _without_timing(response.json()) if json_body else response.text
    return response.status_code, response.headers.get("content-type", ""), parsed


async def _both(servers: tuple[HttpServer, HttpServer], body: Any, **headers: str) -> tuple[int, Any]:
    """POST ``body`` to both servers; assert the answers match; the fast path's (status, body)."""
    sent = {**HEADERS, **headers}
    with anyio.fail_after(WAIT):
        async with http_client(KEY) as client:
            fast = await _post(client, servers[0], body, sent)
            sdk = await _post(client, servers[1], body, sent)
    assert fast == sdk, f"fast path {fast}\nSDK path  {sdk}"
    return fast[0], fast[2]


TOP = {"n": 5, "operation": "Dallas"}
# (what, request body): every one answered by the fast path in the handshake era.
FAST_REQUESTS: list[tuple[str, Any]] = [
    ("tools/list", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ("ping", {"jsonrpc": "2.0", "id": "p-1", "method": "ping"}),
    ("a cached call", _call("top_n_products", TOP)),
    ("a string id", _call("top_n_products", TOP, request_id="call-7")),
    ("an argument of the wrong type", _call("top_n_products", {"n": "many"})),
    ("a missing argument", _call("top_n_products", {"n": 5})),
    ("an unknown argument", _call("top_n_products", {**TOP, "colour": "red"})),
    ("an out-of-range argument", _call("top_n_products", {"n": -1})),
    ("a tool error", _call("top_n_products", {**TOP, "start_date": "yesterday"})),
    ("an unknown tool", _call("no_such_tool", {})),
    ("a call without a name", {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {}}),
    ("arguments that are not an object", _call("top_n_products", [1, 2])),
]


@pytest.mark.anyio
@pytest.mark.parametrize("version", [LEGACY, None], ids=["2025-11-25", "no-version-header"])
async def test_fast_answers_match_the_sdk(
    servers: tuple[HttpServer, HttpServer], version: str | None
) -> None:
    headers = {"MCP-Protocol-Version": version} if version else {}
    answers = {what: await _both(servers, body, **headers) for what, body in FAST_REQUESTS}
    status, top = answers["a cached call"]
    assert status == 200 and not top["result"]["isError"], top
    assert len(top["result"]["structuredContent"]["products"]) == 5
    assert answers["a string id"][1]["id"] == "call-7"
    assert answers["ping"][1] == {"jsonrpc": "2.0", "id": "p-1", "result": {}}
    assert "top_n_products" in {tool["name"] for tool in answers["tools/list"][1]["result"]["tools"]}
    assert answers["a call without a name"][1]["error"]["code"] == -32602
    for what in ("an unknown tool", "a tool error", "an argument of the wrong type"):
        status, body = answers[what]
        assert status == 200 and ("error" in body or body["result"]["isError"]), (what, body)


# Requests the fast path hands to the SDK: (what, body, extra headers).
SDK_REQUESTS: list[tuple[str, Any, dict[str, str]]] = [
    ("a progress token", _call("top_n_products", TOP, meta={"progressToken": "t-1"}), {}),
    (
        "initialize",
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        {},
    ),
    ("a notification", {"jsonrpc": "2.0", "method": "notifications/initialized"}, {}),
    ("a batch", [_call("top_n_products", TOP), {"jsonrpc": "2.0", "id": 2, "method": "ping"}], {}),
    ("another method", {"jsonrpc": "2.0", "id": 4, "method": "resources/list"}, {}),
    ("not JSON", b"{not json", {}),
    ("not JSON-RPC", {"id": 1, "method": "ping"}, {}),
    ("a wrong content type", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Content-Type": "text/plain"}),
    ("no JSON in Accept", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Accept": "text/event-stream"}),
    ("a foreign Host", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Host": "evil.example"}),
    ("an unknown protocol version", _call("top_n_products", TOP), {"MCP-Protocol-Version": "1999-01-01"}),
    (
        "the 2026-07-28 era",
        _call(
            "top_n_products",
            TOP,
            meta={PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}},
        ),
        {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "top_n_products"},
    ),
]


@pytest.mark.anyio
async def test_other_requests_reach_the_sdk_with_the_same_answers(
    servers: tuple[HttpServer, HttpServer],
) -> None:
    answers = {what: await _both(servers, body, **headers) for what, body, headers in SDK_REQUESTS}
    status, modern = answers["the 2026-07-28 era"]
    assert status == 200 and len(modern["result"]["structuredContent"]["products"]) == 5, modern
    assert answers["a progress token"][0] == 200
    assert answers["a progress token"][1]["result"]["structuredContent"]["products"]
    assert answers["initialize"][1]["result"]["protocolVersion"] == LEGACY
    assert answers["a notification"][0] == 202
    assert answers["not JSON"][0] == 400
    assert answers["a foreign Host"][0] == 421


@pytest.mark.anyio
async def test_only_the_sdk_path_builds_a_transport_per_request(
    servers: tuple[HttpServer, HttpServer],
) -> None:
    """Three calls and one initialize: the SDK builds a transport for all four without the fast path,
    for the initialize alone with it."""
    fast, sdk = servers
    before = {id(s): (len(_lines(s, SDK_TRANSPORT_LINE)), len(_lines(s, ACCESS_LINE))) for s in servers}
    for _ in range(3):
        await _both(servers, _call("top_n_products", TOP))
    await _both(servers, SDK_REQUESTS[1][1])
    for server, expected in ((fast, 1), (sdk, 4)):
        transports, accesses = before[id(server)]
        server.wait_for_count(ACCESS_LINE, accesses + 4)
        assert len(_lines(server, SDK_TRANSPORT_LINE)) - transports == expected, server.log()[-3000:]


@pytest.mark.parametrize(("level", "expected"), [("INFO", logging.WARNING), ("DEBUG", logging.NOTSET)])
def test_the_sdk_per_request_line_is_dropped_unless_debugging(
    sales_csv: Path, level: str, expected: int
) -> None:
    sdk_logger = logging.getLogger(SDK_TRANSPORT_LOGGER)
    saved = sdk_logger.level
    sdk_logger.setLevel(logging.NOTSET)
    try:
        build_app(ServerConfig(data_path=sales_csv), HttpSettings(stateless=True, log_level=level))
        assert sdk_logger.level == expected
    finally:
        sdk_logger.setLevel(saved)


def _lines(server: HttpServer, pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [line for line in list(server.lines) if regex.search(line)]
