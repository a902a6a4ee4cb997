"""The server as an AWS Lambda function: Mangum over :func:`mcp_sales.http.app.build_app`.

Lambda answers each request with one buffered response, so the app runs as *stateless* streamable
HTTP with *JSON* responses: every POST to ``/mcp`` stands alone and gets its whole answer at once.
SSE (``GET /mcp``, ``/sse``, ``/messages/``) is refused with a 405 that says why, instead of a stream
that would never arrive.

Configuration comes from the function's environment (set by ``mcpctl deploy lambda``):

- ``MCP_API_KEY_SECRET_ARN``: the Secrets Manager secret holding the API key, read once per cold
  start (``MCP_API_KEY`` may hold the key itself instead, e.g. in a local test);
- ``MCP_SALES_DATA``: the data (``s3://bucket/key`` or a path), ``MCP_SALES_CACHE_DIR``: where its
  prepared copy goes (``/tmp``, Lambda's only writable directory); ``MCP_SALES_ARGS``: further
  ``mcp-sales serve`` data options (``--column ...``), as shell words.

The app's lifespan (the SDK's session manager, the background data check) starts once per execution
environment and stays up across invocations on one event loop: Mangum's own lifespan handling would
start and stop it around every request, and the session manager cannot be started twice.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from typing import TYPE_CHECKING, Any

from mcp_sales.http.responses import send_json_error

if TYPE_CHECKING:
    from mangum import Mangum
    from starlette.types import ASGIApp, Receive, Scope, Send

    from mcp_sales.server import ServerConfig

API_KEY_ENV = "MCP_API_KEY"
API_KEY_SECRET_ENV = "MCP_API_KEY_SECRET_ARN"
CACHE_DIR_ENV = "MCP_SALES_CACHE_DIR"
DATA_ENV = "MCP_SALES_DATA"
EXTRA_ARGS_ENV = "MCP_SALES_ARGS"
STREAM_PATHS = ("/sse", "/messages")
NO_SSE = (
    "SSE is not available on AWS Lambda: a Lambda response is sent only when the invocation ends, so "
    "an event stream would never arrive and nothing is kept between requests for a session; POST "
    "JSON-RPC to /mcp (stateless streamable HTTP with JSON responses), or deploy on ECS Fargate for SSE"
)


class LambdaConfigError(RuntimeError):
    """The function's environment does not say where the API key is (nothing would be protected)."""


class RefuseStreams:
    """ASGI middleware: every SSE entry point answers 405 with the reason, before anything else runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope.get("path", ""), scope.get("method", "")
            if path.startswith(STREAM_PATHS) or (path.rstrip("/") == "/mcp" and method == "GET"):
                await send_json_error(send, 405, "sse_not_supported", NO_SSE, {"allow": "POST"})
                return
        await self.app(scope, receive, send)


def api_key_from_environment(fetch_secret: Any = None) -> str:
    """The API key: ``MCP_API_KEY``, else the value of the secret ``MCP_API_KEY_SECRET_ARN`` names.

    Raises:
        LambdaConfigError: neither is set, or the secret is empty.
    """
    direct = os.environ.get(API_KEY_ENV, "").strip()
    if direct:
        return direct
    arn = os.environ.get(API_KEY_SECRET_ENV, "").strip()
    if not arn:
        raise LambdaConfigError(
            f"neither {API_KEY_SECRET_ENV} nor {API_KEY_ENV} is set: refusing to serve without an API key "
            "(deploy with `mcpctl deploy lambda`, which sets the secret's ARN)"
        )
    if fetch_secret is None:
        import boto3

        fetch_secret = boto3.client("secretsmanager").get_secret_value
    key = str(fetch_secret(SecretId=arn).get("SecretString", "")).strip()
    if not key:
        raise LambdaConfigError(f"the secret {arn} holds no API key: re-run `mcpctl deploy lambda`")
    return key


def config_from_environment() -> ServerConfig:
    """The data options, read the way ``mcp-sales serve`` reads them: ``--data`` from ``MCP_SALES_DATA``
    (a path or ``s3://bucket/key``), ``--cache-dir`` from ``MCP_SALES_CACHE_DIR``."""
    from mcp_sales.__main__ import parse_args, server_config

    argv = ["serve", *shlex.split(os.environ.get(EXTRA_ARGS_ENV, ""))]
    data = os.environ.get(DATA_ENV, "").strip()
    if data and "--data" not in argv:  # as an option: that is where an s3:// URL is understood
        argv += ["--data", data]
    cache = os.environ.get(CACHE_DIR_ENV, "").strip()
    if cache and "--cache-dir" not in argv:
        argv += ["--cache-dir", cache]
    return server_config(parse_args(argv))


class LambdaApp:
    """The app, its lifespan kept up on one event loop, and Mangum translating Lambda events."""

    def __init__(self, config: ServerConfig, api_key: str) -> None:
        from mangum import Mangum
        from mangum.protocols.lifespan import LifespanCycle

        from mcp_sales.http.app import build_app
        from mcp_sales.http.settings import HttpSettings

        settings = HttpSettings(
            transport="streamable-http",
            host="0.0.0.0",  # not a bind address here: says "not loopback", so no Host/Origin pinning
            stateless=True,
            json_response=True,
            api_keys=(api_key,),
        )
        app = RefuseStreams(build_app(config, settings))
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.lifespan = LifespanCycle(app, "on")
        self.lifespan.__enter__()  # stays up for the life of the execution environment
        self.mangum: Mangum = Mangum(app, lifespan="off")

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)  # Mangum runs the request on the current thread's loop
        return self.mangum(event, context)

    def close(self) -> None:
        """Stop the lifespan and the loop (tests; Lambda simply freezes the environment)."""
        asyncio.set_event_loop(self.loop)
        self.lifespan.__exit__(None, None, None)
        self.loop.close()


_app: LambdaApp | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The function's entry point (``mcp_sales.http.lambda_handler.handler``)."""
    global _app
    if _app is None:
        _app = LambdaApp(config_from_environment(), api_key_from_environment())
    return _app(event, context)
