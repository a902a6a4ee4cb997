"""Deterministic sample sales data in the reference schema.

The committed ``data/sample_sales_data.csv`` is one row per operation x product x month (2019-01 ..
2024-12). Benchmark files ask for more rows: each row is then one transaction line of an operation,
product and month, so the monthly totals keep the same shape at any size.

Every number comes from an integer hash of (seed, row) evaluated inside DuckDB, so files of tens of
millions of rows are written straight to disk in bounded memory, and the same seed always gives the
same bytes (no random-generator state, no thread-dependent row order).
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from mcp_sales.errors import InvalidInput

OPERATIONS = (
    "Atlanta",
    "Austin",
    "Charlotte",
    "Columbus",
    "Dallas",
    "Denver",
    "Houston",
    "Indianapolis",
    "Kansas City",
    "Las Vegas",
    "Louisville",
    "Memphis",
    "Nashville",
    "Orlando",
    "Phoenix",
    "Raleigh",
    "Salt Lake City",
    "San Antonio",
    "San Diego",
    "Tampa",
)

# (name, unit price in dollars); ids are assigned in this order, P-1001 upwards.
PRODUCTS = (
    ("Sparkling Water 12-pack", 6.49),
    ("Cold Brew Coffee", 4.25),
    ("Orange Juice 1L", 3.99),
    ("Green Tea 6-pack", 7.80),
    ("Energy Drink", 2.79),
    ("Protein Bar Box", 18.50),
    ("Trail Mix 500g", 8.95),
    ("Kettle Chips", 3.49),
    ("Dark Chocolate Bar", 2.99),
    ("Granola 750g", 6.25),
    ("Oat Milk 1L", 3.29),
    ("Greek Yogurt 4-pack", 5.49),
    ("Sourdough Loaf", 5.99),
    ("Frozen Pizza", 7.49),
    ("Ice Cream Pint", 5.79),
    ("Olive Oil 750ml", 12.90),
    ("Pasta 1kg", 2.69),
    ("Tomato Sauce Jar", 3.79),
    ("Coffee Beans 1kg", 21.00),
    ("Paper Towels 6-roll", 9.99),
    ("Dish Soap", 3.49),
    ("Laundry Pods 40ct", 15.99),
    ("Toothpaste 2-pack", 6.79),
    ("Shampoo 500ml", 8.49),
    ("Sunscreen SPF50", 11.25),
)

FIRST_YEAR = 2019
YEARS = 6
MONTHS = 12 * YEARS
COLUMNS = (
    "OPERATION_NAME",
    "PRODUCT_ID",
    "PRODUCT_NAME",
    "UNITS_SOLD",
    "CALENDAR_YEAR",
    "CALENDAR_MONTH",
    "REVENUE",
)

_MOD = 2**31  # hash state stays below 2**31 so products with 31-bit constants fit a BIGINT

# A 31-bit integer hash (xorshift-multiply rounds, each a bijection) as DuckDB macros. DuckDB's own
# hash() may change between releases; this one cannot, so the committed sample cannot drift.
_MACROS = (
    "CREATE MACRO xs(x, s) AS xor(x, x >> s)",
    f"CREATE MACRO mul(x, a) AS (x * a) % {_MOD}",
    "CREATE MACRO mix(x) AS xs(mul(xs(mul(xs(x % 2147483648, 16), 747796405), 13), 277803737), 16)",
)


def generate_sample(
    path: Path,
    *,
    rows: int | None = None,
    seed: int = 7,
    fmt: Literal["csv", "parquet"] | None = None,
) -> int:
    """Write deterministic sample sales data and return the number of rows written.

    Args:
        path: Output file; written to a temporary file beside it and renamed into place.
        rows: None for the reference size (one row per operation x product x month); a larger count
            writes that many transaction lines spread evenly over all operation/product/months.
        seed: Same seed, same bytes.
        fmt: "csv" or "parquet"; None picks from the suffix (``.parquet``/``.pq`` -> parquet).

    Returns:
        The number of data rows written.

    Raises:
        InvalidInput: ``rows`` is not positive.
    """
    import duckdb

    cells = len(OPERATIONS) * len(PRODUCTS) * MONTHS
    if rows is not None and rows < 1:
        raise InvalidInput(f"rows must be at least 1, not {rows}; pass --rows N with N >= 1")
    total = cells if rows is None else rows
    if fmt is None:
        fmt = "parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv"

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tempfile.TemporaryDirectory(prefix=".sample-spill-", dir=path.parent) as spill:
            con = duckdb.connect(config={"memory_limit": "1GB", "threads": max(1, os.cpu_count() or 1)})
            try:
                con.execute(f"SET temp_directory = {_literal(spill)}")
                con.execute("SET enable_progress_bar = false")  # DuckDB would draw it on stdout
                for macro in _MACROS:
                    con.execute(macro)
                options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true, DELIMITER ','"
                select = _select_sql(total, cells, seed, grid=rows is None)
                con.execute(f"COPY ({select}) TO {_literal(tmp_name)} ({options})")
            finally:
                con.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return total


def _series_params(seed: int) -> dict[str, list[float]]:
    """Per operation x product parameters, index ``o * len(PRODUCTS) + p``."""
    # random.Random with an int seed is stable across Python versions, unlike numpy's generators.
    rng = random.Random(seed)
    op_size = [rng.uniform(0.6, 1.6) for _ in OPERATIONS]
    popularity = [rng.uniform(0.3, 1.8) for _ in PRODUCTS]
    params: dict[str, list[float]] = {"base": [], "growth": [], "amplitude": [], "peak": []}
    for o in range(len(OPERATIONS)):
        for p in range(len(PRODUCTS)):
            params["base"].append(120.0 * op_size[o] * popularity[p] * rng.uniform(0.7, 1.3))
            params["growth"].append(rng.uniform(-0.04, 0.14))  # per year
            params["amplitude"].append(rng.uniform(0.05, 0.35))
            params["peak"].append(float(rng.choice((1, 4, 6, 7, 8, 11, 12))))  # month of the peak
    params["price"] = [price for _, price in PRODUCTS]
    return params


def _select_sql(total: int, cells: int, seed: int, grid: bool) -> str:
    """The SELECT producing ``total`` rows, in file order.

    A pure projection over ``range()`` (lookups in constant lists, no join, no sort), so DuckDB
    streams it in insertion order with bounded memory at any size.
    """
    n_products, months = len(PRODUCTS), MONTHS
    if grid:
        cell = "i"  # op-major, then product, then month: the committed file reads naturally
        lines_per_cell = 1.0
    else:
        # A stride coprime to the number of cells visits every cell once per block of `cells` rows,
        # so any row count spreads over all operations, products and months.
        stride = next(s for s in range(int(cells * 0.618), cells) if math.gcd(s, cells) == 1)
        cell = f"(i * {stride}) % {cells}"
        lines_per_cell = max(1.0, total / cells)
    params = _series_params(seed)
    series = f"(o * {n_products} + p + 1)"
    key = f"(i + {seed % _MOD} * 1000003)"
    return f"""
        SELECT {_str_list(OPERATIONS)}[o + 1] AS OPERATION_NAME,
               {_str_list([f"P-{1001 + k}" for k in range(n_products)])}[p + 1] AS PRODUCT_ID,
               {_str_list([name for name, _ in PRODUCTS])}[p + 1] AS PRODUCT_NAME,
               units AS UNITS_SOLD,
               {FIRST_YEAR} + m // 12 AS CALENDAR_YEAR,
               m % 12 + 1 AS CALENDAR_MONTH,
               CAST(round(units * {_num_list(params["price"])}[p + 1] * (0.98 + 0.04 * u), 2)
                    AS DECIMAL(14, 2)) AS REVENUE
        FROM (
            SELECT o, p, m, u, CAST(greatest(0, round(
                {_num_list(params["base"])}[{series}] / {lines_per_cell!r}
                * pow(1 + {_num_list(params["growth"])}[{series}], m / 12.0)
                * (1 + {_num_list(params["amplitude"])}[{series}]
                       * cos(2 * pi() * ((m % 12 + 1) - {_num_list(params["peak"])}[{series}]) / 12.0))
                * (1 + 0.15 * z))) AS BIGINT) AS units
            FROM (
                SELECT c // {n_products * months} AS o, (c // {months}) % {n_products} AS p,
                       c % {months} AS m,
                       -- Irwin-Hall of three uniforms: cheap, bounded, close enough to normal noise
                       ((h1 >> 16) / 32768.0 + (h1 % 65536) / 65536.0 + (h2 >> 16) / 32768.0 - 1.5) AS z,
                       (h2 % 65536) / 65536.0 AS u
                FROM (
                    SELECT {cell} AS c, mix({key} * 2 + 1) AS h1, mix({key} * 2 + 2) AS h2
                    FROM range({total}) t(i)
                )
            )
        )
    """


def _str_list(values: Sequence[str]) -> str:
    """A SQL list literal of strings."""
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def _num_list(values: Sequence[float]) -> str:
    """A SQL list literal of DOUBLEs (exponent notation makes DuckDB read DOUBLE, not DECIMAL)."""
    return "[" + ", ".join(format(v, ".17e") for v in values) + "]"


def _literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
