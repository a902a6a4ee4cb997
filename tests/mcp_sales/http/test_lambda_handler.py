"""The Lambda handler invoked in-process with API Gateway v2 (function URL) events: the initialize
handshake and server/discover, tools/list, a tool call checked against pandas, 401 without the key,
SSE refused with its reason, and the key read from Secrets Manager (moto)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import boto3
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from moto import mock_aws

from mcp_sales.http import lambda_handler
from mcp_sales.http.lambda_handler import LambdaApp, LambdaConfigError, api_key_from_environment
from mcp_sales.models import TopProductsResult
from mcp_sales.server import ServerConfig
from tests.mcp_sales.http.helpers import expected_top, reference_frame

KEY = "lambda-key-0123456789abcdef"
HOST = "abcdefgh.lambda-url.us-east-1.on.aws"
WAIT = 60
JSON_ACCEPT = "application/json, text/event-stream"


@pytest.fixture(scope="module")
def app(sales_csv: Path, cache_root: Path) -> Iterator[LambdaApp]:
    lambda_app = LambdaApp(ServerConfig(data_path=sales_csv, cache_dir=cache_root), KEY)
    yield lambda_app
    lambda_app.close()


def v2_event(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """What a function URL (API Gateway HTTP API payload 2.0) hands the function."""
    encoded = bool(body) and not body.isascii()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": HOST, **{k.lower(): v for k, v in (headers or {}).items()}},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefgh",
            "domainName": HOST,
            "domainPrefix": "abcdefgh",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "test"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "06/Dec/2026:23:00:00 +0000",
            "timeEpoch": 1796598000000,
        },
        "body": base64.b64encode(body).decode() if encoded else body.decode(),
        "isBase64Encoded": encoded,
    }  # fmt: skip


def invoke(
    app: LambdaApp, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    """One invocation: (status, headers, the JSON body or the text)."""
    raw = json.dumps(body).encode() if body is not None else b""
    if body is not None:
        headers.setdefault("content-type", "application/json")
    reply = app(v2_event(method, path, raw, headers), None)
    text = base64.b64decode(reply["body"]).decode() if reply.get("isBase64Encoded") else reply["body"]
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return reply["statusCode"], {k.lower(): v for k, v in reply.get("headers", {}).items()}, parsed


def rpc(
    app: LambdaApp, method: str, params: dict[str, Any] | None = None, key: str | None = KEY, **headers: str
) -> tuple[int, Any]:
    auth = {"authorization": f"Bearer {key}"} if key else {}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    status, _, reply = invoke(app, "POST", "/mcp", body, accept=JSON_ACCEPT, **auth, **headers)
    return status, reply


class LambdaTransport(httpx2.AsyncBaseTransport):
    """An httpx transport that turns each request into a function URL event for the handler."""

    def __init__(self, app: LambdaApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        event = v2_event(request.method, request.url.path, body, dict(request.headers))
        reply = await anyio.to_thread.run_sync(self.app, event, None)
        content = base64.b64decode(reply["body"]) if reply.get("isBase64Encoded") else reply["body"].encode()
        return httpx2.Response(reply["statusCode"], headers=reply.get("headers", {}), content=content)


def test_initialize_then_tools_list_each_in_its_own_invocation(app: LambdaApp) -> None:
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    status, reply = rpc(app, "initialize", init)
    assert status == 200, reply
    assert reply["result"]["serverInfo"]["name"] and reply["result"]["protocolVersion"] == "2025-11-25"
    status, reply = rpc(app, "tools/list", key=KEY, **{"mcp-protocol-version": "2025-11-25"})
    assert status == 200, reply
    assert "top_n_products" in {tool["name"] for tool in reply["result"]["tools"]}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_sdk_client_gets_answers_matching_pandas_in_both_protocol_eras(
    app: LambdaApp, sales_csv: Path, mode: str
) -> None:
    frame = reference_frame(sales_csv)
    headers = {"Authorization": f"Bearer {KEY}"}
    with anyio.fail_after(WAIT):
        async with (
            httpx2.AsyncClient(transport=LambdaTransport(app), headers=headers) as http,
            Client(streamable_http_client(f"https://{HOST}/mcp", http_client=http), mode=mode) as client,
        ):
            # legacy: the initialize handshake; auto: server/discover at 2026-07-28
            assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
            result = await client.call_tool("top_n_products", {"n": 5, "operation": "Dallas"})
            assert not result.is_error, result.content
            top = TopProductsResult.model_validate(result.structured_content)
            assert [(p.product_id, p.units) for p in top.products] == expected_top(frame, "Dallas", 5)


def test_no_key_or_a_wrong_key_is_401_with_a_json_body(app: LambdaApp) -> None:
    for key in (None, "wrong-key"):
        status, reply = rpc(app, "tools/list", key=key)
        assert status == 401
        assert reply["error"] and reply["error_description"]


def test_sse_is_refused_with_the_reason(app: LambdaApp) -> None:
    for method, path in (("GET", "/mcp"), ("GET", "/sse"), ("POST", "/messages/")):
        status, headers, reply = invoke(
            app, method, path, authorization=f"Bearer {KEY}", accept="text/event-stream"
        )
        assert status == 405 and headers["allow"] == "POST"
        assert reply["error"] == "sse_not_supported"
        assert (
            "Lambda" in reply["error_description"] and "POST JSON-RPC to /mcp" in reply["error_description"]
        )


def test_health_needs_no_key(app: LambdaApp) -> None:
    status, _, reply = invoke(app, "GET", "/health")
    assert status in (200, 503) and reply["status"] in ("ok", "starting")


def test_the_key_comes_from_the_secret_named_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCP_API_KEY", raising=False)
    monkeypatch.delenv("MCP_API_KEY_SECRET_ARN", raising=False)
    with pytest.raises(LambdaConfigError, match="refusing to serve without an API key"):
        api_key_from_environment()
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        arn = secrets.create_secret(Name="mcpctl/sales/api-key", SecretString=KEY)["ARN"]
        monkeypatch.setenv("MCP_API_KEY_SECRET_ARN", arn)
        assert api_key_from_environment() == KEY
        empty = secrets.create_secret(Name="mcpctl/other/api-key", SecretString=" ")["ARN"]
        monkeypatch.setenv("MCP_API_KEY_SECRET_ARN", empty)
        with pytest.raises(LambdaConfigError, match="holds no API key"):
            api_key_from_environment()


def test_the_entry_point_reads_its_configuration_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, sales_csv: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("MCP_API_KEY", KEY)
    monkeypatch.setenv("MCP_SALES_DATA", str(sales_csv))
    monkeypatch.setenv("MCP_SALES_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lambda_handler, "_app", None)
    try:
        reply = lambda_handler.handler(
            v2_event("POST", "/mcp", b"{}", {"authorization": "Bearer nope"}), None
        )
        assert reply["statusCode"] == 401
        assert lambda_handler._app is not None
        config = lambda_handler.config_from_environment()
        assert config.data_path == sales_csv and config.cache_dir == tmp_path
    finally:
        if lambda_handler._app is not None:
            lambda_handler._app.close()


def test_s3_data_is_read_from_its_copy_in_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MCP_SALES_DATA", "s3://sales-bucket/exports/sales.parquet")
    monkeypatch.setenv("MCP_SALES_CACHE_DIR", str(tmp_path))
    config = lambda_handler.config_from_environment()
    assert config.data_url == "s3://sales-bucket/exports/sales.parquet"
    assert config.data_path.is_relative_to(tmp_path) and config.data_path.name == "sales.parquet"
