"""JSON-RPC framing: which lines are messages, how lines are cut, and the proxy's own error codes."""

from __future__ import annotations

import mcp_types
import pytest

from provision.connect import jsonrpc
from provision.connect.jsonrpc import Kind, LineSplitter, parse


@pytest.mark.parametrize(
    ("line", "kinds"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', [Kind.REQUEST]),
        (b'{"jsonrpc":"2.0","id":"a","method":"x","params":{}}', [Kind.REQUEST]),
        (b'{"jsonrpc":"2.0","method":"notifications/initialized"}', [Kind.NOTIFICATION]),
        (b'{"jsonrpc":"2.0","id":1,"result":{}}', [Kind.RESPONSE]),
        (b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}', [Kind.RESPONSE]),
        (
            b'[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","method":"n"}]',
            [Kind.RESPONSE, Kind.NOTIFICATION],
        ),
        (b"not json", None),
        (b"", None),
        (b"[]", None),
        (b'{"jsonrpc":"2.0","note":"no message"}', None),
        (b'{"jsonrpc":"1.0","id":1,"result":{}}', None),
        (b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"both"}}', None),
        (b'{"jsonrpc":"2.0","id":true,"method":"x"}', None),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', None),
        (b'{"jsonrpc":"2.0","id":1,"error":"not an object"}', None),
        (b'[{"jsonrpc":"2.0","id":1,"result":{}}, "junk"]', None),
        (b"\xff\xfe", None),
        (b'"a string"', None),
    ],
)
def test_parse_accepts_only_jsonrpc_messages(line: bytes, kinds: list[Kind] | None) -> None:
    message = parse(line)
    if kinds is None:
        assert message is None
    else:
        assert message is not None
        assert [part.kind for part in message.parts] == kinds
        assert message.raw == line


def test_line_splitter_cuts_lines_bounds_them_and_keeps_the_unfinished_rest() -> None:
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\r\nde\nf") == [b"abc", b"de"]
    assert splitter.feed(b"0123456789ABC") == []  # too long: skipped up to its newline
    assert splitter.feed(b"DEF\nok\n") == [b"ok"]
    assert splitter.overflowed == 1
    assert splitter.feed(b"tail") == []
    assert splitter.rest() == b"tail"
    assert splitter.rest() == b""


def test_opaque_wraps_a_line_that_is_not_jsonrpc_untouched() -> None:
    message = jsonrpc.opaque(b"not json")
    assert message.raw == b"not json" and message.parts == () and message.without(set()) == b"not json"


def test_without_drops_parts_of_a_batch_and_keeps_the_line_when_nothing_is_dropped() -> None:
    line = b'[{"jsonrpc":"2.0","id":1,"result":{}}, {"jsonrpc":"2.0","method":"n"}]'
    message = parse(line)
    assert message is not None and message.batch
    assert message.without(set()) == line  # the original bytes, not a re-serialisation
    assert message.without({0}) == b'[{"jsonrpc":"2.0","method":"n"}]'
    assert message.without({0, 1}) is None
    single = parse(b'{"jsonrpc":"2.0","id":1,"result":{}}')
    assert single is not None and single.without({0}) is None


def test_ids_1_and_the_string_1_are_different_keys() -> None:
    assert jsonrpc.id_key(1) != jsonrpc.id_key("1")
    keys = [jsonrpc.id_key(v) for v in (1, "1", "i1", True, None, "null", 1.0, [1], {"a": 1}, "")]
    assert len(set(keys)) == len(keys)  # every id or token kept apart from every other
    assert jsonrpc.id_key({"b": 1, "a": 2}) == jsonrpc.id_key({"a": 2, "b": 1})
    assert jsonrpc.valid_id("a") and jsonrpc.valid_id(7)
    assert not jsonrpc.valid_id(True) and not jsonrpc.valid_id(None) and not jsonrpc.valid_id(1.5)


def test_the_proxys_error_codes_are_its_own() -> None:
    """A client must tell the proxy's answers from its SDK's own verdicts (timeout, closed)."""
    sdk = {
        value
        for name, value in vars(mcp_types).items()
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool) and value < 0
    }
    assert {mcp_types.CONNECTION_CLOSED, mcp_types.REQUEST_TIMEOUT} <= sdk
    assert {jsonrpc.LINK_DROPPED, jsonrpc.GAVE_UP, jsonrpc.QUEUE_FULL} == jsonrpc.PROXY_ERRORS
    assert len(jsonrpc.PROXY_ERRORS) == 3
    assert not jsonrpc.PROXY_ERRORS & sdk
    # JSON-RPC's implementation-defined server errors, less what MCP reserves and what it retired.
    for code in jsonrpc.PROXY_ERRORS:
        assert -32019 <= code <= -32000 and code != -32002
