"""A shorter road for the commonest stateless requests: one ``tools/call``, ``tools/list`` or ``ping``.

In ``--stateless`` mode the SDK builds a whole transport, server session and dispatcher (streams, a
task group, three tasks) for every POST to ``/mcp``, to answer one request and throw them away. For
a single handshake-era JSON-RPC request of those three methods this middleware runs the SDK's own
request kernel (``serve_one``: the same validation, server middleware, handlers and result shaping)
and writes the reply as the SDK's JSON-response transport writes it: same body, status and headers.

It only answers when every check the SDK would make passes (Host/Origin, Content-Type, Accept, the
protocol-version header, a JSON body that validates as one JSON-RPC request without a progress
token); anything else (initialize, server/discover, notifications, batches, 2026-07-28 requests,
GET/DELETE, a request the SDK would refuse) goes to the SDK untouched, its body replayed, so every
refusal keeps the SDK's wording. Authentication and the body limit run before this, as for the SDK.

``MCP_SALES_HTTP_FAST_PATH=0`` in the environment turns it off (to compare the two paths).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pydantic_core
from mcp.server import MCPServer
from mcp.server.connection import Connection
from mcp.server.runner import serve_one
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data, progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    ErrorData,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_sales.http.settings import HttpSettings

log = logging.getLogger(__name__)

FAST_PATH_ENV = "MCP_SALES_HTTP_FAST_PATH"
FAST_METHODS = frozenset({"tools/call", "tools/list", "ping"})
_JSON = "application/json"
_VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.lower().encode("ascii")
# The SDK's per-request transport logs "Terminating session: None" at INFO for every stateless POST.
SDK_TRANSPORT_LOGGER = "mcp.server.streamable_http"


def enabled(settings: HttpSettings) -> bool:
    """Whether ``settings`` serve streamable HTTP statelessly with JSON answers (and the switch is on)."""
    return (
        settings.transport == "streamable-http"
        and settings.stateless
        and settings.json_responses
        and os.environ.get(FAST_PATH_ENV, "1") != "0"
    )


def quiet_sdk_request_logs(settings: HttpSettings) -> None:
    """Drop the SDK transport's per-request INFO line (our access log already has one per request),
    unless the server logs at DEBUG."""
    if settings.log_level.upper() != "DEBUG":
        logging.getLogger(SDK_TRANSPORT_LOGGER).setLevel(logging.WARNING)


@dataclass
class _DispatchContext:
    """The SDK's stateless JSON-response dispatch context, as its dispatcher builds it: no back-channel
    for requests, and notifications (progress, log messages) have no wire in a JSON answer."""

    transport: TransportContext
    request_id: RequestId
    message_metadata: ServerMessageMetadata
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = False

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: Any = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> None:
        log.debug("dropped %s: a JSON answer carries only the response", method)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None  # requests with a progress token never take this path


class StatelessFastPath:
    """ASGI middleware answering single ``tools/call``, ``tools/list`` and ``ping`` POSTs to ``path``
    through the server's request kernel; everything else passes to ``app`` (the SDK) unchanged."""

    def __init__(
        self,
        app: ASGIApp,
        server: MCPServer[Any],
        security: TransportSecuritySettings,
        path: str = "/mcp",
    ) -> None:
        self.app = app
        self.server = server
        self.security = TransportSecurityMiddleware(security)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        version = _protocol_version(scope)
        request = Request(scope, receive)
        if (
            (version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS)
            or await self.security.validate_request(request, is_post=True) is not None
            or not check_accept_headers(request)[0]
            or not _is_json(request.headers.get("content-type", ""))
        ):
            await self.app(scope, receive, send)
            return
        body = await request.body()
        message = _fast_request(body)
        if message is None:
            await self.app(scope, _replay(body, receive), send)
            return
        reply = await self._answer(request, message, version or DEFAULT_NEGOTIATED_VERSION)
        response = Response(
            reply.model_dump_json(by_alias=True, exclude_unset=True), headers={"Content-Type": _JSON}
        )
        await response(scope, receive, send)

    async def _answer(
        self, request: Request, message: JSONRPCRequest, version: str
    ) -> JSONRPCResponse | JSONRPCError:
        """The reply the SDK's dispatcher writes for ``message``: its result, or its error mapping."""
        manager = self.server.session_manager
        dctx = _DispatchContext(
            transport=TransportContext(kind="streamable-http", can_send_request=False),
            request_id=message.id,
            message_metadata=ServerMessageMetadata(request_context=request, can_send_request=False),
        )
        try:
            result = await serve_one(
                manager.app,
                dctx,
                message.method,
                message.params,
                connection=Connection.from_envelope(version, None, None),
                lifespan_state=manager._lifespan_state,
            )
        except Exception as exc:
            error = handler_exception_to_error_data(exc)
            if error is None:
                # The SDK's dispatcher answers an unmapped handler exception with code 0 and its text.
                log.exception("handler for %r raised", message.method)
                error = ErrorData(code=0, message=str(exc))
            return JSONRPCError(jsonrpc="2.0", id=message.id, error=error)
        return JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result)


def _protocol_version(scope: Scope) -> str | None:
    """The first ``MCP-Protocol-Version`` header, as the SDK's session manager reads it."""
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == _VERSION_HEADER), None)


def _is_json(content_type: str) -> bool:
    """The SDK transport's Content-Type test."""
    return any(part.strip() == _JSON for part in content_type.split(";")[0].split(","))


def _fast_request(body: bytes) -> JSONRPCRequest | None:
    """``body`` as one request this path answers, or None when the SDK must see it (parse or
    validation errors keep the SDK's wording; a progress token needs its event stream)."""
    try:
        message = jsonrpc_message_adapter.validate_python(pydantic_core.from_json(body), by_name=False)
    except (ValueError, ValidationError):
        return None
    if (
        not isinstance(message, JSONRPCRequest)
        or message.method not in FAST_METHODS
        or progress_token_from_params(message.params) is not None
    ):
        return None
    return message


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the already-read body once, then the connection's own messages."""
    pending: deque[Message] = deque([{"type": "http.request", "body": body, "more_body": False}])

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay
