"""The ASGI app: the SDK's streamable-HTTP (``/mcp``) or SSE (``/sse`` + ``/messages/``) endpoints,
``/health`` and ``/info``, behind the access log, authentication and request limits.

``build_app`` is what the CLI runner, the Lambda handler, the tests and the benchmarks all serve.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from mcp_sales import __version__
from mcp_sales.http import fastpath
from mcp_sales.http.access_log import AccessLogMiddleware
from mcp_sales.http.auth import Authenticator, AuthMiddleware, Challenge, TokenCheck
from mcp_sales.http.health import DataHealth
from mcp_sales.http.keys import ApiKeys
from mcp_sales.http.limits import BodyLimitMiddleware, SessionLimitMiddleware
from mcp_sales.http.settings import HttpSettings, with_env_keys
from mcp_sales.http.tls import tls_info
from mcp_sales.server import ServerConfig, build_server

MCP_PATH = "/mcp"
SSE_PATH = "/sse"
MESSAGES_PATH = "/messages/"
NO_STORE = {"cache-control": "no-store"}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def transport_security(settings: HttpSettings) -> TransportSecuritySettings:
    """Host/Origin checks against DNS rebinding on a loopback bind; off otherwise (a public server is
    reached by names only its proxy or load balancer knows, and authenticates every request)."""
    if not settings.loopback:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*_LOOPBACK_NAMES, *(f"{name}:*" for name in _LOOPBACK_NAMES)],
        allowed_origins=[f"{scheme}://{name}:*" for scheme in ("http", "https") for name in _LOOPBACK_NAMES]
        + [f"{scheme}://{name}" for scheme in ("http", "https") for name in _LOOPBACK_NAMES],
    )


def _transport_routes(server: MCPServer[Any], settings: HttpSettings) -> list[BaseRoute]:
    security = transport_security(settings)
    if settings.transport == "sse":
        inner = server.sse_app(
            sse_path=SSE_PATH,
            message_path=MESSAGES_PATH,
            max_request_body_size=settings.max_body_bytes,
            transport_security=security,
            host=settings.host,
        )
    else:
        inner = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            json_response=settings.json_responses,
            stateless_http=settings.stateless,
            max_request_body_size=settings.max_body_bytes,
            max_sessions=settings.max_sessions,
            transport_security=security,
            host=settings.host,
        )
    return list(inner.routes)


def _info_route(server: MCPServer[Any], settings: HttpSettings, health: DataHealth) -> Route:
    auth = [
        name
        for name, on in (
            ("api-key", bool(settings.api_keys) or settings.api_key_file),
            ("oauth", settings.oauth),
        )
        if on
    ]

    async def info(request: Request) -> JSONResponse:
        state = await health.current()
        tools = sorted(tool.name for tool in await server.list_tools())
        return JSONResponse(
            {
                "name": "mcp-sales",
                "version": __version__,
                "transport": settings.transport,
                "endpoint": SSE_PATH if settings.transport == "sse" else MCP_PATH,
                "stateless": settings.stateless,
                "json_response": settings.json_responses,
                "protocol_versions": [*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS],
                "data_status": state.status,
                "data_version": state.data_version,
                "data_error": state.error,
                "tools": tools,
                "auth": auth or ["none"],
                "tls": tls_info(settings.ssl_certfile),
                "limits": {"max_body_bytes": settings.max_body_bytes, "max_sessions": settings.max_sessions},
            },
            headers=NO_STORE,
        )

    return Route("/info", info, methods=["GET"])


def _health_route(health: DataHealth) -> Route:
    async def check(request: Request) -> JSONResponse:
        state = await health.current()
        return JSONResponse(state.body(), status_code=200 if state.status == "ok" else 503, headers=NO_STORE)

    return Route("/health", check, methods=["GET"])


def build_app(config: ServerConfig, settings: HttpSettings) -> Starlette:
    """The whole HTTP server for ``config`` (data) and ``settings`` (transport, auth, limits).

    ``MCP_API_KEY`` from the environment is accepted as well as ``settings.api_keys``. Raises
    ``KeyFileError`` for an unreadable or empty key file.
    """
    settings = with_env_keys(settings)
    server = build_server(config)
    health = DataHealth(config)
    routes: list[BaseRoute] = [_health_route(health), _info_route(server, settings, health)]
    token_check: TokenCheck | None = None
    challenge: Challenge | None = None
    if settings.oauth:
        from mcp_sales.http.oauth_link import OAuthLink

        link = OAuthLink(settings, SSE_PATH if settings.transport == "sse" else MCP_PATH)
        token_check, challenge = link.token_check(), link.challenge()
        routes += link.routes()
    routes += _transport_routes(server, settings)
    authenticator = Authenticator(ApiKeys(settings.api_keys, settings.api_key_file), token_check)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if settings.transport == "streamable-http":
                await stack.enter_async_context(server.session_manager.run())
            group = await stack.enter_async_context(anyio.create_task_group())
            health.attach(group)  # the first check (and the first conversion) starts now
            yield
            group.cancel_scope.cancel()

    middleware = [
        Middleware(AccessLogMiddleware),
        Middleware(AuthMiddleware, authenticator=authenticator, challenge=challenge),
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        Middleware(
            SessionLimitMiddleware, max_streams=settings.max_sessions, sse_path=SSE_PATH, mcp_path=MCP_PATH
        ),
    ]
    if settings.transport == "streamable-http":
        fastpath.quiet_sdk_request_logs(settings)
    if fastpath.enabled(settings):
        security = transport_security(settings)
        middleware.append(
            Middleware(fastpath.StatelessFastPath, server=server, security=security, path=MCP_PATH)
        )
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
