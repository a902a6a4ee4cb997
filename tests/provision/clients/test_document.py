"""A client config's JSON: strict parsing and comparison, and what a read remembers for the rewrite."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from provision.clients.document import Document, ordered_equal, parse_config, read_document, render
from provision.errors import ClientConfigError


def test_ordered_equal_is_strict_about_types_and_order() -> None:
    assert ordered_equal({"a": 1, "b": [1, {"c": None}]}, {"a": 1, "b": [1, {"c": None}]})
    assert not ordered_equal({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not ordered_equal({"a": 1}, {"a": 1.0})
    assert not ordered_equal([True], [1])


def test_a_parse_error_says_what_is_wrong_and_its_hint_what_to_do() -> None:
    with pytest.raises(ClientConfigError) as caught:
        parse_config('{"a": 1, "a": 2}', name="settings.json")
    assert caught.value.message == 'settings.json has the key "a" twice in one object'
    assert caught.value.hint == "remove one of them, then re-run"
    assert str(caught.value) == f"{caught.value.message}; {caught.value.hint}"


def test_reading_keeps_indent_line_endings_bom_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    text = json.dumps({"mcpServers": {}}, indent="\t").replace("\n", "\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    path.chmod(0o640)

    doc = read_document(path)

    assert (doc.indent, doc.newline, doc.bom, doc.mode) == ("\t", "\r\n", True, 0o640)
    assert doc.owner == (path.stat().st_uid, path.stat().st_gid)
    assert doc.text == text
    new = render(doc.data, indent=doc.indent, newline=doc.newline)
    assert doc.encode(new) == path.read_bytes() + b"\r\n"  # the rewrite ends with a newline
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_missing_file_reads_as_a_new_empty_document(tmp_path: Path) -> None:
    assert read_document(tmp_path / "nothing.json") == Document(tmp_path / "nothing.json", None, {})
