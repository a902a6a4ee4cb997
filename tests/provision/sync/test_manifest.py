"""Manifests as values: merging local ones, reading the host's listing and the record sync keeps there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.errors import McpctlError
from provision.sync.helper import temp_name
from provision.sync.manifest import (
    NS,
    SKIP_FIFO,
    FileEntry,
    Manifest,
    Skipped,
    manifest_from_listing,
    merge,
    recorded_rows,
)
from provision.sync.rules import literal_pattern
from provision.sync.scan import local_manifest
from provision.sync.sources import SyncSource
from tests.provision.sync.helpers import ROOT, T0, write


def test_merge_refuses_two_local_files_for_one_remote_path(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "sales.csv", "1")
    b = write(tmp_path / "b" / "sales.csv", "2")
    sources = [SyncSource(p.parent, "/srv/app/data", include=(literal_pattern(p.name),)) for p in (a, b)]
    with pytest.raises(McpctlError, match="both be sent"):
        merge([local_manifest(s) for s in sources])


def test_remote_listing_trusts_recorded_hashes_only_while_size_and_mtime_match() -> None:
    listing = {
        "files": [
            ["a.py", 10, T0 + NS // 2, 0o644],
            ["b.py", 10, T0 + 9 * NS, 0o644],
            ["dir with space/é 'q'.sh", 5, T0, 0o755],
        ],
        "temps": [f"pkg/{temp_name('x.py', '0123456789ab')}"],
        "manifest": json.dumps(
            {
                "version": 1,
                "files": {"a.py": [10, T0 // NS, "sa", 0o644, 7], "b.py": [10, T0 // NS, "sb", 0o644, 8]},
            }
        ),
    }
    manifest = manifest_from_listing(ROOT, listing)
    assert manifest.files["a.py"] == FileEntry(10, T0 + NS // 2, "sa", 0o644, None, 7)
    assert manifest.files["b.py"].sha256 is None  # changed on the host since we wrote it
    assert manifest.files["dir with space/é 'q'.sh"].mode == 0o755
    assert manifest.temps == (f"pkg/{temp_name('x.py', '0123456789ab')}",)
    assert manifest_from_listing(ROOT, {"files": [], "temps": [], "manifest": None}) == Manifest(ROOT, {})
    assert manifest_from_listing(ROOT, {"files": [], "manifest": "not json"}).recorded == {}


def test_the_record_sync_writes_is_the_record_a_listing_reads() -> None:
    sent = {
        "b.py": FileEntry(3, T0 + NS // 2, "sb", 0o755, Path("/src/b.py"), T0 + NS // 2),
        "a.py": FileEntry(10, T0, "sa", 0o644, None, T0 + 7),
    }
    rows = recorded_rows(sent)
    assert rows == {
        "version": 1,
        "files": {
            "a.py": [10, T0 // NS, "sa", 0o644, T0 + 7],
            "b.py": [3, T0 // NS, "sb", 0o755, T0 + NS // 2],
        },
    }
    assert list(rows["files"]) == ["a.py", "b.py"]
    listing = {"files": [["a.py", 10, T0, 0o644], ["b.py", 3, T0, 0o755]], "manifest": json.dumps(rows)}
    manifest = manifest_from_listing(ROOT, listing)
    assert manifest.files["a.py"] == FileEntry(10, T0, "sa", 0o644, None, T0 + 7)
    assert manifest.files["b.py"] == FileEntry(3, T0, "sb", 0o755, None, T0 + NS // 2)
    assert (
        manifest_from_listing(ROOT, {"files": [], "manifest": json.dumps({**rows, "version": 2})}).recorded
        == {}
    )


def test_merge_keys_nested_roots_relative_to_the_outermost() -> None:
    code = Manifest("/srv/app", {"a.py": FileEntry(1, T0)}, skipped=(Skipped("z", SKIP_FIFO),))
    data = Manifest("/srv/app/data/extra", {"x.csv": FileEntry(2, T0)}, skipped=(Skipped("p", SKIP_FIFO),))
    merged = merge([data, code])
    assert merged.root == "/srv/app"
    assert list(merged.files) == ["a.py", "data/extra/x.csv"]
    assert merged.skipped == (Skipped("data/extra/p", SKIP_FIFO), Skipped("z", SKIP_FIFO))
    with pytest.raises(ValueError, match="not below"):
        merge([code, Manifest("/srv/other", {})])
