"""Stateless streamable HTTP (JSON responses, any request on its own) and legacy SSE, each a real server
process reached by the SDK's client: answers match pandas; the SSE stream and its message endpoint
refuse requests without a key; open SSE streams are capped and the server goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from mcp_sales.models import TopProductsResult
from tests.mcp_sales.http.helpers import HttpServer, expected_top, http_client, mcp_session, reference_frame

KEY = "transport-key-0123456789abcdef"
WAIT = 60


@pytest.fixture(scope="module")
def stateless(sales_csv: Path, cache_root: Path) -> Iterator[HttpServer]:
    server = HttpServer.start(
        [
            "--transport",
            "streamable-http",
            "--stateless",
            "--data",
            str(sales_csv),
            "--cache-dir",
            str(cache_root),
        ],
        env={"MCP_API_KEY": KEY},
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sse(sales_csv: Path, cache_root: Path) -> Iterator[HttpServer]:
    server = HttpServer.start(
        [
            "--transport",
            "sse",
            "--max-sessions",
            "1",
            "--data",
            str(sales_csv),
            "--cache-dir",
            str(cache_root),
        ],
        env={"MCP_API_KEY": KEY},
    )
    yield server
    server.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stateless_answers_match_pandas(stateless: HttpServer, sales_csv: Path, mode: str) -> None:
    frame = reference_frame(sales_csv)
    with anyio.fail_after(WAIT):
        async with mcp_session(stateless.url, KEY, mode=mode) as client:
            assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
            result = await client.call_tool("top_n_products", {"n": 4, "operation": "Houston"})
    assert not result.is_error, result.content
    top = TopProductsResult.model_validate(result.structured_content)
    assert [(p.product_id, p.units) for p in top.products] == expected_top(frame, "Houston", 4)


@pytest.mark.anyio
async def test_stateless_answers_in_json_without_a_session(stateless: HttpServer) -> None:
    request = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "top_n_products", "arguments": {"n": 1, "operation": "Dallas"}},
    }
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    async with http_client(KEY) as http:
        response = await http.post(f"{stateless.url}/mcp", json=request, headers=headers)
        info = (await http.get(f"{stateless.url}/info")).json()
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "mcp-session-id" not in response.headers
    assert response.json()["id"] == 7 and not response.json()["result"]["isError"]
    assert info["stateless"] is True and info["json_response"] is True


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sse_answers_match_pandas(sse: HttpServer, sales_csv: Path, mode: str) -> None:
    frame = reference_frame(sales_csv)
    with anyio.fail_after(WAIT):
        async with mcp_session(sse.url, KEY, transport="sse", mode=mode) as client:
            assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
            result = await client.call_tool("top_n_products", {"n": 3, "operation": "Dallas"})
    assert not result.is_error, result.content
    top = TopProductsResult.model_validate(result.structured_content)
    assert [(p.product_id, p.units) for p in top.products] == expected_top(frame, "Dallas", 3)


@pytest.mark.anyio
async def test_sse_stream_and_message_endpoint_refuse_requests_without_a_key(sse: HttpServer) -> None:
    async with http_client() as http:
        stream = await http.get(f"{sse.url}/sse", headers={"Accept": "text/event-stream"})
        message = await http.post(
            f"{sse.url}/messages/?session_id=0123456789abcdef0123456789abcdef",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
        wrong = await http.get(f"{sse.url}/sse", headers={"X-API-Key": "wrong"})
        health = await http.get(f"{sse.url}/health")
    for refused in (stream, message, wrong):
        assert refused.status_code == 401
        assert refused.json()["error_description"]
    assert health.status_code == 200


@pytest.mark.anyio
async def test_sse_streams_beyond_the_limit_get_503_and_the_open_one_goes_on(sse: HttpServer) -> None:
    with anyio.fail_after(WAIT):
        async with mcp_session(sse.url, KEY, transport="sse") as client:  # the one stream allowed
            async with http_client(KEY) as http:
                refused = await http.get(f"{sse.url}/sse")
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
            assert refused.json()["error"] == "too_many_sessions"
            result = await client.call_tool("top_n_products", {"n": 1, "operation": "Dallas"})
            assert not result.is_error
    assert httpx2.get(f"{sse.url}/health", timeout=30).status_code == 200
