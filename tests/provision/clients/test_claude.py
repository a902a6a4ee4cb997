"""Client config files: locations, entries, and the careful merge/backup/atomic write around them."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.clients import claude
from provision.clients import configfile as clientconfig
from provision.clients.claude import EntryInputs, LocalSystem
from provision.clients.configfile import ordered_equal
from provision.errors import ClientConfigError, ProfileError

NOW = datetime(2026, 11, 21, 21, 30, 0)
SERVER = "sales-demo"
BOUND = 60.0  # seconds any writer may take: an upper bound, never an expectation
SECRET_KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAnotreallyakey\n"


def posix_system(tmp_path: Path, **env: str) -> LocalSystem:
    return LocalSystem("linux", env, tmp_path / "home", tmp_path / "venv" / "bin" / "python")


def tool_system(tmp_path: Path, **env: str) -> LocalSystem:
    """A POSIX system with an mcpctl script beside its interpreter and an ssh on its PATH."""
    system = posix_system(tmp_path, PATH=str(tmp_path / "bin"), **env)
    for program in (system.executable.parent / "mcpctl", tmp_path / "bin" / "ssh"):
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    return system


def inputs(tmp_path: Path, **overrides: Any) -> EntryInputs:
    values: dict[str, Any] = {
        "name": "demo",
        "host": "203.0.113.7",
        "port": 2222,
        "user": "ubuntu",
        "remote_dir": "/home/ubuntu/mcpctl/demo",
        "known_hosts": tmp_path / "state" / "known_hosts" / "demo",
        "identity_file": tmp_path / "keys" / "demo_ed25519",
        "data": (str(tmp_path / "data" / "sales.csv"),),
    }
    values.update(overrides)
    return EntryInputs(**values)


def ours(command: str = "/opt/mcpctl/bin/mcpctl") -> dict[str, Any]:
    return {"command": command, "args": ["connect", "demo"]}


def write(path: Path, entry: dict[str, Any] | None = None, **kwargs: Any) -> clientconfig.ConfigChange:
    kwargs.setdefault("now", NOW)
    return clientconfig.set_server(path, SERVER, entry or ours(), is_ours=claude.is_mcpctl_entry, **kwargs)


def remove(path: Path, **kwargs: Any) -> clientconfig.ConfigChange:
    kwargs.setdefault("now", NOW)
    return clientconfig.remove_server(path, SERVER, is_ours=claude.is_mcpctl_entry, **kwargs)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------------------ properties of the merge

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


def test_ordered_equal_is_strict_about_types_and_order() -> None:
    assert ordered_equal({"a": 1, "b": [1, {"c": None}]}, {"a": 1, "b": [1, {"c": None}]})
    assert not ordered_equal({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not ordered_equal({"a": 1}, {"a": 1.0})
    assert not ordered_equal([True], [1])


# ------------------------------------------------------------------------------------------ file safety

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


def test_backup_holds_previous_content_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text('{"mcpServers": {"other": {"command": "x"}}, "theme": "dark"}')
    path.chmod(0o640)
    before = path.read_bytes()

    change = write(path)

    assert change.backup == tmp_path / "claude_desktop_config.json.bak-20261121T213000"
    assert change.backup.read_bytes() == before
    assert stat.S_IMODE(change.backup.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert listing(tmp_path) == [
        "claude_desktop_config.json",
        "claude_desktop_config.json.bak-20261121T213000",
    ]


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


def test_only_the_last_five_backups_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    (tmp_path / "claude_desktop_config.json.bak-notes.txt").write_text("mine")  # not a backup of ours
    for n in range(8):
        write(path, ours(f"/opt/v{n}/mcpctl"), now=NOW + timedelta(hours=n))

    backups = [name for name in listing(tmp_path) if "bak-2026" in name]
    assert backups == [f"claude_desktop_config.json.bak-20261122T{n:02d}3000" for n in range(5)]
    assert (tmp_path / "claude_desktop_config.json.bak-notes.txt").read_text() == "mine"


def test_backups_in_the_same_second_do_not_overwrite_each_other(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    first = write(path, ours("/a/mcpctl"))
    second = write(path, ours("/b/mcpctl"))

    assert first.backup is not None and first.backup.name.endswith("213000")
    assert second.backup is not None and second.backup.name.endswith("213000-1")
    assert json.loads(second.backup.read_text())["mcpServers"][SERVER]["command"] == "/a/mcpctl"


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


def _app_saves_before_our_rename(
    monkeypatch: pytest.MonkeyPatch, path: Path, versions: list[str]
) -> list[str]:
    """Make the running app save ``path`` again between our read and our rename, once per version.

    The save happens when our temp file is created, i.e. after the file was read and backed up and
    before it is replaced. Returns the list of versions saved so far.
    """
    real_mkstemp = tempfile.mkstemp
    saved: list[str] = []

    def app_saves(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if len(saved) < len(versions):
            saved.append(versions[len(saved)])
            path.write_text(saved[-1])  # in place, as an editor or the app does: the mode stays
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", app_saves)
    return saved


def test_a_save_by_the_app_meanwhile_is_kept_and_our_edit_redone_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    path.chmod(0o600)
    app_version = {"mcpServers": {"theirs": {"command": "npx"}}, "theme": "dark"}
    saved = _app_saves_before_our_rename(monkeypatch, path, [json.dumps(app_version)])

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


def test_a_file_that_keeps_changing_is_left_as_the_app_saved_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    versions = ['{"written": "by the app"}', '{"written": "by the app, again"}']
    _app_saves_before_our_rename(monkeypatch, path, versions)

    with pytest.raises(ClientConfigError) as caught:
        claude.configure_client(inputs(tmp_path), path=path, system=tool_system(tmp_path), now=NOW)

    message = str(caught.value)
    # Either writer may have been the other one: neither is blamed alone, and the way out is named.
    assert "changed while mcpctl updated it (another mcpctl run or Claude Desktop saved it)" in message
    assert "run the command again" in message
    assert path.read_text() == versions[-1]
    assert [n for n in listing(tmp_path) if n.endswith(".tmp")] == []


def test_a_new_version_that_does_not_parse_is_not_edited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{}")
    _app_saves_before_our_rename(monkeypatch, path, ['{"half": '])

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
            clientconfig.set_server(
                path, names[index], ours(f"/opt/{names[index]}/mcpctl"), is_ours=claude.is_mcpctl_entry
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


def test_concurrent_mcpctl_processes_lose_no_entry(mcpctl_home: Path, tmp_path: Path) -> None:
    """Real `mcpctl config claude` processes started together on one file: every entry arrives."""
    from provision.profiles import Profile, save_profile

    names = [f"p{n}" for n in range(4)]
    for name in names:
        save_profile(Profile(name=name, host="203.0.113.7", user="ubuntu"))
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    mcpctl = Path(sys.executable).parent / "mcpctl"
    env = {**os.environ, "MCPCTL_HOME": str(mcpctl_home)}
    processes = [
        subprocess.Popen(
            [str(mcpctl), "config", "claude", name, "--config-path", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    results = [(p.wait(timeout=BOUND), *p.communicate(timeout=BOUND)) for p in processes]

    assert [status for status, _, _ in results] == [0] * len(names), results
    assert sorted(json.loads(path.read_text())["mcpServers"]) == [f"sales-{name}" for name in names]


@pytest.mark.parametrize("client", ["claude", "gemini"])
def test_a_read_only_config_is_refused_and_left_untouched(tmp_path: Path, client: claude.Client) -> None:
    path = tmp_path / ("claude_desktop_config.json" if client == "claude" else "settings.json")
    path.write_text(json.dumps({"mcpServers": {SERVER: ours()}, "theme": "dark"}))
    path.chmod(0o444)
    before = path.read_bytes()
    system = tool_system(tmp_path)

    entry = inputs(tmp_path)
    for attempt in (
        lambda: claude.configure_client(entry, client=client, path=path, style="ssh", system=system),
        lambda: claude.configure_client(entry, client=client, path=path, system=system, dry_run=True),
        lambda: claude.remove_client_entry("demo", client=client, path=path, system=system),
    ):
        with pytest.raises(ClientConfigError) as caught:
            attempt()
        assert caught.value.exit_code == 6
        assert f"{path} is read-only (mode 0444)" in str(caught.value)
        assert f"chmod u+w {path}" in str(caught.value)

    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert listing(tmp_path) == sorted([path.name, "bin", "venv"])  # no backup, no temp file


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


# ------------------------------------------------------------------------------------------- locations


def test_claude_location_on_macos(tmp_path: Path) -> None:
    system = LocalSystem("darwin", {}, tmp_path, Path("/usr/bin/python3"))
    expected = tmp_path / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
    assert claude.config_path("claude", system) == expected
    assert claude.claude_log_files("sales-demo", system) == [
        tmp_path / "Library" / "Logs" / "Claude" / "mcp-server-sales-demo.log"
    ]


def windows(tmp_path: Path, **env: str) -> LocalSystem:
    return LocalSystem("win32", env, tmp_path / "User", tmp_path / "venv" / "Scripts" / "python.exe")


def test_claude_location_on_windows_classic(tmp_path: Path) -> None:
    appdata, local = tmp_path / "Roaming", tmp_path / "Local"
    (local / "Packages" / "Microsoft.Something_123").mkdir(parents=True)
    system = windows(tmp_path, APPDATA=str(appdata), LOCALAPPDATA=str(local))
    assert claude.config_path("claude", system) == appdata / "Claude" / "claude_desktop_config.json"


def test_windows_env_names_are_case_insensitive_and_have_fallbacks(tmp_path: Path) -> None:
    assert claude.config_path("claude", windows(tmp_path, AppData=str(tmp_path / "R"))) == (
        tmp_path / "R" / "Claude" / "claude_desktop_config.json"
    )
    assert claude.config_path("claude", windows(tmp_path)) == (
        tmp_path / "User" / "AppData" / "Roaming" / "Claude" / "claude_desktop_config.json"
    )


def test_claude_location_on_windows_prefers_msix_package(tmp_path: Path) -> None:
    local = tmp_path / "Local"
    (local / "Packages" / "Claude_pzs8sxrjxfjjc").mkdir(parents=True)
    (tmp_path / "Roaming" / "Claude").mkdir(parents=True)
    (tmp_path / "Roaming" / "Claude" / "claude_desktop_config.json").write_text("{}")  # stale classic file
    system = windows(tmp_path, APPDATA=str(tmp_path / "Roaming"), LOCALAPPDATA=str(local))

    expected = local / "Packages" / "Claude_pzs8sxrjxfjjc" / "LocalCache" / "Roaming" / "Claude"
    assert claude.config_path("claude", system) == expected / "claude_desktop_config.json"
    assert claude.claude_log_files("s", system)[0] == expected / "logs" / "mcp-server-s.log"


def test_several_msix_packages_pick_the_one_with_a_config_or_refuse(tmp_path: Path) -> None:
    packages = tmp_path / "Local" / "Packages"
    for name in ("Claude_old", "Claude_new"):
        (packages / name / "LocalCache" / "Roaming" / "Claude").mkdir(parents=True)
    system = windows(tmp_path, LOCALAPPDATA=str(tmp_path / "Local"))

    with pytest.raises(ClientConfigError, match=r"several Claude packages.*--config-path"):
        claude.config_path("claude", system)

    in_use = packages / "Claude_new" / "LocalCache" / "Roaming" / "Claude" / "claude_desktop_config.json"
    in_use.write_text("{}")
    assert claude.config_path("claude", system) == in_use


def test_claude_location_on_linux(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    assert claude.config_path("claude", posix_system(tmp_path, XDG_CONFIG_HOME=str(xdg))) == (
        xdg / "Claude" / "claude_desktop_config.json"
    )
    # A relative XDG_CONFIG_HOME is invalid by the spec and ignored.
    assert claude.config_path("claude", posix_system(tmp_path, XDG_CONFIG_HOME="rel")) == (
        tmp_path / "home" / ".config" / "Claude" / "claude_desktop_config.json"
    )


def test_unknown_client_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError, match="unknown client 'cursor'"):
        claude.config_path("cursor", posix_system(tmp_path))  # type: ignore[arg-type]


@pytest.mark.parametrize("platform", ["darwin", "win32", "linux"])
def test_gemini_location(tmp_path: Path, platform: str) -> None:
    system = LocalSystem(platform, {}, tmp_path, Path("/x/python"))
    assert claude.config_path("gemini", system) == tmp_path / ".gemini" / "settings.json"


# --------------------------------------------------------------------------------------------- entries


def test_ssh_entry_args_exactly(tmp_path: Path) -> None:
    entry = claude.ssh_entry(inputs(tmp_path), posix_system(tmp_path), ssh_path="/usr/bin/ssh")

    assert entry == {
        "command": "/usr/bin/ssh",
        "args": [
            "-T",
            "-F", "none",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={tmp_path}/state/known_hosts/demo",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
            "-o", "ConnectTimeout=10",
            "-i", f"{tmp_path}/keys/demo_ed25519",
            "-p", "2222",
            "ubuntu@203.0.113.7",
            "exec /home/ubuntu/mcpctl/demo/.venv/bin/python -m mcp_sales"
            " --data /home/ubuntu/mcpctl/demo/data/sales.csv",
        ],
    }  # fmt: skip


def test_ssh_entry_options_follow_the_profile(tmp_path: Path) -> None:
    entry = claude.ssh_entry(
        inputs(
            tmp_path,
            identity_file=None,
            use_agent=True,
            use_ssh_config=True,
            host_key_alias="mcpctl-demo",
            keepalive_interval=7.5,
            connect_timeout=3,
        ),
        posix_system(tmp_path),
        ssh_path="/usr/bin/ssh",
    )
    args = entry["args"]
    assert "-F" not in args and "-i" not in args and "IdentitiesOnly=yes" not in args
    assert {"HostKeyAlias=mcpctl-demo", "ServerAliveInterval=8", "ConnectTimeout=3"} <= set(args)


def test_remote_command_is_quoted_exactly_once(tmp_path: Path) -> None:
    remote_dir = "/srv/sales team/it's $HOME"
    argv = claude.server_command(
        remote_dir,
        [str(tmp_path / "Q4 sales;rm -rf.csv")],
        {"operation": "CITY NAME"},
        ["--log-level", "debug"],
    )
    assert argv == [
        f"{remote_dir}/.venv/bin/python",
        "-m",
        "mcp_sales",
        "--data",
        f"{remote_dir}/data/Q4 sales;rm -rf.csv",
        "--column",
        "operation=CITY NAME",
        "--log-level",
        "debug",
    ]
    entry = claude.ssh_entry(
        inputs(tmp_path, remote_dir=remote_dir, data=(str(tmp_path / "Q4 sales;rm -rf.csv"),),
               columns=(("operation", "CITY NAME"),), server_args=("--log-level", "debug")),
        posix_system(tmp_path),
        ssh_path="/usr/bin/ssh",
    )  # fmt: skip
    # What the remote shell does with the one line ssh sends it:
    assert shlex.split(entry["args"][-1]) == ["exec", *argv]


def test_server_command_rejects_what_the_server_cannot_take() -> None:
    with pytest.raises(ProfileError, match="not an absolute path"):
        claude.server_command("srv/demo", [], {}, [])
    with pytest.raises(ProfileError, match="reads one data file"):
        claude.server_command("/srv/demo", ["a.csv", "b.csv"], {}, [])
    assert (
        claude.server_command("/srv/demo", [r"C:\Users\me\sales.csv"], {}, [])[-1]
        == "/srv/demo/data/sales.csv"
    )


def test_nul_in_server_args_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="NUL byte"):
        claude.ssh_entry(
            inputs(tmp_path, server_args=("a\0b",)), posix_system(tmp_path), ssh_path="/usr/bin/ssh"
        )


def test_ssh_option_paths_with_spaces_and_percent_are_quoted_for_ssh(tmp_path: Path) -> None:
    odd = tmp_path / "John Smith" / "100%"
    entry = claude.ssh_entry(
        inputs(tmp_path, known_hosts=odd / "known_hosts", identity_file=odd / "id"),
        posix_system(tmp_path),
        ssh_path="/usr/bin/ssh",
    )
    assert f'UserKnownHostsFile="{tmp_path}/John Smith/100%%/known_hosts"' in entry["args"]
    assert f'IdentityFile="{tmp_path}/John Smith/100%%/id"' in entry["args"]
    with pytest.raises(ProfileError, match="cannot be passed to ssh"):
        claude.ssh_entry(
            inputs(tmp_path, known_hosts=tmp_path / 'a"b'), posix_system(tmp_path), ssh_path="ssh"
        )


def test_windows_ssh_entry_has_programdata_and_system_ssh(tmp_path: Path) -> None:
    entry = claude.ssh_entry(inputs(tmp_path), windows(tmp_path))
    assert entry["command"] == "C:\\Windows\\System32\\OpenSSH\\ssh.exe"
    assert entry["env"] == {"PROGRAMDATA": "C:\\ProgramData"}
    assert claude.find_ssh(windows(tmp_path, SYSTEMROOT="D:\\Win")) == "D:\\Win\\System32\\OpenSSH\\ssh.exe"


def test_ssh_entry_needs_a_host(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="mcpctl provision demo"):
        claude.ssh_entry(inputs(tmp_path, host=None), posix_system(tmp_path), ssh_path="/usr/bin/ssh")


def test_proxy_entry_uses_the_mcpctl_beside_the_interpreter(tmp_path: Path) -> None:
    system = posix_system(tmp_path, MCPCTL_HOME=str(tmp_path / "mh"), PATH="")
    system.executable.parent.mkdir(parents=True)
    (system.executable.parent / "mcpctl").write_text("#!/bin/sh\n")

    entry = claude.proxy_entry("demo", system)

    assert entry == {
        "command": str(tmp_path / "venv" / "bin" / "mcpctl"),
        "args": ["connect", "demo"],
        "env": {"MCPCTL_HOME": str(tmp_path / "mh")},
    }


def test_proxy_entry_passes_on_absolute_location_variables_only(tmp_path: Path) -> None:
    system = posix_system(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_STATE_HOME="relative/state")
    entry = claude.proxy_entry("demo", system, mcpctl_path="/opt/bin/mcpctl")
    assert entry["env"] == {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}


def test_proxy_entry_falls_back_to_path_then_explains(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "mcpctl"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert claude.proxy_entry("demo", posix_system(tmp_path, PATH=str(bindir))) == {
        "command": str(script),
        "args": ["connect", "demo"],
    }
    with pytest.raises(ClientConfigError, match="cannot find the mcpctl executable"):
        claude.proxy_entry("demo", posix_system(tmp_path, PATH=str(tmp_path / "empty")))


def test_no_key_material_or_secrets_in_the_json(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "demo_ed25519"
    key.parent.mkdir()
    key.write_text(SECRET_KEY_TEXT)
    system = tool_system(tmp_path, AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI-secret")
    path = tmp_path / "claude_desktop_config.json"

    for style in ("ssh", "proxy"):
        claude.configure_client(
            inputs(tmp_path, identity_file=key), style=style, path=path, system=system, now=NOW
        )
        text = path.read_text()
        assert str(key) in text or style == "proxy"
        assert "PRIVATE KEY" not in text and "b3BlbnNzaC1rZXkt" not in text
        assert "wJalrXUtnFEMI" not in text


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"command": "/u/bin/mcpctl", "args": ["connect", "x"]}, True),
        ({"command": "C:\\Users\\me\\.venv\\Scripts\\MCPCTL.EXE", "args": ["connect", "x"]}, True),
        ({"command": "C:\\Windows\\ssh.exe", "args": ["h", "exec /r/.venv/bin/python -m mcp_sales"]}, True),
        ({"command": "/usr/bin/ssh", "args": ["h", "exec other-server"]}, False),
        ({"command": "/u/bin/mcpctl", "args": ["status"]}, False),
        ({"command": "npx", "args": ["connect"]}, False),
        ({"url": "https://example.com/mcp"}, False),
        ("not an object", False),
    ],
)  # fmt: skip
def test_is_mcpctl_entry(entry: object, expected: bool) -> None:
    assert claude.is_mcpctl_entry(entry) is expected


def test_entry_inputs_from_a_real_profile(mcpctl_home: Path, tmp_path: Path) -> None:
    from provision.profiles import Profile, known_hosts_path

    profile = Profile(
        name="demo",
        host="example.org",
        user="ubuntu",
        remote_dir="/srv/demo",
        identity_file=tmp_path / "id",
        data=[tmp_path / "sales.csv"],
        columns={"operation": "CITY"},
        server_args=["--log-level", "DEBUG"],
    )
    got = EntryInputs.from_profile(profile)
    assert got.known_hosts == known_hosts_path("demo")
    assert (got.host, got.port, got.data, got.columns) == (
        "example.org",
        22,
        (str(tmp_path / "sales.csv"),),
        (("operation", "CITY"),),
    )


# ------------------------------------------------------------------------------------ whole operations


def test_configure_then_remove_for_both_clients(tmp_path: Path) -> None:
    system = tool_system(tmp_path)
    for client in ("claude", "gemini"):
        change = claude.configure_client(inputs(tmp_path), client=client, system=system, now=NOW)
        assert change.action == "added"
        assert change.path == claude.config_path(client, system)
        assert claude.configure_client(inputs(tmp_path), client=client, system=system).action == "unchanged"
        updated = claude.configure_client(
            inputs(tmp_path), client=client, style="ssh", system=system, now=NOW
        )
        assert updated.action == "updated" and updated.backup is not None
        removed = claude.remove_client_entry("demo", client=client, system=system, now=NOW)
        assert (removed.action, json.loads(change.path.read_text())) == ("removed", {"mcpServers": {}})


def test_server_name_override_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    change = claude.configure_client(
        inputs(tmp_path), server_name="my sales", path=path, system=tool_system(tmp_path), style="ssh"
    )
    assert list(json.loads(path.read_text())["mcpServers"]) == ["my sales"] == [change.server_name]
    with pytest.raises(ClientConfigError, match="not usable as a server name"):
        claude.remove_client_entry("demo", server_name=" ", path=path)


# ---------------------------------------------------------------------------------- against a real sshd


def test_ssh_entry_runs_as_written_against_a_real_sshd(sshd: Any, tmp_path: Path) -> None:
    """Run command + args from the written JSON; the remote 'python' reports the argv it received."""
    odd = tmp_path / "my keys 100%"
    odd.mkdir()
    known_hosts = odd / "known_hosts"
    shutil.copy(sshd.known_hosts, known_hosts)
    identity = odd / "id"
    shutil.copy2(sshd.client_key, identity)
    identity.chmod(0o600)
    remote_dir = tmp_path / "remote dir" / "it's"
    fake_python = remote_dir / ".venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    report = "import json, sys; print(json.dumps(sys.argv[1:]))"
    fake_python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(report)} "$@"\n')
    fake_python.chmod(0o755)
    entry_inputs = inputs(
        tmp_path,
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        remote_dir=str(remote_dir),
        known_hosts=known_hosts,
        identity_file=identity,
        data=("/local/sales Q4.csv",),
        columns=(("operation", "CITY NAME"),),
    )
    path = tmp_path / "claude_desktop_config.json"
    claude.configure_client(entry_inputs, style="ssh", path=path, system=LocalSystem.current())
    entry = json.loads(path.read_text())["mcpServers"]["sales-demo"]

    done = subprocess.run(
        [entry["command"], *entry["args"]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    expected = claude.server_command(str(remote_dir), ["sales Q4.csv"], {"operation": "CITY NAME"}, [])
    assert json.loads(done.stdout) == expected[1:]
