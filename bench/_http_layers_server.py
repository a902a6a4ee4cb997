"""Servers that peel mcp-sales over streamable HTTP into layers (benchmark only, never shipped), so that
``bench http`` can say where a tool call's server time goes. Each answers ``POST /mcp`` under uvicorn
with the h11 protocol and uvloop and logs as plain INFO lines on stderr, as ``mcp-sales serve`` runs:

- ``http``: Starlette answering every POST with a canned ``tools/call`` result (the HTTP floor: uvicorn,
  h11, Starlette routing and JSON parsing, nothing of MCP);
- ``sdk``: the SDK's stateless streamable-HTTP app (JSON answers) with one async tool that returns a
  constant (the MCP floor: the SDK's per-request session, dispatch and validation);
- ``tools``: the same SDK app serving mcp-sales's own tools (``build_server``), without the HTTP
  server's middleware (access log, authentication, limits, ``/health``).

``python -m bench._http_layers_server LAYER --port P --data CSV --cache-dir DIR``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

LAYERS = ("http", "sdk", "tools")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # mcp-sales serve's
_CANNED = {"content": [{"type": "text", "text": "ok"}], "structuredContent": {"ok": True}, "isError": False}


def _http_floor() -> Starlette:
    async def mcp(request: Request) -> Response:
        message = json.loads(await request.body())
        if "id" not in message:
            return Response(status_code=202)
        result: dict[str, Any] = _CANNED
        if message.get("method") == "initialize":
            result = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {},
                      "serverInfo": {"name": "floor", "version": "0"}}  # fmt: skip
        return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": result})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/mcp", mcp, methods=["POST"]), Route("/health", health)])


def _sdk_app(server: MCPServer[Any]) -> Starlette:
    app = server.streamable_http_app(stateless_http=True, json_response=True)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app.router.routes.append(Route("/health", health))
    return app


def build(layer: str, data: Path, cache_dir: Path) -> Starlette:
    if layer == "http":
        return _http_floor()
    if layer == "sdk":
        server: MCPServer[Any] = MCPServer("floor")

        @server.tool()
        async def top_n_products(n: int, operation: str) -> dict[str, Any]:
            """A constant, whatever is asked."""
            return {"ok": True}

        return _sdk_app(server)
    from mcp_sales.server import ServerConfig, build_server

    return _sdk_app(build_server(ServerConfig(data_path=data, cache_dir=cache_dir)))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._http_layers_server")
    parser.add_argument("layer", choices=LAYERS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args()
    # Before the SDK sets up its own (rich) handler, which costs far more per line than a plain one.
    logging.basicConfig(stream=sys.stderr, level="INFO", format=LOG_FORMAT)
    app = build(args.layer, args.data, args.cache_dir)
    uvicorn.run(app, host="127.0.0.1", port=args.port, http="h11", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
