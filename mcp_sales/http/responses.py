"""JSON error responses, sent straight from ASGI middleware (before any route runs)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import Send


def error_body(error: str, description: str) -> bytes:
    """The error body every refusal uses (the OAuth error-response shape, RFC 6750)."""
    return json.dumps({"error": error, "error_description": description}).encode()


async def send_json_error(
    send: Send,
    status: int,
    error: str,
    description: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer the current request with ``status`` and a JSON error body."""
    body = error_body(error, description)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
