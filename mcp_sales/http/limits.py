"""Request limits as ASGI middleware: a body size cap (413) and a cap on open SSE streams (503).

Stateful streamable-HTTP sessions are capped by the SDK's session manager (``max_sessions``), which
answers 503 with a JSON-RPC error body; legacy SSE streams have no such cap in the SDK, hence ours.
"""

from __future__ import annotations

from collections import deque

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_sales.http.responses import send_json_error


class BodyLimitMiddleware:
    """Refuses a request whose body exceeds ``max_bytes`` with 413 and a JSON error, before any route
    runs: by its Content-Length when declared, else while reading it (the body is held, then replayed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send: Send) -> None:
        await send_json_error(
            send,
            413,
            "request_too_large",
            f"the request body is larger than this server accepts ({self.max_bytes} bytes); send less",
            {"connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left mid-body (or was cut): nothing to answer, nothing to run
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        pending: deque[Message] = deque([{"type": "http.request", "body": bytes(body), "more_body": False}])

        async def replay() -> Message:
            return pending.popleft() if pending else await receive()

        await self.app(scope, replay, send)


RETRY_AFTER_S = "5"


class SessionLimitMiddleware:
    """At most ``max_streams`` open ``GET /sse`` streams in this process: one more gets 503 and a JSON
    error while the open ones go on. The SDK's own 503 for a streamable-HTTP session over its cap gets
    the same ``Retry-After``."""

    def __init__(
        self, app: ASGIApp, max_streams: int, sse_path: str = "/sse", mcp_path: str = "/mcp"
    ) -> None:
        self.app = app
        self.max_streams = max_streams
        self.sse_path = sse_path
        self.mcp_path = mcp_path
        self.open = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] == self.sse_path and scope["method"] == "GET":
            await self._stream(scope, receive, send)
        elif scope["path"] == self.mcp_path:
            await self.app(scope, receive, _with_retry_after(send))
        else:
            await self.app(scope, receive, send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.open >= self.max_streams:
            await send_json_error(
                send,
                503,
                "too_many_sessions",
                f"this server already holds its limit of {self.max_streams} open sessions; retry later",
                {"retry-after": RETRY_AFTER_S},
            )
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1


def _with_retry_after(send: Send) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 503:
            headers = [*message.get("headers", []), (b"retry-after", RETRY_AFTER_S.encode())]
            message = {**message, "headers": headers}
        await send(message)

    return sender
