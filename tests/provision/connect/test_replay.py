"""Requests in flight at a drop: which are sent again under their own ids, how often, and their progress."""

from __future__ import annotations

import json
from typing import Any

from provision.connect import jsonrpc
from provision.connect.jsonrpc import parse
from provision.connect.ledger import Ledger
from provision.connect.replay import MAX_REPLAYS, SAFE_METHODS

SAFE = {"readOnlyHint": True, "idempotentHint": True, "destructiveHint": False}
TOOLS = [
    {"name": "forecast", "inputSchema": {}, "annotations": SAFE},
    {"name": "read_only_only", "inputSchema": {}, "annotations": {"readOnlyHint": True}},
    {"name": "writes", "inputSchema": {}, "annotations": {"readOnlyHint": False, "idempotentHint": True}},
    {"name": "bare", "inputSchema": {}},
]


def _message(data: dict[str, Any]) -> jsonrpc.Message:
    message = parse(json.dumps({"jsonrpc": "2.0", **data}).encode())
    assert message is not None
    return message


def _ledger(tools: list[dict[str, Any]] | None = TOOLS) -> Ledger:
    ledger = Ledger(queue_limit=16, id_prefix="own-", dropped_message="dropped")
    if tools is not None:
        ledger.to_server(_message({"id": "list", "method": "tools/list"}))
        ledger.from_server(_message({"id": "list", "result": {"tools": tools}}))
    return ledger


def _call(request_id: Any, tool: str, token: Any = None) -> jsonrpc.Message:
    params: dict[str, Any] = {"name": tool, "arguments": {}}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return _message({"id": request_id, "method": "tools/call", "params": params})


def _queued(ledger: Ledger) -> list[dict[str, Any]]:
    out = []
    while (message := ledger.dequeue()) is not None:
        line = ledger.to_server(message)
        assert line is not None
        out.append(json.loads(line))
    return out


def test_only_requests_that_cannot_change_anything_are_sent_again_under_their_own_ids() -> None:
    ledger = _ledger()
    for index, method in enumerate(sorted(SAFE_METHODS - {"initialize", "server/discover"})):
        ledger.to_server(_message({"id": f"m{index}", "method": method}))
    ledger.to_server(_call(1, "forecast"))
    ledger.to_server(_call("two", "read_only_only"))
    ledger.to_server(_call(3, "writes"))
    ledger.to_server(_call(4, "bare"))
    ledger.to_server(_call(5, "never_listed"))
    ledger.to_server(_message({"id": 6, "method": "resources/read", "params": {"uri": "x://y"}}))
    ledger.to_server(_message({"id": 7, "method": "tools/call"}))  # no params: nothing to vouch for

    errors = [json.loads(line) for line in ledger.link_lost()]
    assert [m["id"] for m in errors] == ["two", 3, 4, 5, 6, 7]
    assert all(m["error"]["code"] == jsonrpc.LINK_DROPPED for m in errors)
    assert ledger.resent == 6 and ledger.in_flight == 0
    again = _queued(ledger)
    # In the order the client sent them, under the client's ids, byte for byte the same requests.
    assert [m["id"] for m in again] == ["m0", "m1", "m2", "m3", "m4", 1]
    assert {m["method"] for m in again[:-1]} == SAFE_METHODS - {"initialize", "server/discover"}
    assert again[-1]["params"] == {"name": "forecast", "arguments": {}}
    assert ledger.in_flight == 6
    # Their answers from the next server are the client's.
    out, own = ledger.from_server(_message({"id": 1, "result": {"content": []}}))
    assert out is not None and json.loads(out)["id"] == 1 and own == []


def test_a_request_is_sent_again_at_most_max_replays_times_but_the_handshake_always() -> None:
    ledger = _ledger()
    ledger.to_server(_call(1, "forecast"))
    ledger.to_server(_message({"id": 2, "method": "initialize", "params": {}}))
    for _ in range(MAX_REPLAYS):
        assert ledger.link_lost() == []
        assert [m["id"] for m in _queued(ledger)] == [1, 2]
    errors = [json.loads(line) for line in ledger.link_lost()]
    assert [m["id"] for m in errors] == [1]
    assert [m["id"] for m in _queued(ledger)] == [2]
    # An answer ends the count: the same id used again later starts afresh.
    ledger.from_server(_message({"id": 2, "result": {"protocolVersion": "v"}}))
    ledger.to_server(_call(1, "forecast"))
    ledger.from_server(_message({"id": 1, "result": {}}))
    ledger.to_server(_call(1, "forecast"))
    assert ledger.link_lost() == []


def test_what_a_later_tools_list_says_wins_and_a_first_list_is_needed() -> None:
    ledger = _ledger(tools=None)
    ledger.to_server(_call(1, "forecast"))
    assert [json.loads(line)["id"] for line in ledger.link_lost()] == [1]  # never listed: not vouched for
    ledger = _ledger()
    unsafe = [{"name": "forecast", "inputSchema": {}, "annotations": {"readOnlyHint": True}}]
    ledger.to_server(_message({"id": "again", "method": "tools/list", "params": {"cursor": "p2"}}))
    ledger.from_server(_message({"id": "again", "result": {"tools": unsafe}}))
    ledger.to_server(_call(1, "forecast"))
    assert [json.loads(line)["id"] for line in ledger.link_lost()] == [1]
    # A tools/list answered with an error, or a server's request named tools/list, teaches nothing.
    ledger = _ledger(tools=None)
    ledger.to_server(_message({"id": "e", "method": "tools/list"}))
    ledger.from_server(_message({"id": "e", "error": {"code": -1, "message": "no"}}))
    ledger.from_server(_message({"id": "srv", "method": "tools/list"}))
    ledger.to_server(_call(1, "forecast"))
    told = [json.loads(line) for line in ledger.link_lost()]
    assert [m["id"] for m in told if "error" in m] == [1] and ledger.resent == 0


def test_progress_of_a_request_sent_again_carries_on_from_what_the_client_saw() -> None:
    ledger = _ledger()
    ledger.to_server(_call(1, "forecast", token="tok"))
    ledger.to_server(_call(2, "writes", token=7))

    def progress(token: Any, value: float, total: float | None = None) -> dict[str, Any] | None:
        params: dict[str, Any] = {"progressToken": token, "progress": value, "message": "fitting"}
        if total is not None:
            params["total"] = total
        out, _ = ledger.from_server(_message({"method": "notifications/progress", "params": params}))
        return json.loads(out)["params"] if out is not None else None

    assert progress("tok", 1.0, 45) == {
        "progressToken": "tok",
        "progress": 1.0,
        "total": 45,
        "message": "fitting",
    }
    assert progress("tok", 2.5, 45) is not None
    assert progress("tok", 2.5, 45) is None  # a value that does not rise
    assert progress(7, 1.0) is not None
    ledger.link_lost()
    assert _queued(ledger)[0]["id"] == 1
    # The next server starts from zero: what the client saw is added, to the value and the total.
    assert progress("tok", 0.5, 45) == {
        "progressToken": "tok",
        "progress": 3.0,
        "total": 47.5,
        "message": "fitting",
    }
    assert progress("tok", 1.0) == {"progressToken": "tok", "progress": 3.5, "message": "fitting"}
    assert progress("tok", 0.9) is None
    # Sent again a second time: on top of everything the client saw.
    ledger.link_lost()
    _queued(ledger)
    again = progress("tok", 0.25)
    assert again is not None and again["progress"] == 3.75
    # Tokens of no request in flight, and progress without a number, are not the proxy's to judge.
    assert progress(7, 0.1) is not None and progress("other", 0.0) is not None
    ledger.from_server(_message({"id": 1, "result": {}}))
    assert progress("tok", 0.0) == {"progressToken": "tok", "progress": 0.0, "message": "fitting"}


def test_cancelling_a_request_sent_again_takes_it_out_or_passes_to_the_new_server() -> None:
    ledger = _ledger()
    ledger.to_server(_call(1, "forecast", token="a"))
    ledger.to_server(_call(2, "forecast", token="b"))
    ledger.link_lost()
    assert ledger.queued == 2
    cancel_1 = _message({"method": "notifications/cancelled", "params": {"requestId": 1}})
    assert ledger.admit(cancel_1) is None  # still waiting: removed with its cancellation
    assert [m["id"] for m in _queued(ledger)] == [2]
    cancel_2 = _message({"method": "notifications/cancelled", "params": {"requestId": 2}})
    admitted = ledger.admit(cancel_2)
    assert admitted is not None and ledger.to_server(admitted) is not None  # the new server hears it
    assert ledger.in_flight == 0
    assert ledger.link_lost() == [] and ledger.queued == 0  # a cancelled request is not sent again
