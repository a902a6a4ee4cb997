"""JSON-RPC 2.0 framing and classification for the stdio proxy (MCP's newline-delimited stdio transport).

The proxy never interprets what a message *means* beyond what it needs to stay transparent: which
messages are requests (and their ids and methods), which are responses, and which lines are not
JSON-RPC at all (those must never reach the client's stdout). Parsing is strict on the shape and lax
on everything else: unknown fields and methods pass through untouched, and forwarded lines are the
original bytes, not a re-serialisation.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

JSONRPC = "2.0"

# Error codes the proxy itself answers with. -32000..-32099 is JSON-RPC's range for implementation-
# defined server errors; MCP clients show the message, which is what the user gets to read.
LINK_DROPPED = -32000
GAVE_UP = -32001
QUEUE_FULL = -32002


class Kind(enum.Enum):
    """What a single JSON-RPC message is."""

    REQUEST = "request"
    NOTIFICATION = "notification"
    RESPONSE = "response"


@dataclass(frozen=True)
class Part:
    """One JSON-RPC message (a whole line, or one element of a batch)."""

    kind: Kind
    data: dict[str, Any]

    @property
    def id(self) -> Any:
        """The message id (None for a notification, or a response to an unparseable request)."""
        return self.data.get("id")

    @property
    def key(self) -> str:
        """The id as a dictionary key that keeps ``1`` and ``"1"`` apart (JSON-RPC does)."""
        return id_key(self.data.get("id"))

    @property
    def method(self) -> str | None:
        """The method of a request or notification."""
        method = self.data.get("method")
        return method if isinstance(method, str) else None

    @property
    def params(self) -> Any:
        """The params of a request or notification (None when absent)."""
        return self.data.get("params")


@dataclass(frozen=True)
class Message:
    """A parsed line: one message, or a batch (a JSON array of messages)."""

    raw: bytes  # the line as received, without its newline
    parts: tuple[Part, ...]
    batch: bool

    def without(self, dropped: set[int]) -> bytes | None:
        """The line with the parts at indexes ``dropped`` removed; None when nothing is left.

        The original bytes are returned untouched when nothing is dropped.
        """
        if not dropped:
            return self.raw
        kept = [part.data for index, part in enumerate(self.parts) if index not in dropped]
        if not kept:
            return None
        return encode(kept if self.batch else kept[0])


def id_key(value: Any) -> str:
    """A hashable key for a JSON-RPC id (the JSON text, so that ``1`` and ``"1"`` differ)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _valid_id(value: Any) -> bool:
    # MCP: a string or an integer (JSON-RPC also allows null, which MCP forbids for requests).
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def classify(data: Any) -> Part | None:
    """Return what a decoded JSON value is as one JSON-RPC 2.0 message, or None if it is none."""
    if not isinstance(data, dict) or data.get("jsonrpc") != JSONRPC:
        return None
    if "method" in data:
        if not isinstance(data["method"], str) or "result" in data or "error" in data:
            return None
        if "id" not in data:
            return Part(Kind.NOTIFICATION, data)
        return Part(Kind.REQUEST, data) if _valid_id(data["id"]) else None
    if "id" not in data or ("result" in data) == ("error" in data):
        return None
    if "error" in data:
        error = data["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return None
        # A response to a request the peer could not parse has a null id.
        return Part(Kind.RESPONSE, data) if data["id"] is None or _valid_id(data["id"]) else None
    return Part(Kind.RESPONSE, data) if _valid_id(data["id"]) else None


def parse(line: bytes) -> Message | None:
    """Parse one line (without its newline); None when it is not exactly one JSON-RPC message or batch."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if isinstance(data, list):
        if not data:
            return None
        parts = [classify(item) for item in data]
        if any(part is None for part in parts):
            return None
        return Message(line, tuple(p for p in parts if p is not None), batch=True)
    part = classify(data)
    return Message(line, (part,), batch=False) if part is not None else None


def encode(data: Any) -> bytes:
    """Serialise a message as one line (no newline; compact; non-ASCII kept as UTF-8)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def request(request_id: str | int, method: str, params: Any = None) -> bytes:
    """Build a request line."""
    data: dict[str, Any] = {"jsonrpc": JSONRPC, "id": request_id, "method": method}
    if params is not None:
        data["params"] = params
    return encode(data)


def notification(method: str, params: Any = None) -> bytes:
    """Build a notification line."""
    data: dict[str, Any] = {"jsonrpc": JSONRPC, "method": method}
    if params is not None:
        data["params"] = params
    return encode(data)


def error_response(request_id: Any, code: int, message: str, data: Any = None) -> bytes:
    """Build an error response line."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return encode({"jsonrpc": JSONRPC, "id": request_id, "error": error})


class LineSplitter:
    """Cut a byte stream into lines, with a bound on how long one line may grow.

    A line longer than ``max_line`` is discarded up to its newline (and reported once through
    :attr:`overflowed`), so a peer that never sends a newline cannot make us buffer without end.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._skipping = False
        self.overflowed = 0  # lines discarded for being too long

    def feed(self, data: bytes) -> list[bytes]:
        """Add data; return the complete lines it finished (without newlines, trailing CR removed)."""
        lines: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                self._buffer += data[start:end]
                if len(self._buffer) <= self.max_line:
                    line = bytes(self._buffer)
                    lines.append(line[:-1] if line.endswith(b"\r") else line)
                else:
                    self.overflowed += 1
            self._buffer.clear()
            start = end + 1
        if not self._skipping:
            self._buffer += data[start:]
            if len(self._buffer) > self.max_line:
                self._buffer.clear()
                self._skipping = True
                self.overflowed += 1
        return lines

    def rest(self) -> bytes:
        """Return and forget an unfinished last line (at end of stream)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._skipping = False
        return rest


# ----------------------------------------------------------------------------------------- ledger

# Requests that are sent again to the next server instead of failed when the link drops under them:
# they change nothing on the server, and a client whose handshake fails has no way to recover (Claude
# Desktop never retries `initialize`).
RESEND_SAFE = frozenset({"initialize", "server/discover"})


def opaque(line: bytes) -> Message:
    """Wrap a client line that is not JSON-RPC: it is forwarded as is, so the server answers it."""
    return Message(line, (), batch=False)


class Ledger:
    """What the proxy remembers about the conversation, so that the server behind it can be replaced.

    Pure bookkeeping, no I/O: the proxy tells it what passes in each direction and acts on what it
    returns. It tracks

    - the client's requests in flight on the current server (answered with an error if it goes away,
      except the :data:`RESEND_SAFE` ones, which are queued again);
    - the server's requests to the client (sampling, elicitation, roots, ping) in flight, so that the
      client's late answers to a server that is gone are not delivered to its successor;
    - the messages that arrived while no server was ready (bounded);
    - the handshake-era session state to replay to a fresh server: the client's ``initialize`` (once
      answered), its ``notifications/initialized`` and its last ``logging/setLevel``. The 2026-07-28
      revision has no session state: each request carries its version and capabilities in ``_meta``,
      so there is nothing to replay for those clients.

    Args:
        queue_limit: How many messages may wait for a server.
        id_prefix: The prefix of the proxy's own request ids (must be one no client uses).
        dropped_message: The error message for requests in flight when the server goes away.
    """

    def __init__(self, *, queue_limit: int, id_prefix: str, dropped_message: str) -> None:
        self.queue_limit = queue_limit
        self.id_prefix = id_prefix
        self.dropped_message = dropped_message
        self._pending: dict[str, Part] = {}  # client requests on the current server, in sending order
        self._server_pending: dict[str, Any] = {}  # server requests awaiting the client: key -> id
        self._stale: set[str] = set()  # server requests whose server is gone
        self._queue: deque[Message] = deque()
        self._initialize: dict[str, Any] | None = None
        self._initialize_key: str | None = None
        self._initialize_answered = False
        self._initialized: dict[str, Any] | None = None
        self._log_level: Any = None
        self._next_id = 0
        self.protocol_version: str | None = None  # what the server answered the client's initialize with

    # ------------------------------------------------------------------------------- client side

    @property
    def queued(self) -> int:
        """How many messages wait for a server."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """How many client requests the current server has not answered."""
        return len(self._pending)

    @property
    def handshake_done(self) -> bool:
        """Whether the client completed an ``initialize`` that a new server must be given again."""
        return self._initialize is not None and self._initialize_answered

    def admit(self, message: Message) -> Message | None:
        """Filter a client message on arrival; None when nothing of it is left to send.

        Dropped here: answers to server requests whose server is gone (or that no server sent), and a
        cancellation of a request still waiting in the queue (the request is removed with it).
        """
        dropped: set[int] = set()
        for index, part in enumerate(message.parts):
            if part.kind is Kind.RESPONSE:
                key = part.key
                if key in self._stale:
                    self._stale.discard(key)
                    dropped.add(index)
                elif key not in self._server_pending:
                    dropped.add(index)
            elif part.method == "notifications/cancelled" and self._unqueue(_cancelled_key(part)):
                dropped.add(index)
        if not dropped:
            return message
        line = message.without(dropped)
        return parse(line) if line is not None else None

    def _unqueue(self, key: str | None) -> bool:
        """Remove the queued request with id ``key``; return whether there was one."""
        if key is None:
            return False
        for index, queued in enumerate(self._queue):
            for position, part in enumerate(queued.parts):
                if part.kind is Kind.REQUEST and part.key == key:
                    rest = queued.without({position})
                    del self._queue[index]  # returning right away: the iteration ends here
                    if rest is not None:
                        self._queue.insert(index, parse(rest) or opaque(rest))
                    return True
        return False

    def enqueue(self, message: Message) -> list[bytes]:
        """Keep a message until a server is ready; return error responses if the queue is full."""
        if len(self._queue) >= self.queue_limit:
            return [
                error_response(
                    part.id,
                    QUEUE_FULL,
                    f"{self.queue_limit} messages are already waiting for the server to come back; "
                    "retry this request in a moment.",
                )
                for part in message.parts
                if part.kind is Kind.REQUEST
            ]
        self._queue.append(message)
        return []

    def dequeue(self) -> Message | None:
        """The oldest waiting message, or None."""
        return self._queue.popleft() if self._queue else None

    def to_server(self, message: Message) -> bytes | None:
        """Record a client message as sent to the current server; return the line to send (or None)."""
        dropped: set[int] = set()
        for index, part in enumerate(message.parts):
            if part.kind is Kind.REQUEST:
                self._pending[part.key] = part
                if part.method == "initialize":
                    self._initialize, self._initialize_key = part.data, part.key
                    self._initialize_answered, self._initialized = False, None
                elif part.method == "logging/setLevel":
                    self._log_level = part.params
            elif part.kind is Kind.RESPONSE:
                self._server_pending.pop(part.key, None)
            elif part.method == "notifications/initialized":
                self._initialized = part.data
            elif part.method == "notifications/cancelled":
                key = _cancelled_key(part)
                if key is None or self._pending.pop(key, None) is None:
                    dropped.add(index)  # that request was already answered, by the server or by us
        return message.without(dropped)

    # ------------------------------------------------------------------------------- server side

    def from_server(self, message: Message) -> tuple[bytes | None, list[Part]]:
        """Record a server message; return the line for the client (or None) and the answers to the
        proxy's own requests (taken out of the line)."""
        dropped: set[int] = set()
        own: list[Part] = []
        for index, part in enumerate(message.parts):
            if part.kind is Kind.RESPONSE:
                if isinstance(part.id, str) and part.id.startswith(self.id_prefix):
                    own.append(part)
                    dropped.add(index)
                    continue
                key = part.key
                self._pending.pop(key, None)
                if key == self._initialize_key and not self._initialize_answered:
                    self._initialize_answered = True
                    result = part.data.get("result")
                    if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
                        self.protocol_version = result["protocolVersion"]
            elif part.kind is Kind.REQUEST:
                self._server_pending[part.key] = part.id
        return message.without(dropped), own

    # ----------------------------------------------------------------------------- server change

    def new_id(self) -> str:
        """A fresh id for a request of the proxy's own."""
        self._next_id += 1
        return f"{self.id_prefix}{self._next_id}"

    def link_lost(self) -> list[bytes]:
        """The server went away: return what the client must be told, and forget that server.

        Requests in flight get an error response, except :data:`RESEND_SAFE` ones, which go back to
        the front of the queue; the server's own requests to the client are cancelled.
        """
        out: list[bytes] = []
        resend: list[Message] = []
        for part in self._pending.values():
            if part.method in RESEND_SAFE:
                resend.append(Message(encode(part.data), (part,), batch=False))
            else:
                out.append(error_response(part.id, LINK_DROPPED, self.dropped_message))
        self._pending.clear()
        for request_id in self._server_pending.values():
            out.append(
                notification(
                    "notifications/cancelled",
                    {"requestId": request_id, "reason": "the connection to the server dropped"},
                )
            )
        self._stale.update(self._server_pending)
        self._server_pending.clear()
        self._queue.extendleft(reversed(resend))
        return out

    def replay(self) -> list[tuple[bytes, str | None]]:
        """The session state a fresh server needs before the client's traffic, as (line, id to await).

        Empty unless the client completed the handshake-era ``initialize``.
        """
        if self._initialize is None or not self._initialize_answered:
            return []
        init_id = self.new_id()
        steps: list[tuple[bytes, str | None]] = [
            (request(init_id, "initialize", self._initialize.get("params")), init_id)
        ]
        if self._initialized is not None:
            steps.append((encode(self._initialized), None))
        if self._log_level is not None:
            steps.append((request(self.new_id(), "logging/setLevel", self._log_level), None))
        return steps

    def abandon(self, message: str) -> list[bytes]:
        """Giving up: return error responses for every request in flight or queued, and forget them."""
        parts = list(self._pending.values())
        parts += [part for queued in self._queue for part in queued.parts if part.kind is Kind.REQUEST]
        self._pending.clear()
        self._queue.clear()
        return [error_response(part.id, GAVE_UP, message) for part in parts]


def _cancelled_key(part: Part) -> str | None:
    params = part.params
    if isinstance(params, dict) and _valid_id(params.get("requestId")):
        return id_key(params["requestId"])
    return None


__all__ = [
    "GAVE_UP",
    "JSONRPC",
    "LINK_DROPPED",
    "QUEUE_FULL",
    "RESEND_SAFE",
    "Kind",
    "Ledger",
    "LineSplitter",
    "Message",
    "Part",
    "classify",
    "encode",
    "error_response",
    "id_key",
    "notification",
    "opaque",
    "parse",
    "request",
]
