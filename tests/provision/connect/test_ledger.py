"""The session ledger: requests in flight, the queue, and the handshake replayed to a fresh server."""

from __future__ import annotations

import json
from typing import Any

from provision.connect import jsonrpc
from provision.connect.jsonrpc import parse
from provision.connect.ledger import Handshake, Ledger


def _message(data: dict[str, Any]) -> jsonrpc.Message:
    message = parse(json.dumps({"jsonrpc": "2.0", **data}).encode())
    assert message is not None
    return message


def _decoded(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_ledger_fails_in_flight_requests_resends_the_handshake_and_replays_the_session() -> None:
    ledger = Ledger(queue_limit=8, id_prefix="own-", dropped_message="dropped")
    assert ledger.to_server(_message({"id": 1, "method": "initialize", "params": {"protocolVersion": "v"}}))
    # The link drops before initialize is answered: it is queued again, not failed.
    assert ledger.link_lost() == []
    assert ledger.replay() == []
    resent = ledger.dequeue()
    assert resent is not None and resent.parts[0].method == "initialize"
    ledger.to_server(resent)
    out, own = ledger.from_server(_message({"id": 1, "result": {"protocolVersion": "v"}}))
    assert out is not None and own == []
    assert ledger.handshake_done and ledger.protocol_version == "v"
    ledger.to_server(_message({"method": "notifications/initialized"}))
    ledger.to_server(_message({"id": 2, "method": "logging/setLevel", "params": {"level": "debug"}}))
    ledger.from_server(_message({"id": 2, "result": {}}))
    ledger.to_server(_message({"id": 3, "method": "tools/call", "params": {"name": "slow"}}))
    ledger.from_server(_message({"id": "s1", "method": "roots/list"}))

    told = _decoded(ledger.link_lost())
    assert told[0] == {
        "jsonrpc": "2.0",
        "id": 3,
        "error": {"code": jsonrpc.LINK_DROPPED, "message": "dropped"},
    }
    assert told[1]["method"] == "notifications/cancelled" and told[1]["params"]["requestId"] == "s1"
    assert len(told) == 2

    steps = ledger.replay()
    sent = [json.loads(line) for line, _ in steps]
    assert [m.get("method") for m in sent] == ["initialize", "notifications/initialized", "logging/setLevel"]
    assert sent[0]["params"] == {"protocolVersion": "v"} and sent[0]["id"].startswith("own-")
    assert steps[0][1] == sent[0]["id"] and steps[1][1] is None
    # The proxy's own answers are taken out of what the client sees.
    out, own = ledger.from_server(_message({"id": sent[0]["id"], "result": {}}))
    assert out is None and [part.id for part in own] == [sent[0]["id"]]


def test_ledger_filters_late_answers_and_queued_cancellations() -> None:
    ledger = Ledger(queue_limit=2, id_prefix="own-", dropped_message="dropped")
    ledger.from_server(_message({"id": 7, "method": "sampling/createMessage"}))
    ledger.link_lost()
    # The client's answer to the server that is gone must not reach its successor.
    assert ledger.admit(_message({"id": 7, "result": {}})) is None
    # Nor an answer to a request no server sent.
    assert ledger.admit(_message({"id": 8, "result": {}})) is None
    assert ledger.enqueue(_message({"id": 1, "method": "tools/call"})) == []
    assert ledger.enqueue(_message({"id": 2, "method": "tools/list"})) == []
    full = _decoded(ledger.enqueue(_message({"id": 3, "method": "tools/list"})))
    assert full[0]["id"] == 3 and full[0]["error"]["code"] == jsonrpc.QUEUE_FULL
    # Cancelling a request that still waits removes both.
    cancel = _message({"method": "notifications/cancelled", "params": {"requestId": 1}})
    assert ledger.admit(cancel) is None
    assert ledger.queued == 1
    gave_up = _decoded(ledger.abandon("gone: do this", {"message": "gone", "hint": "do this"}))
    assert [m["id"] for m in gave_up] == [2] and gave_up[0]["error"]["code"] == jsonrpc.GAVE_UP
    assert gave_up[0]["error"]["data"] == {"message": "gone", "hint": "do this"}
    # A cancellation for a request already answered by us is not sent to the new server.
    assert (
        ledger.to_server(_message({"method": "notifications/cancelled", "params": {"requestId": 3}})) is None
    )


def _ledger() -> Ledger:
    return Ledger(queue_limit=8, id_prefix="own-", dropped_message="dropped")


def _handshake(ledger: Ledger, *, level: str | None = "debug") -> None:
    """A handshake-era client's session set-up, answered by the server."""
    ledger.to_server(_message({"id": "init", "method": "initialize", "params": {"protocolVersion": "v1"}}))
    ledger.from_server(_message({"id": "init", "result": {"protocolVersion": "v1"}}))
    ledger.to_server(_message({"method": "notifications/initialized"}))
    if level is not None:
        ledger.to_server(_message({"id": "lvl", "method": "logging/setLevel", "params": {"level": level}}))
        ledger.from_server(_message({"id": "lvl", "result": {}}))


def test_the_handshake_is_recorded_and_replayed_in_the_clients_order_under_our_own_ids() -> None:
    ledger = _ledger()
    _handshake(ledger, level="info")
    ledger.to_server(_message({"id": 5, "method": "logging/setLevel", "params": {"level": "error"}}))
    assert ledger.handshake_done and ledger.protocol_version == "v1"

    steps = ledger.replay()
    sent = [json.loads(line) for line, _ in steps]
    assert [m.get("method") for m in sent] == ["initialize", "notifications/initialized", "logging/setLevel"]
    assert sent[0]["params"] == {"protocolVersion": "v1"}
    assert sent[1] == {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert sent[2]["params"] == {"level": "error"}  # the last level the client set, not the first
    # Both replayed requests carry our prefix, and a fresh one each time; only initialize is awaited.
    assert all(str(m["id"]).startswith("own-") for m in (sent[0], sent[2]))
    assert sent[0]["id"] != sent[2]["id"]
    assert [wait for _, wait in steps] == [sent[0]["id"], None, None]
    again = [json.loads(line) for line, _ in ledger.replay()]
    assert again[0]["id"] not in (sent[0]["id"], sent[2]["id"])


def test_answers_to_replayed_requests_never_reach_the_client() -> None:
    ledger = _ledger()
    _handshake(ledger)
    ledger.link_lost()
    steps = ledger.replay()
    init_id = steps[0][1]
    level_id = json.loads(steps[2][0])["id"]

    out, own = ledger.from_server(_message({"id": init_id, "result": {"protocolVersion": "v1"}}))
    assert out is None and [part.id for part in own] == [init_id]
    out, own = ledger.from_server(_message({"id": level_id, "error": {"code": -32601, "message": "no"}}))
    assert out is None and [part.id for part in own] == [level_id]
    # In a batch, only the client's part goes on.
    ledger.to_server(_message({"id": 9, "method": "tools/list"}))
    batch = parse(
        json.dumps(
            [{"jsonrpc": "2.0", "id": init_id, "result": {}}, {"jsonrpc": "2.0", "id": 9, "result": {}}]
        ).encode()
    )
    assert batch is not None
    out, own = ledger.from_server(batch)
    assert out is not None and json.loads(out) == [{"jsonrpc": "2.0", "id": 9, "result": {}}]
    assert [part.id for part in own] == [init_id]
    assert ledger.in_flight == 0
    # Our own answers do not count as the client's handshake either.
    assert ledger.protocol_version == "v1"


def test_nothing_is_replayed_before_the_handshake_is_answered_or_for_a_modern_client() -> None:
    handshake = Handshake()
    assert handshake.replay(lambda: "own-1") == [] and not handshake.done
    ledger = _ledger()
    meta = {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
    ledger.to_server(_message({"id": 1, "method": "server/discover", "params": meta}))
    ledger.from_server(_message({"id": 1, "result": {"supportedVersions": ["2026-07-28"]}}))
    ledger.to_server(_message({"id": 2, "method": "tools/call", "params": meta}))
    assert ledger.replay() == [] and not ledger.handshake_done
    # An initialize sent but unanswered is resent as the client's own request, not replayed.
    ledger.to_server(_message({"id": 3, "method": "initialize", "params": {}}))
    assert ledger.replay() == []


def test_a_new_initialize_starts_a_new_session() -> None:
    ledger = _ledger()
    _handshake(ledger, level=None)
    ledger.to_server(_message({"id": "again", "method": "initialize", "params": {"protocolVersion": "v2"}}))
    assert not ledger.handshake_done  # until the server answers it
    ledger.from_server(_message({"id": "again", "result": {"protocolVersion": "v2"}}))
    sent = [json.loads(line) for line, _ in ledger.replay()]
    # The old session's notifications/initialized belongs to the old session.
    assert [m["method"] for m in sent] == ["initialize"] and sent[0]["params"] == {"protocolVersion": "v2"}
    assert ledger.protocol_version == "v2"


def test_waiting_messages_keep_their_order_and_a_resent_initialize_goes_first() -> None:
    ledger = _ledger()
    ledger.to_server(_message({"id": 1, "method": "initialize", "params": {}}))
    assert ledger.link_lost() == []  # initialize is resent, not failed
    arriving = [
        _message({"method": "notifications/progress", "params": {"progress": 1}}),
        _message({"id": 2, "method": "tools/list"}),
        _message({"method": "notifications/progress", "params": {"progress": 2}}),
        _message({"method": "notifications/roots/list_changed"}),
        _message({"id": 3, "method": "tools/call"}),
    ]
    for message in arriving:
        assert ledger.enqueue(message) == []
    out = []
    while (message := ledger.dequeue()) is not None:
        line = ledger.to_server(message)
        assert line is not None
        out.append(json.loads(line))
    assert out[0]["method"] == "initialize"
    assert [m["method"] for m in out[1:]] == [
        "notifications/progress",
        "tools/list",
        "notifications/progress",
        "notifications/roots/list_changed",
        "tools/call",
    ]
    assert [m["params"]["progress"] for m in out if m["method"] == "notifications/progress"] == [1, 2]
    assert ledger.in_flight == 3


def test_a_cancelled_queued_request_leaves_the_rest_of_its_batch_in_place() -> None:
    ledger = _ledger()
    first = _message({"method": "notifications/progress", "params": {"progress": 1}})
    batch = parse(
        json.dumps(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "tools/call"},
                {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 2}},
            ]
        ).encode()
    )
    assert batch is not None
    last = _message({"id": 2, "method": "tools/list"})
    for message in (first, batch, last):
        ledger.enqueue(message)
    assert ledger.admit(_message({"method": "notifications/cancelled", "params": {"requestId": 1}})) is None
    order = []
    while (message := ledger.dequeue()) is not None:
        order.append(json.loads(message.raw))
    assert order[0]["params"]["progress"] == 1
    assert order[1] == [{"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 2}}]
    assert order[2]["id"] == 2
