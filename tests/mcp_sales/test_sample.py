"""sample.py: deterministic bytes, the committed sample cannot drift, and the data has a usable shape."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mcp_sales.errors import InvalidInput
from mcp_sales.sample import COLUMNS, MONTHS, OPERATIONS, PRODUCTS, generate_sample

COMMITTED = Path(__file__).resolve().parents[2] / "data" / "sample_sales_data.csv"
CELLS = len(OPERATIONS) * len(PRODUCTS) * MONTHS


def test_same_seed_same_bytes(tmp_path: Path, sample_master: Path) -> None:
    again = tmp_path / "again.csv"
    assert generate_sample(again) == CELLS
    assert again.read_bytes() == sample_master.read_bytes()
    other = tmp_path / "other.csv"
    generate_sample(other, seed=8)
    assert other.read_bytes() != sample_master.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.csv", "other.csv"]  # no temp files left


def test_committed_sample_is_what_the_generator_writes(sample_master: Path) -> None:
    assert COMMITTED.is_file(), "data/sample_sales_data.csv is missing; regenerate it with generate_sample"
    assert COMMITTED.read_bytes() == sample_master.read_bytes(), "regenerate data/sample_sales_data.csv"
    assert COMMITTED.stat().st_size < 4_000_000


def test_reference_grid_shape(sample_master: Path) -> None:
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_csv('{sample_master}', header = true)")
    assert tuple(rel.columns) == COLUMNS
    cells = con.execute(
        f"SELECT count(*), count(DISTINCT (OPERATION_NAME, PRODUCT_ID, CALENDAR_YEAR, CALENDAR_MONTH)), "
        "count(DISTINCT OPERATION_NAME), count(DISTINCT PRODUCT_ID), "
        f"min(CALENDAR_YEAR), max(CALENDAR_YEAR), min(UNITS_SOLD) FROM read_csv('{sample_master}')"
    ).fetchone()
    assert cells is not None
    assert cells[:6] == (CELLS, CELLS, 20, 25, 2019, 2024)
    assert cells[6] >= 0
    # One stable price per product: revenue / units stays within the +-2% line variation.
    spread = con.execute(
        "SELECT max(r) / min(r) FROM (SELECT PRODUCT_ID, REVENUE / UNITS_SOLD AS r "
        f"FROM read_csv('{sample_master}') WHERE UNITS_SOLD > 0) GROUP BY PRODUCT_ID ORDER BY 1 DESC LIMIT 1"
    ).fetchone()
    assert spread is not None and spread[0] < 1.05


def test_trend_and_seasonality_for_forecasts(sample_master: Path) -> None:
    con = duckdb.connect()
    by_year = dict(
        con.execute(
            f"SELECT CALENDAR_YEAR, sum(UNITS_SOLD) FROM read_csv('{sample_master}') GROUP BY 1"
        ).fetchall()
    )
    assert by_year[2024] > by_year[2019] * 1.1  # growth on the whole
    # Within a series, months differ systematically: the month-of-year profile is not flat.
    ratio = con.execute(
        f"""
        SELECT median(hi / lo) FROM (
            SELECT OPERATION_NAME, PRODUCT_ID, max(m) AS hi, min(m) AS lo FROM (
                SELECT OPERATION_NAME, PRODUCT_ID, CALENDAR_MONTH, avg(UNITS_SOLD) AS m
                FROM read_csv('{sample_master}') GROUP BY ALL
            ) GROUP BY ALL
        )
        """
    ).fetchone()
    assert ratio is not None and ratio[0] > 1.2


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_transaction_lines_cover_every_month(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"big.{fmt}"
    assert generate_sample(path, rows=2 * CELLS + 7) == 2 * CELLS + 7
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    per_cell = (
        duckdb.connect()
        .execute(
            f"SELECT min(n), max(n), count(*), sum(n) FROM (SELECT count(*) AS n FROM {reader}('{path}') "
            "GROUP BY OPERATION_NAME, PRODUCT_ID, CALENDAR_YEAR, CALENDAR_MONTH)"
        )
        .fetchone()
    )
    assert per_cell == (2, 3, CELLS, 2 * CELLS + 7)


def test_small_row_counts_spread_over_operations(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    generate_sample(path, rows=600)
    spread = (
        duckdb.connect()
        .execute(
            "SELECT count(*), count(DISTINCT OPERATION_NAME), count(DISTINCT CALENDAR_YEAR) "
            f"FROM read_csv('{path}')"
        )
        .fetchone()
    )
    assert spread == (600, 20, 6)


@pytest.mark.parametrize("rows", [0, -5])
def test_rows_must_be_positive(tmp_path: Path, rows: int) -> None:
    with pytest.raises(InvalidInput, match=f"rows must be at least 1, not {rows}; pass --rows N"):
        generate_sample(tmp_path / "x.csv", rows=rows)
    assert not list(tmp_path.iterdir())
