"""The session ledger: what the proxy remembers of the conversation, so the server behind it can change.

Pure bookkeeping, no I/O: the proxy tells the :class:`Ledger` what passes in each direction and acts
on what it returns. The :class:`Handshake` is the part of it that a fresh server must hear again: what
a handshake-era client said to set up its session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from provision.connect.jsonrpc import (
    GAVE_UP,
    LINK_DROPPED,
    QUEUE_FULL,
    Kind,
    Message,
    Part,
    encode,
    error_response,
    id_key,
    notification,
    opaque,
    parse,
    request,
    valid_id,
)
from provision.connect.replay import Replays

Step = tuple[bytes, str | None]  # a line for a fresh server, and the id of the answer to wait for


class Handshake:
    """The session state of a handshake-era client, to replay to a fresh server.

    That is the client's ``initialize`` (once a server answered it: an unanswered one is sent again as
    the request it is, see :mod:`provision.connect.replay`), its ``notifications/initialized`` and its last
    ``logging/setLevel``. The 2026-07-28 revision has no session state: each request carries its
    version and capabilities in ``_meta``, so there is nothing to replay for those clients.
    """

    def __init__(self) -> None:
        self._initialize: dict[str, Any] | None = None
        self._initialize_key: str | None = None
        self._answered = False
        self._initialized: dict[str, Any] | None = None
        self._log_level: Any = None
        self.protocol_version: str | None = None  # what the server answered the client's initialize with

    @property
    def done(self) -> bool:
        """Whether the client completed an ``initialize`` that a new server must be given again."""
        return self._initialize is not None and self._answered

    def client_sent(self, part: Part) -> None:
        """Note a request or notification of the client's, as it goes to the server."""
        if part.kind is Kind.REQUEST and part.method == "initialize":
            # A new initialize starts a new session: what the old one set up is void.
            self._initialize, self._initialize_key = part.data, part.key
            self._answered, self._initialized = False, None
        elif part.kind is Kind.REQUEST and part.method == "logging/setLevel":
            self._log_level = part.params
        elif part.kind is Kind.NOTIFICATION and part.method == "notifications/initialized":
            self._initialized = part.data

    def server_answered(self, part: Part) -> None:
        """Note a server's response to the client (the one to ``initialize`` completes the handshake)."""
        if part.key != self._initialize_key or self._answered:
            return
        self._answered = True
        result = part.data.get("result")
        if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
            self.protocol_version = result["protocolVersion"]

    def replay(self, new_id: Callable[[], str]) -> list[Step]:
        """What a fresh server needs before the client's traffic, in the order the client sent it.

        The ``initialize`` goes under an id from ``new_id`` (its answer is awaited and is not the
        client's); ``logging/setLevel`` too (its answer is dropped). Empty until :attr:`done`.
        """
        if self._initialize is None or not self._answered:
            return []
        init_id = new_id()
        steps: list[Step] = [(request(init_id, "initialize", self._initialize.get("params")), init_id)]
        if self._initialized is not None:
            steps.append((encode(self._initialized), None))
        if self._log_level is not None:
            steps.append((request(new_id(), "logging/setLevel", self._log_level), None))
        return steps


class Ledger:
    """What the proxy remembers about the conversation, so that the server behind it can be replaced.

    It tracks

    - the client's requests in flight on the current server (answered with an error if it goes away,
      except those that cannot change anything, which are queued again: :mod:`provision.connect.replay`);
    - the server's requests to the client (sampling, elicitation, roots, ping) in flight, so that the
      client's late answers to a server that is gone are not delivered to its successor;
    - the messages that arrived while no server was ready (bounded), in arrival order;
    - the :class:`Handshake` to replay to a fresh server.

    Args:
        queue_limit: How many messages may wait for a server.
        id_prefix: The prefix of the proxy's own request ids (must be one no client uses).
        dropped_message: The error message for requests in flight when the server goes away.
    """

    def __init__(self, *, queue_limit: int, id_prefix: str, dropped_message: str) -> None:
        self.queue_limit = queue_limit
        self.id_prefix = id_prefix
        self.dropped_message = dropped_message
        self.handshake = Handshake()
        self.replays = Replays()
        self.resent = 0  # how many requests in flight at the last drop were queued again
        self._pending: dict[str, Part] = {}  # client requests on the current server, in sending order
        self._server_pending: dict[str, Any] = {}  # server requests awaiting the client: key -> id
        self._stale: set[str] = set()  # server requests whose server is gone
        self._queue: deque[Message] = deque()
        self._next_id = 0

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
        return self.handshake.done

    @property
    def protocol_version(self) -> str | None:
        """The protocol version the client's ``initialize`` was answered with."""
        return self.handshake.protocol_version

    # ------------------------------------------------------------------------------- client side

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
            elif part.method == "notifications/cancelled":
                cancelled = _cancelled_key(part)
                if cancelled is not None and self._unqueue(cancelled):
                    dropped.add(index)
                    self.replays.forget(cancelled)
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
            if part.kind is Kind.RESPONSE:
                self._server_pending.pop(part.key, None)
                continue
            self.handshake.client_sent(part)
            if part.kind is Kind.REQUEST:
                self._pending[part.key] = part
                self.replays.sent(part)
            elif part.method == "notifications/cancelled":
                key = _cancelled_key(part)
                if key is None or self._pending.pop(key, None) is None:
                    dropped.add(index)  # that request was already answered, by the server or by us
                else:
                    self.replays.forget(key)
        return message.without(dropped)

    # ------------------------------------------------------------------------------- server side

    def from_server(self, message: Message) -> tuple[bytes | None, list[Part]]:
        """Record a server message; return the line for the client (or None) and the answers to the
        proxy's own requests (taken out of the line)."""
        dropped: set[int] = set()
        replaced: dict[int, dict[str, Any]] = {}
        own: list[Part] = []
        for index, part in enumerate(message.parts):
            if part.kind is Kind.RESPONSE:
                if isinstance(part.id, str) and part.id.startswith(self.id_prefix):
                    own.append(part)
                    dropped.add(index)
                    continue
                asked = self._pending.pop(part.key, None)
                if asked is not None:
                    self.replays.answered(asked, part)
                self.handshake.server_answered(part)
            elif part.kind is Kind.REQUEST:
                self._server_pending[part.key] = part.id
            elif part.method == "notifications/progress":
                passed = self.replays.progress(part)
                if passed is None:
                    dropped.add(index)  # progress that does not rise
                elif passed is not part:
                    replaced[index] = passed.data  # on a request sent again: above what the client saw
        return message.without(dropped, replaced), own

    # ----------------------------------------------------------------------------- server change

    def new_id(self) -> str:
        """A fresh id for a request of the proxy's own."""
        self._next_id += 1
        return f"{self.id_prefix}{self._next_id}"

    def link_lost(self) -> list[bytes]:
        """The server went away: return what the client must be told, and forget that server.

        Requests in flight get an error response, except those that cannot change anything
        (:meth:`Replays.again <provision.connect.replay.Replays.again>`), which go back to the front of
        the queue, under their own ids; the server's own requests to the client are cancelled.
        """
        out: list[bytes] = []
        resend: list[Message] = []
        for part in self._pending.values():
            if self.replays.again(part):
                resend.append(Message(encode(part.data), (part,), batch=False))
            else:
                self.replays.forget(part.key)
                out.append(error_response(part.id, LINK_DROPPED, self.dropped_message))
        self.resent = len(resend)
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

    def replay(self) -> list[Step]:
        """The session state a fresh server needs before the client's traffic, as (line, id to await).

        Empty unless the client completed the handshake-era ``initialize``.
        """
        return self.handshake.replay(self.new_id)

    def abandon(self, message: str, data: dict[str, str] | None = None) -> list[bytes]:
        """Giving up: return error responses for every request in flight or queued, and forget them.

        ``data`` travels in each error's ``data`` member: the parts of ``message`` as fields (what went
        wrong, what to do), so a program such as ``mcpctl doctor`` need not take the sentence apart.
        """
        parts = list(self._pending.values())
        parts += [part for queued in self._queue for part in queued.parts if part.kind is Kind.REQUEST]
        self._pending.clear()
        self._queue.clear()
        self.replays.clear()
        return [error_response(part.id, GAVE_UP, message, data) for part in parts]


def _cancelled_key(part: Part) -> str | None:
    params = part.params
    if isinstance(params, dict) and valid_id(params.get("requestId")):
        return id_key(params["requestId"])
    return None


__all__ = ["Handshake", "Ledger", "Step"]
