"""uvicorn's h11 protocol with a deadline for receiving a whole request (slowloris).

uvicorn times out idle keep-alive connections but not a client that sends half its headers (or half
its body) and stalls: that connection would be held forever, and enough of them exhaust the server.
Here a timer runs from a connection's first byte, and from the first byte of every later request on
it, until the request is fully received; when it fires the connection is answered 408 if no response
has started, and closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from mcp_sales.http.responses import error_body

log = logging.getLogger(__name__)

_RECEIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


class GuardedConfig(Config):
    """uvicorn's Config plus ``request_timeout_s``, which must reach worker processes (it is pickled)."""

    def __init__(self, *args: Any, request_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout_s = request_timeout_s


class GuardedH11Protocol(H11Protocol):
    """H11Protocol that cuts a client who takes longer than ``request_timeout_s`` to send a request."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._request_timeout_s: float = getattr(config, "request_timeout_s", 10.0)
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a client that connects and sends nothing is cut too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in _RECEIVED:
            self._disarm()
        else:
            self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle between requests: uvicorn's keep-alive timeout applies

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._request_timer is None:
            self._request_timer = self.loop.call_later(self._request_timeout_s, self._on_request_timeout)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _on_request_timeout(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning(
            "closing the connection from %s: no complete request within %.0f s",
            client,
            self._request_timeout_s,
        )
        if self.cycle is None or not self.cycle.response_started:
            body = error_body(
                "request_timeout",
                f"the request was not received within {self._request_timeout_s:g} s; send it at once",
            )
            head = (
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode("latin-1") + body)
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()
