"""Editing one server entry in a JSON client config: nothing else changes, nothing is half-written or lost."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.clients import entries, jsonedit
from provision.clients.document import ordered_equal
from provision.errors import ClientConfigError
from tests.provision.clients.helpers import (
    BOUND,
    NOW,
    SERVER,
    app_saves_before_our_rename,
    listing,
    ours,
    remove,
    write,
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)


json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


other_servers = st.dictionaries(st.text(max_size=12).filter(lambda k: k != SERVER), json_values, max_size=4)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """Any JSON object, with or without an ``mcpServers`` object of other (arbitrary) entries."""
    top = draw(
        st.dictionaries(st.text(max_size=10).filter(lambda k: k != "mcpServers"), json_values, max_size=5)
    )
    if draw(st.booleans()):
        items = list(top.items())
        items.insert(draw(st.integers(0, len(items))), ("mcpServers", draw(other_servers)))
        top = dict(items)
    return top


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(original=configs(), indent=st.sampled_from([2, 4, None]))
def test_writing_our_entry_changes_nothing_else(original: dict[str, Any], indent: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "claude_desktop_config.json"
        path.write_text(json.dumps(original, indent=indent, ensure_ascii=False), encoding="utf-8")

        change = write(path)

        written = json.loads(path.read_text(encoding="utf-8"))
        assert change.action == "added"
        assert ordered_equal(written["mcpServers"][SERVER], ours())
        assert list(written["mcpServers"])[-1] == SERVER
        expected = {**original, "mcpServers": {**original.get("mcpServers", {}), SERVER: ours()}}
        assert ordered_equal(written, expected)


@PROPERTY
@given(original=configs())
def test_remove_undoes_write(original: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.json"
        path.write_text(json.dumps(original, ensure_ascii=False), encoding="utf-8")

        write(path)
        change = remove(path, now=NOW + timedelta(seconds=1))

        assert change.action == "removed"
        # Removing our only entry leaves an empty mcpServers object rather than deleting the key.
        expected = original if "mcpServers" in original else {**original, "mcpServers": {}}
        assert ordered_equal(json.loads(path.read_text(encoding="utf-8")), expected)


INVALID = [
    ('{\n  "mcpServers": {}\n  "x": 1\n}', "is not valid JSON (line 3, column 3: Expecting ','"),
    ("[1, 2]", "does not hold a JSON object at the top level"),
    ('{"mcpServers": []}', '"mcpServers" in claude_desktop_config.json is not a JSON object'),
    ('{"mcpServers": null}', "is not a JSON object"),
    ('{"a": 1, "a": 2}', 'has the key "a" twice'),
    ('{"a": NaN}', "NaN is not a JSON value"),
    ('{\n  // my servers\n  "mcpServers": {}\n}', "(comments are not supported)"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
@pytest.mark.parametrize("operation", [write, remove])
def test_invalid_file_is_refused_and_left_untouched(
    tmp_path: Path, text: str, message: str, operation: Any
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(text, encoding="utf-8")
    before = path.read_bytes()

    with pytest.raises(ClientConfigError) as caught:
        operation(path)

    assert message in str(caught.value)
    assert str(caught.value).endswith("then re-run")
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["claude_desktop_config.json"]  # no backup, no temp file


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(ClientConfigError, match="is not UTF-8 text"):
        write(path)
    assert path.read_bytes() == b'{"name": "caf\xe9"}'


def test_missing_file_and_directory_are_created_without_backup(tmp_path: Path) -> None:
    path = tmp_path / "Application Support" / "Claude" / "claude_desktop_config.json"

    change = write(path)

    assert (change.action, change.backup) == ("added", None)
    assert json.loads(path.read_text()) == {"mcpServers": {SERVER: ours()}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert change.text == path.read_text()


def test_blank_file_counts_as_empty_config(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("  \n")
    assert write(path).action == "added"
    assert json.loads(path.read_text()) == {"mcpServers": {SERVER: ours()}}


def test_second_write_is_unchanged_and_makes_no_backup(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text('{"mcpServers": {}}')
    write(path)
    after_first = path.read_bytes()
    files = listing(tmp_path)

    change = write(path, now=NOW + timedelta(minutes=1))

    assert (change.action, change.backup, change.diff, change.changed) == ("unchanged", None, "", False)
    assert path.read_bytes() == after_first
    assert listing(tmp_path) == files


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "new" / "claude_desktop_config.json"
    change = write(missing, dry_run=True)
    assert (change.action, change.dry_run) == ("added", True)
    assert change.text is not None and SERVER in change.text
    assert not missing.parent.exists()

    existing = tmp_path / "claude_desktop_config.json"
    existing.write_text(
        '{"mcpServers": {"sales-demo": {"command": "/old/mcpctl", "args": ["connect", "demo"]}}}'
    )
    before = existing.read_bytes()
    change = write(existing, dry_run=True)
    assert change.action == "updated"
    assert '"/old/mcpctl"' in change.diff and '"/opt/mcpctl/bin/mcpctl"' in change.diff
    assert existing.read_bytes() == before
    assert listing(tmp_path) == ["claude_desktop_config.json"]
    assert remove(existing, dry_run=True).action == "removed"
    assert existing.read_bytes() == before


def test_foreign_entry_with_our_name_is_refused_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    foreign = {"command": "npx", "args": ["-y", "some-server"]}
    path.write_text(json.dumps({"mcpServers": {SERVER: foreign}}))
    before = path.read_bytes()

    with pytest.raises(ClientConfigError, match="that mcpctl did not write") as refused_write:
        write(path)
    with pytest.raises(ClientConfigError, match="was not written by mcpctl") as refused_removal:
        remove(path)
    assert path.read_bytes() == before
    # The hints name the real options of `mcpctl config claude|gemini` (checked in test_cli.py).
    assert "pass --server-name with another name, or --force to replace it" in str(refused_write.value)
    assert "pass --force to remove it anyway" in str(refused_removal.value)

    assert write(path, force=True).action == "updated"
    assert json.loads(path.read_text())["mcpServers"][SERVER] == ours()


def test_our_entry_is_replaced_in_place(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    old = {"command": "/usr/bin/ssh", "args": ["-T", "u@h", "exec /srv/.venv/bin/python -m mcp_sales"]}
    path.write_text(json.dumps({"mcpServers": {"a": {}, SERVER: old, "z": {}}}))

    change = write(path)

    assert change.action == "updated"
    assert list(json.loads(path.read_text())["mcpServers"]) == ["a", SERVER, "z"]


def test_remove_takes_out_only_our_entry(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps({"mcpServers": {"a": {"command": "a"}, SERVER: ours()}, "x": [1]}))

    change = remove(path)

    assert (change.action, change.entry) == ("removed", ours())
    assert json.loads(path.read_text()) == {"mcpServers": {"a": {"command": "a"}}, "x": [1]}
    assert remove(path).action == "absent"


def test_remove_from_missing_file_creates_nothing(tmp_path: Path) -> None:
    change = remove(tmp_path / "nothing" / "settings.json")
    assert change.action == "absent"
    assert listing(tmp_path) == []


def test_formatting_bom_and_line_endings_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    text = json.dumps({"mcpServers": {}, "ünï": "cödé"}, indent=4, ensure_ascii=False).replace("\n", "\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    write(path)

    raw = path.read_bytes()
    assert raw.startswith(b'\xef\xbb\xbf{\r\n    "mcpServers"')
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert "cödé".encode() in raw


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give files away")
def test_owner_is_kept_when_run_as_root(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    os.chown(path, 4321, 4322)

    change = write(path)

    assert change.backup is not None
    for item in (path, change.backup):
        assert (item.stat().st_uid, item.stat().st_gid) == (4321, 4322)


def test_symlinked_config_is_edited_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "settings.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "settings.json"
    link.symlink_to(real)

    change = write(link)

    assert link.is_symlink()
    assert change.path == real
    assert json.loads(real.read_text())["mcpServers"][SERVER] == ours()


def test_a_save_by_the_app_meanwhile_is_kept_and_our_edit_redone_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    path.chmod(0o600)
    app_version = {"mcpServers": {"theirs": {"command": "npx"}}, "theme": "dark"}
    saved = app_saves_before_our_rename(monkeypatch, path, [json.dumps(app_version)])

    change = write(path)

    assert saved == [json.dumps(app_version)]
    assert change.action == "added"
    assert json.loads(path.read_text()) == {
        "mcpServers": {"theirs": {"command": "npx"}, SERVER: ours()},
        "theme": "dark",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert change.backup is not None and json.loads(change.backup.read_text()) == app_version
    assert [n for n in listing(tmp_path) if n.endswith(".tmp")] == []


def test_a_new_version_that_does_not_parse_is_not_edited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{}")
    app_saves_before_our_rename(monkeypatch, path, ['{"half": '])

    with pytest.raises(ClientConfigError, match=r"settings\.json is not valid JSON"):
        write(path)

    assert path.read_text() == '{"half": '


def _add_entries_at_once(path: Path, names: list[str]) -> list[BaseException | None]:
    """Let one thread per name add its own entry to ``path``, all starting at the same moment."""
    start = threading.Barrier(len(names))
    outcomes: list[BaseException | None] = [None] * len(names)

    def add(index: int) -> None:
        try:
            start.wait(timeout=BOUND)
            jsonedit.set_server(
                path, names[index], ours(f"/opt/{names[index]}/mcpctl"), is_ours=entries.is_mcpctl_entry
            )
        except BaseException as exc:  # reported by the test, not lost in the thread
            outcomes[index] = exc

    threads = [threading.Thread(target=add, args=(i,), daemon=True) for i in range(len(names))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=BOUND)
    assert not any(thread.is_alive() for thread in threads), f"a writer took longer than {BOUND} s"
    return outcomes


def test_concurrent_mcpctl_writers_take_turns_and_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps({"mcpServers": {"theirs": {"command": "npx"}}}))
    path.chmod(0o600)
    names = [f"sales-{n}" for n in range(8)]

    outcomes = _add_entries_at_once(path, names)

    assert outcomes == [None] * len(names)
    servers = json.loads(path.read_text())["mcpServers"]
    assert sorted(servers) == sorted(["theirs", *names])
    assert all(servers[name] == ours(f"/opt/{name}/mcpctl") for name in names)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [n for n in listing(tmp_path) if n.endswith(".tmp")] == []


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_the_files_mode_is_kept_when_it_is_written(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    path.chmod(mode)

    assert write(path).action == "added"
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert remove(path).action == "removed"
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_failed_rename_leaves_the_file_whole_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text('{"mcpServers": {"a": {}}}')
    before = path.read_bytes()

    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied")  # what Windows says while the app holds the file

    monkeypatch.setattr(os, "replace", refuse)

    with pytest.raises(
        ClientConfigError, match=r"cannot write .*\(Permission denied\); check that its folder"
    ):
        write(path)

    assert path.read_bytes() == before
    assert [n for n in listing(tmp_path) if n.endswith(".tmp")] == []
