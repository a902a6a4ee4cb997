"""Backups made before an edit: same content, mode and owner; unique names; the last five kept."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

from provision.clients.backups import prune_backups
from tests.provision.clients.helpers import (
    NOW,
    SERVER,
    listing,
    ours,
    write,
)


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


def test_pruning_keeps_the_newest_and_ignores_other_files(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    names = [
        "settings.json.bak-20260101T000000",
        "settings.json.bak-20260101T000000-1",
        "settings.json.bak-20260102T000000",
        "settings.json.bak-notes",
        "other.json.bak-20250101T000000",
    ]
    for name in names:
        (tmp_path / name).write_text("{}")

    prune_backups(path, keep=2)

    assert listing(tmp_path) == sorted(names[1:])
