"""data.py: caching and versions across stores and processes, and the lazily built connection."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mcp_sales.data import LAYOUT, SalesData, SalesStore
from mcp_sales.errors import DataError


def rows_of(data: SalesData, sql: str) -> list[tuple[object, ...]]:
    with data.cursor() as cursor:
        return cursor.execute(sql).fetchall()


def version_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and len(p.name) == 12)


def test_second_store_reuses_the_conversion(small_csv: Path) -> None:
    first = SalesStore(small_csv)
    data = first.current()
    assert first.conversions == 1
    assert data.cache_dir == small_csv.parent / ".mcp_sales_cache" / data.version
    stamps = {p.name: p.stat().st_mtime_ns for p in data.cache_dir.iterdir()}
    second = SalesStore(small_csv)
    again = second.current()
    assert second.conversions == 0
    assert again.version == data.version and again.rows == data.rows
    assert {p.name: p.stat().st_mtime_ns for p in again.cache_dir.iterdir()} == stamps
    assert first.current() is data  # unchanged file: the same object, no work


_STORE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import duckdb  # imported up front so that racing children race on the conversion itself
    from mcp_sales.data import SalesStore
    store = SalesStore(Path(sys.argv[1]))
    if sys.argv[2:] == ["--wait"]:
        print("ready", flush=True)
        sys.stdin.readline()
    data = store.current()
    result = {"version": data.version, "conversions": store.conversions, "rows": data.rows}
    print(json.dumps(result), flush=True)
    """
)


def run_store(path: Path) -> dict[str, object]:
    """Open the store in a new Python process (as each SSH session does) and report what it did."""
    done = subprocess.run(
        [sys.executable, "-c", _STORE_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_new_process_reuses_the_conversion(small_csv: Path) -> None:
    data = SalesStore(small_csv).current()
    before = (data.cache_dir / "sales.parquet").stat().st_mtime_ns
    result = run_store(small_csv)
    assert result == {"version": data.version, "conversions": 0, "rows": 2_000}
    assert (data.cache_dir / "sales.parquet").stat().st_mtime_ns == before


def test_two_processes_starting_at_once(small_csv: Path) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _STORE_SCRIPT, str(small_csv), "--wait"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:  # both are imported and waiting: release them together
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert [child.returncode for child in children] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    assert results[0]["version"] == results[1]["version"]
    assert sorted(r["conversions"] for r in results) == [0, 1]  # one converted, the other waited and reused
    root = small_csv.parent / ".mcp_sales_cache"
    assert version_dirs(root) == [results[0]["version"]]
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_changed_file_gives_a_new_version_on_the_next_call(small_csv: Path) -> None:
    store = SalesStore(small_csv)
    old = store.current()
    with small_csv.open("a", encoding="utf-8") as f:
        f.write("Boise,P-9999,Kayak,3,2024,12,900.00\n")
    new = store.current()
    assert new.version != old.version
    assert new.rows == old.rows + 1 and "Boise" in new.operations
    assert store.conversions == 2


def test_touch_keeps_the_version(small_csv: Path) -> None:
    store = SalesStore(small_csv)
    old = store.current()
    st = small_csv.stat()
    os.utime(small_csv, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert store.current() is old
    assert store.conversions == 1
    # The index now knows the new mtime: another process opens without hashing or converting.
    assert run_store(small_csv)["conversions"] == 0


def test_keeps_the_last_two_versions(small_csv: Path) -> None:
    store = SalesStore(small_csv)
    seen = [store.current().version]
    for units in ("1", "2", "3"):
        with small_csv.open("a", encoding="utf-8") as f:
            f.write(f"Boise,P-9999,Kayak,{units},2024,12,900.00\n")
        seen.append(store.current().version)
    assert len(set(seen)) == 4
    assert version_dirs(small_csv.parent / ".mcp_sales_cache") == sorted(seen[-2:])


def test_mapping_file_change_is_picked_up(small_csv: Path) -> None:
    store = SalesStore(small_csv)
    old = store.current()
    assert old.has_revenue
    (small_csv.parent / "mcp_sales.toml").write_text('[columns]\nrevenue = ""\n', "utf-8")
    new = store.current()
    assert new.version != old.version and not new.has_revenue


def test_cache_falls_back_to_the_user_cache(
    small_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (small_csv.parent / ".mcp_sales_cache").write_text("in the way", "utf-8")  # cannot be a directory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = SalesStore(small_csv).current()
    assert data.cache_dir.parent == tmp_path / "xdg" / "mcp_sales"


@pytest.mark.parametrize("damage", ["meta.json", "agg.parquet"])
def test_damaged_version_is_rebuilt(small_csv: Path, damage: str) -> None:
    data = SalesStore(small_csv).current()
    (data.cache_dir / damage).write_bytes(b"PAR1 not really")
    again = SalesStore(small_csv)
    assert again.current().version == data.version
    assert again.conversions == 1
    assert SalesStore(small_csv).current().rows == data.rows


@pytest.mark.parametrize("written_by", ["older layout", "release without number checks"])
def test_version_of_an_older_release_is_rebuilt_not_reused(small_csv: Path, written_by: str) -> None:
    """The index still points at the version an older release wrote: its metadata decides reuse."""
    data = SalesStore(small_csv).current()
    meta_path = data.cache_dir / "meta.json"
    meta = json.loads(meta_path.read_text("utf-8"))
    if written_by == "older layout":
        meta["layout"] = "2"
    else:
        del meta["layout"], meta["numbers"]
    meta_path.write_text(json.dumps(meta), "utf-8")
    again = SalesStore(small_csv)
    rebuilt = again.current()
    assert again.conversions == 1
    assert rebuilt.rows == data.rows and rebuilt.numbers == data.numbers
    assert json.loads(meta_path.read_text("utf-8"))["layout"] == LAYOUT
    third = SalesStore(small_csv)
    assert third.current().version == data.version and third.conversions == 0  # the rebuild is reused


def test_cache_root_override_and_stale_work_dirs(small_csv: Path, tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"
    (root / "0123456789ab.tmp-crashed").mkdir(parents=True)
    data = SalesStore(small_csv, cache_root=root).current()
    assert data.cache_dir.parent == root
    assert not (root / "0123456789ab.tmp-crashed").exists()
    assert not (small_csv.parent / ".mcp_sales_cache").exists()


def test_pre_aggregate_sums_the_rows(sample_data: SalesData) -> None:
    assert rows_of(sample_data, "SELECT count(*), sum(lines), sum(units) FROM agg") == rows_of(
        sample_data, "SELECT count(*), count(*), sum(units) FROM sales"
    )
    assert rows_of(sample_data, "SELECT count(*) FROM totals") == [(20 * 25,)]


# ----------------------------------------------------------------------------------------------
# The connection is built by the first query


_LAZY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from mcp_sales import forecast
    from mcp_sales.data import SalesStore
    store = SalesStore(Path(sys.argv[1]))
    data = store.current()
    # What a cached forecast needs: names resolved from the metadata, then the cache lookup.
    request = forecast.validate_request(data, sys.argv[2].lower(), horizon_months=3)
    forecast.load_cached(data, request)
    before = "duckdb" in sys.modules
    with data.cursor() as cursor:
        (lines,) = cursor.execute("SELECT sum(lines) FROM agg").fetchone()
    result = {
        "duckdb_before_query": before,
        "duckdb_after_query": "duckdb" in sys.modules,
        "conversions": store.conversions,
        "version": data.version,
        "cache_dir": str(data.cache_dir),
        "operation": request.operation,
        "lines": lines,
    }
    print(json.dumps(result), flush=True)
    """
)


def test_new_process_opens_a_cached_version_without_duckdb(small_csv: Path) -> None:
    data = SalesStore(small_csv).current()
    done = subprocess.run(
        [sys.executable, "-c", _LAZY_SCRIPT, str(small_csv), data.operations[0]],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "duckdb_before_query": False,
        "duckdb_after_query": True,
        "conversions": 0,
        "version": data.version,
        "cache_dir": str(data.cache_dir),
        "operation": data.operations[0],
        "lines": 2_000,
    }


def test_threads_racing_for_the_first_cursor_share_one_connection(
    small_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SalesStore(small_csv).current()  # converted here, so the store below only opens it
    data = SalesStore(small_csv).current()
    connects: list[object] = []
    real_connect = duckdb.connect

    def counting_connect(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        connects.append(args)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", counting_connect)
    threads = 8
    start = threading.Barrier(threads)

    def first_query() -> list[tuple[object, ...]]:
        start.wait(timeout=60)  # all threads ask for their first cursor at the same moment
        return rows_of(data, "SELECT count(*), sum(units) FROM totals")

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _: first_query(), range(threads)))
    assert len(connects) == 1
    assert len({tuple(r) for r in results}) == 1 and results[0][0][0] == 20 * 25


def test_version_unreadable_at_the_first_query_is_rebuilt(small_csv: Path) -> None:
    data = SalesStore(small_csv).current()
    agg = data.cache_dir / "agg.parquet"
    # Same size and Parquet magic at both ends: only reading the file shows that it is damaged.
    agg.write_bytes(b"PAR1" + bytes(agg.stat().st_size - 8) + b"PAR1")
    store = SalesStore(small_csv)
    opened = store.current()
    assert store.conversions == 0
    with pytest.raises(DataError, match=r"cannot be read \(.*\); it is rebuilt on the next call"):
        opened.cursor()
    again = store.current()
    assert store.conversions == 1
    assert again is not opened and again.version == data.version
    assert rows_of(again, "SELECT sum(lines) FROM agg") == [(2_000,)]
    assert store.current() is again  # rebuilt once, then reused
