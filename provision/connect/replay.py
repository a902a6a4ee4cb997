"""Which of the client's requests in flight at a drop are sent again to the next server, and how often.

A request is sent again, under its own id, when running it twice cannot change anything:

- the methods of :data:`SAFE_METHODS` (the handshake, ``ping`` and the listing calls);
- ``tools/call`` of a tool the server declared both ``readOnlyHint`` and ``idempotentHint`` true in
  the annotations of its last ``tools/list`` answer that passed through the proxy. A tool whose
  annotations the proxy never saw is not sent again: only the server can vouch for it.

Everything else is answered with ``LINK_DROPPED``: it may or may not have run, and only the client
knows whether running it twice is safe.

The :class:`Replays` also keeps progress coherent across servers: MCP wants each progress
notification of a request to report more than the last, and a new server starts again from zero, so
the progress the client already saw is added to the new server's (and to its total). Progress keeps
rising and keeps coming, which matters to clients that restart their request timeout on each one.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from provision.connect.jsonrpc import Part, id_key

# Methods that only read (or set up a session, which the next server needs anyway). resources/read
# and prompts/get are left out: MCP says nothing about their side effects, and a server may compute
# them with some.
SAFE_METHODS = frozenset(
    {
        "initialize",
        "server/discover",
        "ping",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
    }
)

# Sent again however many servers go away under them: a client cannot recover from a failed handshake
# (Claude Desktop never retries `initialize`), and the proxy's own limits already bound them: a server
# that dies before answering counts as failing to start, and the outage ends at its give-up time.
HANDSHAKE = frozenset({"initialize", "server/discover"})

# How many times one request is sent again. A request whose server went away under it that often is
# more likely the cause than the victim (a forecast that exhausts the host's memory, a tool that
# crashes the server): sending it on for ever would take down each new server in turn, and the
# start-failure guard would not notice, as each of them answered the handshake first.
MAX_REPLAYS = 2


class Replays:
    """What the proxy knows to decide which requests to send again, and their progress so far."""

    def __init__(self, limit: int = MAX_REPLAYS) -> None:
        self.limit = limit
        self._tools: dict[str, bool] = {}  # tool name -> read-only and idempotent, as last listed
        self._count: dict[str, int] = {}  # request key -> times sent again so far
        self._tokens: dict[str, str] = {}  # request key -> key of its progress token
        self._progress: dict[str, float] = {}  # progress token key -> most progress the client saw
        self._offset: dict[str, float] = {}  # progress token key -> added to the current server's

    def sent(self, part: Part) -> None:
        """Note a client request as it goes to the server (its progress token, if it has one)."""
        params = part.params
        if not isinstance(params, dict):
            return
        meta = params.get("_meta")
        if isinstance(meta, dict) and "progressToken" in meta:
            token = id_key(meta["progressToken"])
            self._tokens[part.key] = token
            self._progress.setdefault(token, -math.inf)

    def answered(self, request: Part, response: Part) -> None:
        """Note the server's answer to a client request: learn tools from a list, forget the request."""
        if request.method == "tools/list":
            self._learn(response.data.get("result"))
        self.forget(request.key)

    def forget(self, key: str) -> None:
        """The request ``key`` is over (answered, cancelled or failed)."""
        self._count.pop(key, None)
        token = self._tokens.pop(key, None)
        if token is not None:
            self._progress.pop(token, None)
            self._offset.pop(token, None)

    def clear(self) -> None:
        """Every request is over (the proxy gave up); what was learned about tools stays."""
        self._count.clear()
        self._tokens.clear()
        self._progress.clear()
        self._offset.clear()

    def safe(self, part: Part) -> bool:
        """Whether running the request ``part`` twice cannot change anything."""
        method = part.method
        if method in SAFE_METHODS:
            return True
        if method != "tools/call" or not isinstance(part.params, dict):
            return False
        name = part.params.get("name")
        return isinstance(name, str) and self._tools.get(name, False)

    def again(self, part: Part) -> bool:
        """Whether to send the request ``part`` to the next server (and count it if so)."""
        if not self.safe(part):
            return False
        if part.method in HANDSHAKE:
            return True
        count = self._count.get(part.key, 0)
        if count >= self.limit:
            return False
        self._count[part.key] = count + 1
        token = self._tokens.get(part.key)
        if token is not None and self._progress.get(token, -math.inf) > -math.inf:
            self._offset[token] = self._progress[token]  # the next server's progress starts above it
        return True

    def progress(self, part: Part) -> Part | None:
        """A server's ``notifications/progress`` as the client gets it: ``part`` itself, or None to drop it.

        When its request was sent again, the progress the client saw before is added to the value and
        the total (a new part); a value that does not rise past what the client saw is dropped.
        """
        params = part.params
        if not isinstance(params, dict) or "progressToken" not in params:
            return part
        token = id_key(params["progressToken"])
        seen = self._progress.get(token)
        value = params.get("progress")
        if seen is None or not _number(value):
            return part  # not a request we track, or not ours to judge: the client's SDK decides
        offset = self._offset.get(token, 0.0)
        if offset:
            value += offset
            total = params.get("total")
            params = {**params, "progress": value}
            if _number(total):
                params["total"] = total + offset
            part = Part(part.kind, {**part.data, "params": params})
        if value <= seen:
            return None
        self._progress[token] = value
        return part

    def _learn(self, result: Any) -> None:
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            return
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            hints = tool.get("annotations")
            self._tools[tool["name"]] = (
                isinstance(hints, dict)
                and hints.get("readOnlyHint") is True
                and hints.get("idempotentHint") is True
            )


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["HANDSHAKE", "MAX_REPLAYS", "SAFE_METHODS", "Replays"]
