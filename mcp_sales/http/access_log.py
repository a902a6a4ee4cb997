"""One stderr line per request: method, path, status, milliseconds, and who (a key id or a token's
subject, ``-`` when unauthenticated). Never the query string (the SSE message endpoint carries its
session id there), never a header."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_sales.http.auth import PRINCIPAL_SCOPE_KEY

log = logging.getLogger("mcp_sales.access")


class AccessLogMiddleware:
    """Logs each HTTP request when its response ends (a stream when it closes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s %s %.1fms %s",
                scope["method"],
                scope["path"],
                status or "-",
                elapsed_ms,
                scope.get(PRINCIPAL_SCOPE_KEY, "-"),
            )
