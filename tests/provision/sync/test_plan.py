"""The plan (pure): what a sync sends, deletes, cleans up and leaves, compared as data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provision.sync.helper import temp_name
from provision.sync.manifest import NS, SKIP_FIFO, SKIP_OUTSIDE, FileEntry, Manifest, Skipped
from provision.sync.plan import SyncPlan, Upload, is_safe_path, plan
from provision.sync.rules import Scope
from tests.provision.sync.helpers import LOCAL, ROOT, T0, entry, local_of, remote_of


def test_plan_sorts_files_into_new_changed_and_unchanged() -> None:
    local = local_of(
        {
            "new.py": entry(),
            "grown.py": entry(size=11),
            "same_sha.py": entry(mtime_ns=T0 + 5 * NS, sha="a"),
            "other_sha.py": entry(sha="b"),
            "touched.py": entry(mtime_ns=T0 + 5 * NS),
            "quick_same.py": entry(),
            "chmod.sh": entry(mode=0o755),
        }
    )
    remote = remote_of(
        {
            "grown.py": entry(),
            "same_sha.py": entry(sha="a"),
            "other_sha.py": entry(sha="c"),
            "touched.py": entry(),
            "quick_same.py": entry(),
            "chmod.sh": entry(),
        }
    )
    result = plan(local, remote, delete=False)
    assert {(u.path, u.reason) for u in result.uploads} == {
        ("new.py", "new"),
        ("grown.py", "size"),
        ("other_sha.py", "content"),
        ("touched.py", "mtime"),
        ("chmod.sh", "mode"),
    }
    assert set(result.unchanged) == {"same_sha.py", "quick_same.py"}
    assert result.bytes_to_send == 10 * 4 + 11
    assert not result.up_to_date
    new = next(u for u in result.uploads if u.path == "new.py")
    assert new == Upload("new.py", 10, "new", LOCAL / "new.py", T0, 0o644, None)


def test_plan_trusts_the_recorded_origin_mtime_to_the_nanosecond() -> None:
    # The host's copy was sent from the local file at mtime T0 + 5 (its own mtime is whole seconds).
    remote = remote_of(
        {"a": FileEntry(10, T0, "s", 0o644, None, T0 + 5), "b": FileEntry(10, T0, "s", 0o644, None, T0 + 5)}
    )
    local = local_of({"a": entry(mtime_ns=T0 + 5), "b": entry(mtime_ns=T0 + 6)})
    result = plan(local, remote, delete=False)
    assert [(u.path, u.reason) for u in result.uploads] == [("b", "mtime")]
    assert result.unchanged == ("a",)


def test_plan_compares_mtimes_at_second_granularity() -> None:
    # SFTP sets whole seconds: the remote copy of a file with mtime x.999999999 has mtime x.
    local = local_of({"a": entry(mtime_ns=T0 + NS - 1), "b": entry(mtime_ns=T0 + NS)})
    remote = remote_of({"a": entry(mtime_ns=T0), "b": entry(mtime_ns=T0)})
    result = plan(local, remote, delete=False)
    assert [u.path for u in result.uploads] == ["b"]
    assert result.unchanged == ("a",)


def test_plan_deletes_only_when_asked() -> None:
    local = local_of({"keep.py": entry()})
    remote = remote_of({"keep.py": entry(), "gone.py": entry()})
    assert plan(local, remote, delete=False).deletes == ()
    assert plan(local, remote, delete=False).up_to_date
    assert plan(local, remote, delete=True).deletes == ("gone.py",)


def test_plan_never_deletes_outside_the_root_or_what_it_does_not_manage() -> None:
    scopes = (
        Scope("", ("/pkg/",), ("__pycache__/", "*.pyc", "/pkg/local.cfg")),
        Scope("data", ("/x.csv",), ()),
    )
    local = local_of({"pkg/a.py": entry()}, scopes)
    remote_only = [
        "../etc/passwd",
        "/etc/passwd",
        "pkg/../../etc/passwd",
        "pkg//b.py",
        "./pkg/b.py",
        ".venv/lib/pkg/x.py",
        "pkg/.venv/x.py",
        ".mcp_sales_cache/pkg/x",
        ".mcpctl/manifest.json",
        "notes.txt",  # not in any include
        "pkg/__pycache__/a.cpython-311.pyc",
        "pkg/b.pyc",
        "pkg/local.cfg",  # ignored by the source
        "data/y.csv",  # the data source only manages x.csv
    ]
    remote = remote_of(
        {
            "pkg/a.py": entry(),
            "pkg/old.py": entry(),
            "data/x.csv": entry(),
            **{p: entry() for p in remote_only},
        }
    )
    result = plan(local, remote, delete=True)
    assert result.deletes == ("data/x.csv", "pkg/old.py")


def test_plan_cleans_stale_temp_files_and_is_comparable_printable_data() -> None:
    local = local_of({"a.py": entry(sha="s")})
    stale = f"pkg/{temp_name('b.py', '0123456789ab')}"
    remote = remote_of({"a.py": entry(sha="s")}, temps=(stale, "../evil"))
    first = plan(local, remote, delete=False)
    assert first == plan(local, remote, delete=False)
    assert first.cleanup == (stale,)
    assert not first.up_to_date
    assert "1 stale temp files to remove" in first.describe()
    up = plan(local, remote_of({"a.py": entry(sha="s")}), delete=False)
    assert up.up_to_date
    assert str(up) == f"{ROOT}: up to date (1 files)"
    grown = plan(local_of({"a.py": entry(size=2000)}), remote, delete=False)
    assert "~ a.py (size, 2.0 kB)" in grown.describe()


def test_plan_marks_the_record_stale_when_it_learns_a_hash() -> None:
    local = local_of({"a.py": entry(sha="s")})
    result = plan(local, remote_of({"a.py": entry()}), delete=False)
    assert result.up_to_date and result.record_stale
    assert result.record == {"a.py": FileEntry(10, T0, "s", 0o644, None, T0)}
    recorded = Manifest(
        ROOT, {"a.py": entry(sha="s")}, recorded={"a.py": FileEntry(10, T0, "s", 0o644, None, T0)}
    )
    assert not plan(local, recorded, delete=False).record_stale


def test_plan_rejects_mismatched_roots_and_unsafe_local_paths() -> None:
    with pytest.raises(ValueError, match="cannot compare"):
        plan(local_of({}), Manifest("/elsewhere", {}), delete=False)
    with pytest.raises(ValueError, match="safe relative path"):
        plan(local_of({"../x": entry()}), remote_of({}), delete=False)
    assert is_safe_path("a/b c/d'e")
    assert not any(is_safe_path(p) for p in ["", "/a", "a/../b", "a//b", "a/", ".", "a/./b"])


def test_plan_never_deletes_a_skipped_path_and_describes_the_skips() -> None:
    local = replace(
        local_of({"a.py": entry()}), skipped=(Skipped("passwd", SKIP_OUTSIDE), Skipped("fifo", SKIP_FIFO))
    )
    remote = remote_of({"a.py": entry(), "passwd": entry(), "gone.py": entry()})
    result = plan(local, remote, delete=True)
    assert result.deletes == ("gone.py",)  # passwd still exists locally, as a link that is not sent
    assert result.skipped == local.skipped
    assert result.describe().splitlines()[-2:] == [
        f"  ! passwd (skipped: {SKIP_OUTSIDE})",
        f"  ! fifo (skipped: {SKIP_FIFO})",
    ]
    quiet = plan(replace(local, files={}), remote_of({}), delete=False)
    assert quiet.describe() == "\n".join(
        [
            f"{ROOT}: up to date (0 files, 2 skipped)",
            f"  ! passwd (skipped: {SKIP_OUTSIDE})",
            f"  ! fifo (skipped: {SKIP_FIFO})",
        ]
    )


def test_an_empty_plan_is_up_to_date_and_sends_nothing() -> None:
    empty = plan(local_of({}), remote_of({}), delete=True)
    assert empty == SyncPlan(ROOT)
    assert empty.up_to_date and empty.bytes_to_send == 0 and not empty.record_stale
    assert empty.describe() == f"{ROOT}: up to date (0 files)"


def test_a_plan_describes_sizes_in_decimal_units() -> None:
    local = local_of(
        {"tiny.txt": entry(size=1), "small.py": entry(size=999), "big.bin": entry(size=1_234_567)}
    )
    lines = plan(local, remote_of({}), delete=False).describe().splitlines()
    assert lines[0] == f"{ROOT}: 3 to send (1.2 MB), 0 to delete, 0 unchanged"
    assert lines[1:] == [
        "  + tiny.txt (new, 1 byte)",
        "  + small.py (new, 999 bytes)",
        "  + big.bin (new, 1.2 MB)",
    ]


def test_a_plan_deletes_and_cleans_up_without_sending() -> None:
    stale = temp_name("a.py", "0123456789ab")
    result = plan(local_of({}), remote_of({"gone.py": entry()}, temps=(stale,)), delete=True)
    assert result.uploads == () and result.deletes == ("gone.py",) and result.cleanup == (stale,)
    assert not result.up_to_date
    assert result.describe().splitlines() == [
        f"{ROOT}: 0 to send (0 bytes), 1 to delete, 0 unchanged, 1 stale temp files to remove",
        "  - gone.py",
    ]


def test_a_recorded_hash_survives_a_plan_that_leaves_the_file_alone() -> None:
    """An unchanged file keeps what the host's record knows: its sha256 and the mtime it came from."""
    remote = Manifest(
        ROOT,
        {"a.py": FileEntry(10, T0 + NS // 3, "s", 0o644, None, T0 + 7)},
        recorded={"a.py": FileEntry(10, T0, "s", 0o644, None, T0 + 7)},
    )
    result = plan(local_of({"a.py": entry(mtime_ns=T0 + 7)}), remote, delete=False)
    assert result.unchanged == ("a.py",) and result.uploads == ()
    assert result.record == {"a.py": FileEntry(10, T0, "s", 0o644, None, T0 + 7)}
    assert not result.record_stale


def test_a_plan_shows_control_characters_in_names_escaped_one_line_per_entry() -> None:
    forged = "new\n  - data/sales.csv"  # a name that would print as a second, made-up line
    ansi = "\x1b[2Jclear.txt"
    undecodable = "bad\udcff.txt"  # a byte that is not UTF-8, as os.fsdecode gives it
    local = replace(
        local_of({forged: entry(size=1), undecodable: entry(size=1)}),
        skipped=(Skipped("fi\rfo", SKIP_FIFO),),
    )
    lines = plan(local, remote_of({ansi: entry()}), delete=True).describe().splitlines()
    assert lines[1:] == [
        "  + new\\n  - data/sales.csv (new, 1 byte)",
        "  + bad\\xff.txt (new, 1 byte)",
        "  - \\x1b[2Jclear.txt",
        f"  ! fi\\rfo (skipped: {SKIP_FIFO})",
    ]
