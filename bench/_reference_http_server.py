"""The reference design's HTTP server pattern (benchmark baseline, never shipped).

What the deployment guides run: the MCP SDK's server over SSE (or streamable HTTP) under uvicorn, one
process, an API key checked on every request, and the reference server's tool body, which re-reads the
CSV with pandas on every call and ranks with a groupby. The tool keeps the reference's name and
arguments. Nothing is made slower on purpose: the key check is constant-time, uvicorn logs only
warnings, and the SDK runs the synchronous tool in a worker thread as it does for any plain function.

Run as a module from the project root (a script run would put ``bench/`` first on ``sys.path``):
``python -m bench._reference_http_server --data DATA.csv --port 8123 [--transport sse|streamable-http]``
with the key in ``MCP_API_KEY``.
"""

from __future__ import annotations

import argparse
import hmac
import os
from typing import Any

import pandas as pd
import uvicorn
from mcp.server import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send


def build_server(data: str) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("reference-sales-http")

    def load() -> pd.DataFrame:
        frame = pd.read_csv(data)
        frame["ds"] = pd.to_datetime(
            {"year": frame["CALENDAR_YEAR"], "month": frame["CALENDAR_MONTH"], "day": 1}
        )
        return frame

    @server.tool()
    def top_n_products(n: int, operation: str) -> list[dict[str, Any]]:
        """Top n products of an operation by units sold."""
        frame = load()
        rows = frame[frame["OPERATION_NAME"] == operation]
        top = rows.groupby(["PRODUCT_ID", "PRODUCT_NAME"])["UNITS_SOLD"].sum().nlargest(n).reset_index()
        return list(top.to_dict(orient="records"))

    return server


class ApiKeyCheck:
    """The guides' key check: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, else 401."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
            if not hmac.compare_digest(given, self.key):
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
                return
        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._reference_http_server")
    parser.add_argument("--data", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=["sse", "streamable-http"], default="sse")
    args = parser.parse_args()
    server = build_server(args.data)
    if args.transport == "sse":
        app = server.sse_app(host=args.host)
    else:
        app = server.streamable_http_app(host=args.host, stateless_http=True, json_response=True)
    key = os.environ.get("MCP_API_KEY", "")
    if not key:
        raise SystemExit("set MCP_API_KEY: the reference pattern always checks a key")
    uvicorn.run(ApiKeyCheck(app, key), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
