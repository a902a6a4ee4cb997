"""Top-products query: the reference server's per-call pandas re-read against the cached data engine.

``uv run python -m bench query [--rows 1000000,10000000] [--keep]``

For each size a CSV of that many transaction lines is generated into ``data/big/`` (if missing), then
measured in separate processes (so peak RSS is per path):

- baseline: pandas reads the CSV and groups on every call, as the reference server does;
- pandas with the DataFrame kept in memory (the obvious fix);
- ours, first call: ``SalesStore.current()`` converting the CSV (Parquet + pre-aggregate);
- ours, new process: opening the cached conversion, as each SSH session's server does (metadata only),
  then its first query (which imports DuckDB and builds the version's connection);
- ours, warm: ``top_products(store.current(), ...)``, median of many calls, over all history (answered
  from the per-version ranking) and over one year (a DuckDB query on the in-memory pre-aggregate).

Peak RSS is per process: the conversion's, and the new process's that opens the cached version and
answers every warm query. Goals: warm top_products <= 10 ms at 10M rows; that process <= 300 MB at 50M.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIG = ROOT / "data" / "big"
OPERATION = "Dallas"

_COMMON = """
import json, resource, statistics, sys, time
def rss_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
def measure(fn, reps):
    # (median wall seconds, mean CPU seconds of this process, all threads) per call
    walls, cpu = [], time.process_time()
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
    return statistics.median(walls), (time.process_time() - cpu) / reps
"""

# Exactly the reference server's work per call: read, derive the date, filter, group, rank.
_PANDAS = (
    _COMMON
    + """
import pandas as pd
path, operation, per_call_reps, warm_reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def load():
    frame = pd.read_csv(path)
    frame["ds"] = pd.to_datetime({"year": frame["CALENDAR_YEAR"], "month": frame["CALENDAR_MONTH"], "day": 1})
    return frame
def top(frame):
    rows = frame[frame["OPERATION_NAME"] == operation]
    return rows.groupby(["PRODUCT_ID", "PRODUCT_NAME"])["UNITS_SOLD"].sum().nlargest(5).reset_index()
per_call = measure(lambda: top(load()), per_call_reps)
frame = load()
warm = measure(lambda: top(frame), warm_reps)
print(json.dumps({"per_call": per_call, "warm": warm, "rss": rss_mb()}))
"""
)

_CONVERT = (
    _COMMON
    + """
from pathlib import Path
from mcp_sales.data import SalesStore
path, cache = Path(sys.argv[1]), Path(sys.argv[2])
store = SalesStore(path, cache_root=cache)
first = measure(store.current, 1)
print(json.dumps({"first": first, "conversions": store.conversions, "rss": rss_mb()}))
"""
)

_WARM = (
    _COMMON
    + """
import datetime as dt
from pathlib import Path
from mcp_sales.analytics import top_products
from mcp_sales.data import SalesStore
path, cache, operation, reps = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
store = SalesStore(path, cache_root=cache)
opened = measure(store.current, 1)
first = measure(lambda: top_products(store.current(), operation, 5), 1)
warm = measure(lambda: top_products(store.current(), operation, 5), reps)
year = (dt.date(2023, 1, 1), dt.date(2023, 12, 31))
dated = measure(lambda: top_products(store.current(), operation, 5, "revenue", *year), reps)
print(json.dumps({"open": opened, "first": first, "warm": warm, "dated": dated,
                  "conversions": store.conversions, "rss": rss_mb()}))
"""
)


def _run(script: str, *args: object) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _ensure_file(rows: int) -> tuple[Path, bool]:
    """The benchmark CSV for ``rows`` and whether this run generated it."""
    from mcp_sales.sample import generate_sample

    path = BIG / f"sales_{rows}.csv"
    if path.is_file():
        return path, False
    started = time.perf_counter()
    generate_sample(path, rows=rows)
    print(
        f"generated {path.relative_to(ROOT)} ({rows:,} rows) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return path, True


def _measure(path: Path, rows: int, warm_reps: int) -> dict[str, dict[str, Any]]:
    per_call_reps = 3 if rows <= 2_000_000 else 1  # the baseline is slow at size: once is telling enough
    print(f"measuring {rows:,} rows ...", file=sys.stderr)
    pandas = _run(_PANDAS, path, OPERATION, per_call_reps, 20)
    with tempfile.TemporaryDirectory(prefix=".bench-cache-", dir=BIG) as cache:
        convert = _run(_CONVERT, path, cache)
        warm = _run(_WARM, path, cache, OPERATION, warm_reps)
    if convert["conversions"] != 1 or warm["conversions"] != 0:
        raise SystemExit("unexpected: the second process converted again instead of reusing the cache")
    return {"pandas": pandas, "convert": convert, "warm": warm}


def _format_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _ratio(baseline: float, seconds: float) -> str:
    ratio = baseline / seconds
    if ratio >= 10:
        return f"{ratio:,.0f}x faster"
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def _table(results: dict[int, dict[str, dict[str, Any]]]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"top_products('{OPERATION}', n=5): cost per call (time: wall median; CPU: all threads)"
    )
    for column in ("rows", "path", "time", "CPU", "vs baseline", "peak RSS"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for rows, r in results.items():
        baseline = r["pandas"]["per_call"][0]
        lines = [
            ("baseline: pandas read_csv + groupby per call", r["pandas"]["per_call"], r["pandas"]["rss"]),
            ("pandas, DataFrame kept in memory (warm)", r["pandas"]["warm"], None),
            ("ours: first call (convert to Parquet + aggregate)", r["convert"]["first"], r["convert"]["rss"]),
            ("ours: new process, open cached version (metadata)", r["warm"]["open"], None),
            ("ours: new process, 1st query (loads DuckDB)", r["warm"]["first"], None),
            ("ours: warm, all history (median)", r["warm"]["warm"], None),
            ("ours: warm, one year by revenue (median)", r["warm"]["dated"], r["warm"]["rss"]),
        ]
        for i, (label, (wall, cpu), rss) in enumerate(lines):
            table.add_row(
                f"{rows:,}" if i == 0 else "",
                label,
                _format_time(wall),
                _format_time(cpu),
                _ratio(baseline, wall) if i else "1x",
                f"{rss:,.0f} MB" if rss is not None else "",
                end_section=i == len(lines) - 1,
            )
    return table


def main(argv: list[str]) -> None:
    """Generate (if needed) and measure each size, then print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench query", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", default="1000000,10000000", help="comma-separated sizes (default: %(default)s)"
    )
    parser.add_argument("--warm-calls", type=int, default=500, help="warm calls to take the median of")
    parser.add_argument("--keep", action="store_true", help="keep the generated files in data/big/")
    args = parser.parse_args(argv)
    try:
        sizes = [int(part.replace("_", "")) for part in args.rows.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--rows takes comma-separated row counts like 1000000,10000000, not {args.rows!r}")
    if not sizes or min(sizes) < 1:
        parser.error("--rows needs at least one positive row count")

    from rich.console import Console

    BIG.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    generated: list[Path] = []
    try:
        for rows in sizes:
            path, new = _ensure_file(rows)
            if new:
                generated.append(path)
            results[rows] = _measure(path, rows, args.warm_calls)
    finally:
        if not args.keep:
            for path in generated:
                path.unlink(missing_ok=True)
    console = Console(width=120)  # wide enough for one line per path, even when piped
    console.print(_table(results))
    for line in _goals(results):
        console.print(line)


# Goals, checked for the sizes measured: warm top_products time at 10M rows, warm-path RSS at 50M rows.
TIME_GOAL = (10_000_000, 10e-3)
RSS_GOAL_MB = (50_000_000, 300.0)


def _goals(results: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    """One line per goal whose size was measured: the numbers and whether the goal is met."""
    lines = []
    rows, limit = TIME_GOAL
    if rows in results:
        warm = results[rows]["warm"]
        slowest = max(warm["warm"][0], warm["dated"][0])
        lines.append(
            f"goal: warm top_products <= {_format_time(limit)} at {rows:,} rows: "
            f"{_format_time(warm['warm'][0])} all history, {_format_time(warm['dated'][0])} one year "
            f"({'met' if slowest <= limit else 'NOT met'})"
        )
    rows, limit_mb = RSS_GOAL_MB
    if rows in results:
        rss = results[rows]["warm"]["rss"]
        verdict = "met" if rss <= limit_mb else "NOT met"
        lines.append(
            f"goal: peak RSS of a new process opening the cached version and answering the warm queries "
            f"<= {limit_mb:,.0f} MB at {rows:,} rows: {rss:,.0f} MB ({verdict}); "
            f"the conversion itself peaked at {results[rows]['convert']['rss']:,.0f} MB"
        )
    return lines
