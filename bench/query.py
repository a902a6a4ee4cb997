"""Top-products query: the reference server's per-call pandas re-read against the cached data engine.

``uv run python -m bench query [--rows 1000000,10000000] [--keep]``

For each size a CSV of that many transaction lines is generated into ``data/big/`` (if missing), then
measured in separate processes (so peak RSS is per path):

- baseline: pandas reads the CSV and groups on every call, as the reference server does;
- pandas with the DataFrame kept in memory (the obvious fix);
- ours, first call: ``SalesStore.current()`` converting the CSV (Parquet + pre-aggregate);
- ours, new process: opening the cached conversion, as each SSH session's server does;
- ours, warm: ``top_products(store.current(), ...)``, median of many calls, over all history (answered
  from the per-version ranking) and over one year (a DuckDB query on the in-memory pre-aggregate).
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
per_call = []
for _ in range(per_call_reps):
    t = time.perf_counter(); top(load()); per_call.append(time.perf_counter() - t)
frame = load()
warm = []
for _ in range(warm_reps):
    t = time.perf_counter(); top(frame); warm.append(time.perf_counter() - t)
print(json.dumps({"per_call": statistics.median(per_call), "warm": statistics.median(warm), "rss": rss_mb()}))
"""
)

_CONVERT = (
    _COMMON
    + """
from pathlib import Path
from mcp_sales.data import SalesStore
path, cache = Path(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter()
store = SalesStore(path, cache_root=cache)
data = store.current()
print(json.dumps({"first": time.perf_counter() - t, "conversions": store.conversions, "rss": rss_mb()}))
"""
)

_WARM = (
    _COMMON
    + """
from pathlib import Path
from mcp_sales.analytics import top_products
from mcp_sales.data import SalesStore
path, cache, operation, reps = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
store = SalesStore(path, cache_root=cache)
top_products(store.current(), operation, 5)
opened = time.perf_counter() - t
times = []
for _ in range(reps):
    t = time.perf_counter()
    top_products(store.current(), operation, 5)
    times.append(time.perf_counter() - t)
import datetime as dt
dated = []
for _ in range(reps):
    t = time.perf_counter()
    top_products(store.current(), operation, 5, "revenue", dt.date(2023, 1, 1), dt.date(2023, 12, 31))
    dated.append(time.perf_counter() - t)
print(json.dumps({"open": opened, "warm": statistics.median(times), "dated": statistics.median(dated),
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
    if seconds < baseline:
        return f"{baseline / seconds:,.0f}x faster"
    return f"{seconds / baseline:.1f}x slower"


def _table(results: dict[int, dict[str, dict[str, Any]]]) -> Any:
    from rich.table import Table

    table = Table(title=f"top_products('{OPERATION}', n=5): per-call cost")
    for column in ("rows", "path", "time", "vs baseline", "peak RSS"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for rows, r in results.items():
        baseline = r["pandas"]["per_call"]
        lines = [
            ("baseline: pandas read_csv + groupby per call", baseline, r["pandas"]["rss"]),
            ("pandas, DataFrame kept in memory (warm)", r["pandas"]["warm"], None),
            ("ours: first call (convert to Parquet + aggregate)", r["convert"]["first"], r["convert"]["rss"]),
            ("ours: new process, open cached version + 1st query", r["warm"]["open"], None),
            ("ours: warm top_products, all history (median)", r["warm"]["warm"], None),
            ("ours: warm top_products, one year by revenue (median)", r["warm"]["dated"], r["warm"]["rss"]),
        ]
        for i, (label, seconds, rss) in enumerate(lines):
            table.add_row(
                f"{rows:,}" if i == 0 else "",
                label,
                _format_time(seconds),
                _ratio(baseline, seconds) if i else "1x",
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
    sizes = [int(part.replace("_", "")) for part in args.rows.split(",") if part.strip()]

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
    Console(width=110).print(_table(results))  # wide enough for one line per path, even when piped
