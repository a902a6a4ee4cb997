"""A real stateful streamable-HTTP server (one per module) reached by the SDK's client in both protocol
eras, its answers checked against pandas; API keys in both headers, from the environment and a key file
that rotates; /health and /info; the access log."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from mcp_sales.models import ForecastResult, TopProductsResult
from tests.mcp_sales.http.helpers import (
    HttpServer,
    expected_monthly,
    expected_top,
    http_client,
    mcp_session,
    reference_frame,
)

ENV_KEY = "env-key-0123456789abcdef"
FILE_KEY = "file-key-0123456789abcdef"
WAIT = 60
FIT_WAIT = 300
MAX_SESSIONS = 3  # every test closes its sessions; this one fills them up


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api_keys"
    path.write_text(f"# keys of the sales team\n\n{FILE_KEY}\n")
    return path


@pytest.fixture(scope="module")
def server(sales_csv: Path, cache_root: Path, key_file: Path) -> Iterator[HttpServer]:
    started = HttpServer.start(
        [
            "--transport",
            "streamable-http",
            "--data",
            str(sales_csv),
            "--cache-dir",
            str(cache_root),
            "--api-key-file",
            str(key_file),
            "--max-body-bytes",
            "4096",
            "--request-timeout",
            "2",
            "--max-sessions",
            str(MAX_SESSIONS),
            # four first fits at once on a busy 2-core host can outlast the default 45 s
            "--forecast-deadline",
            str(FIT_WAIT),
        ],
        env={"MCP_API_KEY": ENV_KEY},
    )
    yield started
    started.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_top_products_match_pandas_in_both_protocol_eras(
    server: HttpServer, sales_csv: Path, mode: str
) -> None:
    frame = reference_frame(sales_csv)
    with anyio.fail_after(WAIT):
        async with mcp_session(server.url, ENV_KEY, mode=mode) as client:
            # legacy: the initialize handshake; auto: server/discover at 2026-07-28
            assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
            for operation in ("Dallas", "Atlanta"):
                result = await client.call_tool("top_n_products", {"n": 5, "operation": operation})
                assert not result.is_error, result.content
                top = TopProductsResult.model_validate(result.structured_content)
                assert [(p.product_id, p.units) for p in top.products] == expected_top(frame, operation, 5)


@pytest.mark.anyio
async def test_no_key_or_a_wrong_key_gets_401_with_a_json_body(server: HttpServer) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with http_client() as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"X-API-Key": "wrong"},
            {"Authorization": "Basic x"},
        ):
            response = await http.post(f"{server.url}/mcp", json=initialize, headers=headers)
            assert response.status_code == 401, headers
            body = response.json()
            assert body["error"] in ("invalid_request", "invalid_token") and body["error_description"]
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert (await http.get(f"{server.url}/info")).status_code == 401


@pytest.mark.anyio
@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
@pytest.mark.parametrize("key", [ENV_KEY, FILE_KEY])
async def test_a_right_key_in_either_header_is_accepted(server: HttpServer, header: str, key: str) -> None:
    async with http_client(key, header) as http:
        info = await http.get(f"{server.url}/info")
    assert info.status_code == 200, info.text
    assert {"top_n_products", "forecast_sales"} <= set(info.json()["tools"])


@pytest.mark.anyio
async def test_health_needs_no_key_and_info_describes_the_server(server: HttpServer) -> None:
    async with http_client() as http:
        health = await http.get(f"{server.url}/health")
    assert health.status_code == 200
    assert set(health.json()) == {"status", "data_version"} and health.json()["status"] == "ok"
    async with http_client(ENV_KEY) as http:
        info = (await http.get(f"{server.url}/info")).json()
    assert info["transport"] == "streamable-http" and info["stateless"] is False
    assert info["data_version"] == health.json()["data_version"]
    assert "2026-07-28" in info["protocol_versions"] and "2025-06-18" in info["protocol_versions"]
    assert info["tls"] is None and info["auth"] == ["api-key"]


def test_keys_rotate_through_the_key_file_without_a_restart(server: HttpServer, key_file: Path) -> None:
    def status(key: str) -> int:
        return httpx2.get(f"{server.url}/info", headers={"X-API-Key": key}, timeout=30).status_code

    rotated = "rotated-key-0123456789abcdef"
    before = key_file.read_text()
    try:
        replacement = key_file.with_name("api_keys.new")
        replacement.write_text(f"{rotated}\n")
        os.replace(replacement, key_file)  # how a deployment swaps the file: atomically
        assert status(rotated) == 200
        assert status(FILE_KEY) == 401
        assert status(ENV_KEY) == 200  # the environment's key does not come from the file
    finally:
        key_file.write_text(before)
    assert status(FILE_KEY) == 200


@pytest.mark.anyio
async def test_access_log_names_the_key_id_never_the_key(server: HttpServer) -> None:
    async with http_client(ENV_KEY) as http:
        assert (await http.get(f"{server.url}/info?probe=1")).status_code == 200
    line = server.wait_for_line(r"mcp_sales.access: GET /info 200 .*key:[0-9a-f]{8}")
    assert "probe" not in line
    assert ENV_KEY not in server.log() and FILE_KEY not in server.log()


@pytest.mark.anyio
async def test_an_oversized_body_gets_413_and_the_server_goes_on(server: HttpServer) -> None:
    async with http_client(ENV_KEY) as http:
        big = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"pad": "x" * 10_000}}
        response = await http.post(
            f"{server.url}/mcp", json=big, headers={"Accept": "application/json, text/event-stream"}
        )
        assert response.status_code == 413
        assert response.json()["error"] == "request_too_large"
        assert (await http.get(f"{server.url}/health")).status_code == 200


@pytest.mark.parametrize(
    "sent",
    [
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",  # half the headers
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"  # half the body
        b"X-API-Key: " + ENV_KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{",
        b"",  # nothing at all
    ],
    ids=["headers", "body", "nothing"],
)
def test_a_client_that_stalls_is_cut_and_the_server_goes_on(server: HttpServer, sent: bytes) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as stalled:
        stalled.sendall(sent)
        answer = b""
        while chunk := stalled.recv(4096):  # bounded by the socket timeout; b"" once the server closes
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request_timeout" in answer
    response = httpx2.get(f"{server.url}/health", timeout=30)
    assert response.status_code == 200


@pytest.mark.anyio
@pytest.mark.slow
async def test_forecasts_match_pandas_and_health_answers_while_four_fit(
    server: HttpServer, sales_csv: Path
) -> None:
    frame = reference_frame(sales_csv)
    operations = ("Denver", "Austin", "Columbus", "Charlotte")
    fitting = anyio.Event()
    finished: list[str] = []
    results: dict[str, ForecastResult] = {}

    async def progress(done: float, total: float | None, message: str | None) -> None:
        fitting.set()  # a fit is running: the server reports progress while it fits

    async with mcp_session(server.url, ENV_KEY) as client:

        async def fit(operation: str) -> None:
            result = await client.call_tool(
                "forecast_sales", {"operation": operation, "horizon_months": 3}, progress_callback=progress
            )
            assert not result.is_error, result.content
            results[operation] = ForecastResult.model_validate(result.structured_content)
            finished.append(operation)

        with anyio.fail_after(FIT_WAIT + WAIT):
            async with anyio.create_task_group() as group:
                for operation in operations:
                    group.start_soon(fit, operation)
                await fitting.wait()
                async with http_client() as http:
                    health = await http.get(f"{server.url}/health")
                top = await client.call_tool("top_n_products", {"n": 2, "operation": "Dallas"})
                in_flight = len(operations) - len(finished)
    assert health.status_code == 200 and not top.is_error
    assert in_flight > 0  # both answered while fits were still running
    for operation, forecast in results.items():
        history = {f"{p.period:%Y-%m}": p.actual for p in forecast.points if p.actual is not None}
        assert history == pytest.approx(expected_monthly(frame, operation))
        future = [p for p in forecast.points if p.actual is None]
        assert len(future) == 3 and forecast.cached is False
        assert all(
            p.lower is not None and p.upper is not None and p.lower <= p.forecast <= p.upper for p in future
        )


@pytest.mark.anyio
async def test_sessions_beyond_the_limit_get_503_and_open_ones_go_on(server: HttpServer) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    sessions: list[str] = []
    async with http_client(ENV_KEY) as http:
        try:
            for _ in range(MAX_SESSIONS):
                opened = await http.post(f"{server.url}/mcp", json=initialize, headers=accept)
                assert opened.status_code == 200, opened.text
                sessions.append(opened.headers["mcp-session-id"])
            refused = await http.post(f"{server.url}/mcp", json=initialize, headers=accept)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
            assert "Too many open sessions" in refused.json()["error"]["message"]
            headers = {**accept, "mcp-session-id": sessions[0], "mcp-protocol-version": "2025-11-25"}
            listed = await http.post(
                f"{server.url}/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers
            )
            assert listed.status_code == 200 and "top_n_products" in listed.text
        finally:
            for session in sessions:
                await http.delete(
                    f"{server.url}/mcp",
                    headers={"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"},
                )
        assert (await http.post(f"{server.url}/mcp", json=initialize, headers=accept)).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Host": "attacker.example:80"}, 421), ({"Origin": "http://attacker.example"}, 403)],
    ids=["host", "origin"],
)
async def test_dns_rebinding_is_refused_on_loopback(
    server: HttpServer, headers: dict[str, str], status: int
) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with http_client(ENV_KEY) as http:
        response = await http.post(
            f"{server.url}/mcp",
            json=request,
            headers={"Accept": "application/json, text/event-stream", **headers},
        )
    assert response.status_code == status
