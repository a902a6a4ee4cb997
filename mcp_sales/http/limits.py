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
        pending: deque[Message] = deque()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                pending.append(message)  # a disconnect: replayed to the app, which ends the request
                break
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        pending.appendleft({"type": "http.request", "body": bytes(body), "more_body": False})

        async def replay() -> Message:
            return pending.popleft() if pending else await receive()

        await self.app(scope, replay, send)


class SseStreamLimitMiddleware:
    """At most ``max_streams`` open ``GET /sse`` streams in this process; one more gets 503 and a JSON
    error while the open ones go on."""

    def __init__(self, app: ASGIApp, max_streams: int, path: str = "/sse") -> None:
        self.app = app
        self.max_streams = max_streams
        self.path = path
        self.open = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if self.open >= self.max_streams:
            await send_json_error(
                send,
                503,
                "too_many_sessions",
                f"this server already holds its limit of {self.max_streams} open sessions; retry later",
                {"retry-after": "5"},
            )
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
