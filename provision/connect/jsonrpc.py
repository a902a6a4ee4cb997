"""JSON-RPC 2.0 framing for the stdio proxy (MCP's newline-delimited stdio transport).

Where framing ends: this module cuts a byte stream into lines, tells which lines are JSON-RPC
messages (requests with their ids and methods, notifications, responses) and which are not (those
must never reach the client's stdout), and builds the few messages the proxy writes itself. What a
message means for the session is the ledger's business (:mod:`provision.connect.ledger`). Parsing is
strict on the shape and lax on everything else: unknown fields and methods pass through untouched,
and forwarded lines are the original bytes, not a re-serialisation.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

JSONRPC = "2.0"

# The error codes the proxy itself answers with; MCP clients show the message, which is what the user
# gets to read. JSON-RPC leaves -32000..-32099 to implementations, but MCP keeps -32020..-32099 for its
# own spec, the MCP SDK gives -32000 (connection closed) and -32001 (request timeout) to its client
# side, and -32002 is retired. A client, and `mcpctl doctor`, must tell the proxy's answers from its
# own SDK's verdicts, so the proxy keeps to -32010..-32019 (docs/CONNECT.md has the table).
LINK_DROPPED = -32010  # the server went away while the request was in flight: retry it
GAVE_UP = -32011  # the proxy found no working server and stopped trying: the message says why
QUEUE_FULL = -32012  # too many messages wait for the server to come back: retry in a moment
PROXY_ERRORS = frozenset({LINK_DROPPED, GAVE_UP, QUEUE_FULL})


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

    def without(self, dropped: set[int], replaced: dict[int, dict[str, Any]] | None = None) -> bytes | None:
        """The line with the parts at indexes ``dropped`` removed, and those at the keys of ``replaced``
        replaced by its values; None when nothing is left.

        The original bytes are returned untouched when nothing is dropped or replaced.
        """
        if not dropped and not replaced:
            return self.raw
        replaced = replaced or {}
        kept = [
            replaced.get(index, part.data) for index, part in enumerate(self.parts) if index not in dropped
        ]
        if not kept:
            return None
        return encode(kept if self.batch else kept[0])


def id_key(value: Any) -> str:
    """A hashable key for a JSON-RPC id that keeps ``1`` and ``"1"`` apart, as JSON-RPC does.

    Strings and integers (every MCP request id) get a one-letter prefix for their type: the ledger
    takes a few keys per message, and serialising each as JSON cost more than the parse it came from.
    Anything else (a null id, a progress token of another type) is keyed by its JSON text.
    """
    kind = type(value)
    if kind is str:
        return f"s{value}"
    if kind is int:  # not bool: True is no id
        return f"i{value}"
    return "j" + json.dumps(value, separators=(",", ":"), sort_keys=True)


def valid_id(value: Any) -> bool:
    """Whether ``value`` can be a request id."""
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
        return Part(Kind.REQUEST, data) if valid_id(data["id"]) else None
    if "id" not in data or ("result" in data) == ("error" in data):
        return None
    if "error" in data:
        error = data["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return None
        # A response to a request the peer could not parse has a null id.
        return Part(Kind.RESPONSE, data) if data["id"] is None or valid_id(data["id"]) else None
    return Part(Kind.RESPONSE, data) if valid_id(data["id"]) else None


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


def opaque(line: bytes) -> Message:
    """Wrap a client line that is not JSON-RPC: it is forwarded as is, so the server answers it."""
    return Message(line, (), batch=False)


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


__all__ = [
    "GAVE_UP",
    "JSONRPC",
    "LINK_DROPPED",
    "PROXY_ERRORS",
    "QUEUE_FULL",
    "Kind",
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
    "valid_id",
]
