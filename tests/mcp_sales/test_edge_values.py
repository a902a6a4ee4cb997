"""Edge values in the numbers, end to end: NaN / inf / -inf cells (CSV text in several spellings, and
Parquet FLOAT/DOUBLE values) are left out, counted and reported by ``check``; negative units are kept
and reported; and every tool's structured result, on a file full of edge values, validates against
the tool's own output schema and holds no NaN or Infinity.

Expected counts, rows and totals are computed from the rows written, with Python's own float parsing,
never copied from the code under test."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent
from pytest import approx

from mcp_sales.__main__ import run_checks
from mcp_sales.data import SalesStore
from mcp_sales.errors import DataError
from mcp_sales.models import NumberChecks, RowsNoted
from mcp_sales.server import ServerConfig, build_server

WAIT = 60  # seconds: the bound on one client session (a first Prophet fit included)
HEADER = (
    "OPERATION_NAME",
    "PRODUCT_ID",
    "PRODUCT_NAME",
    "UNITS_SOLD",
    "CALENDAR_YEAR",
    "CALENDAR_MONTH",
    "REVENUE",
)
SQLISH_OPERATION = "Robert'); DROP TABLE sales;--"
UNICODE_OPERATION = "São Paulo 🏙️ Zürich"
SQLISH_PRODUCT = "P'; SELECT 1; --"
UNICODE_PRODUCT = 'Ünïcødé ✓ "quoted", with commas'
# Spellings DuckDB reads as non-finite doubles; 1e999 overflows to infinity.
UNITS_NOT_FINITE = ("NaN", "inf", "-Infinity", "1e999")
REVENUE_NOT_FINITE = ("nan", "-inf", "+Infinity")
NON_FINITE_TEXT = re.compile(r"\b(nan|inf|infinity)\b", re.IGNORECASE)

Row = tuple[str, str, str, str, int, int, str]


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


@dataclass(frozen=True)
class EdgeFile:
    """An edge-value sales file and what a correct conversion makes of it."""

    path: Path
    rows: list[Row]

    def _kept(self, row: Row) -> bool:
        units, revenue = _number(row[3]), _number(row[6])
        return units is not None and math.isfinite(units) and (revenue is None or math.isfinite(revenue))

    @property
    def kept(self) -> list[Row]:
        return [row for row in self.rows if self._kept(row)]

    def numbers(self) -> NumberChecks:
        def noted(bad: list[int]) -> RowsNoted:
            return RowsNoted(rows=len(bad), first_row=bad[0] + 1 if bad else None)

        def not_finite(text: str) -> bool:
            value = _number(text)
            return value is not None and not math.isfinite(value)

        kept = [self._kept(row) for row in self.rows]
        return NumberChecks(
            units_not_finite=noted([i for i, row in enumerate(self.rows) if not_finite(row[3])]),
            revenue_not_finite=noted([i for i, row in enumerate(self.rows) if not_finite(row[6])]),
            negative_units=noted(
                [i for i, row in enumerate(self.rows) if kept[i] and (_number(row[3]) or 0.0) < 0]
            ),
            incomplete=noted([i for i, row in enumerate(self.rows) if _number(row[3]) is None]),
        )

    def units_by_operation(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for row in self.kept:
            totals[row[0]] = totals.get(row[0], 0.0) + float(row[3])
        return totals


def edge_rows() -> list[Row]:
    """Every kind of edge value, with the invalid cells spread through the file."""
    rows: list[Row] = []
    for i in range(24):  # Dallas: 24 months of two products, enough history for a revenue forecast
        year, month = 2022 + i // 12, i % 12 + 1
        rows.append(("Dallas", "P1", "Widget", str(10 + i), year, month, f"{(10 + i) * 2.5:.2f}"))
        rows.append(("Dallas", SQLISH_PRODUCT, UNICODE_PRODUCT, "3", year, month, "7.50"))
    for month in range(1, 7):
        rows.append(("Austin", "P1", "Widget", str(month), 2023, month, f"{month * 2.5:.2f}"))
        rows.append(("Freebies", "P3", "Sample", "2", 2023, month, "0"))  # zero revenue throughout
    edges: list[Row] = [
        ("Austin", "P2", "Gizmo", "-3", 2023, 2, "-7.50"),  # a return
        ("Austin", "P2", "Gizmo", "-5", 2023, 3, "-12.50"),
        ("Huge Co", "P1", "Widget", "1", 2023, 1, "1e308"),  # huge, but the totals stay finite
        ("Huge Co", "P2", "Gizmo", "4", 2023, 2, "12.00"),
        ("Austin", "P1", "Widget", "", 2023, 3, "5.00"),  # empty units: left out as incomplete
        ("Austin", "P2", "Gizmo", "4", 2023, 4, ""),  # empty revenue: kept, revenue unknown
        (SQLISH_OPERATION, "P1", "Widget", "2", 2023, 5, "5.00"),
        (SQLISH_OPERATION, SQLISH_PRODUCT, UNICODE_PRODUCT, "9", 2023, 6, "22.50"),
        (UNICODE_OPERATION, SQLISH_PRODUCT, UNICODE_PRODUCT, "1", 2022, 12, "2.50"),
        ("Lonely", "P9", "Solo", "1", 2022, 7, "3.00"),  # an operation with a single row
    ]
    bad: list[Row] = [
        *(("Austin", "P1", "Widget", text, 2023, 5, "10.00") for text in UNITS_NOT_FINITE),
        *(("Austin", "P2", "Gizmo", "6", 2023, 6, text) for text in REVENUE_NOT_FINITE),
        ("Dallas", "P1", "Widget", "NaN", 2023, 7, "inf"),  # both at once: one row left out
    ]
    # Spread out, so that "first row" means something: every 5th row from row 17 on is an edge.
    for offset, row in enumerate([*bad, *edges]):
        rows.insert(16 + 5 * offset, row)
    return rows


def write_edge_csv(path: Path, rows: Sequence[Row] | None = None) -> EdgeFile:
    rows = list(edge_rows() if rows is None else rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return EdgeFile(path, rows)


def write_edge_parquet(path: Path, row_group_size: int = 7) -> EdgeFile:
    """The same rows as Parquet: units FLOAT, revenue DOUBLE (NaN and infinities as values), several
    row groups."""
    rows = edge_rows()
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "OPERATION_NAME": pa.array(columns[0], pa.string()),
            "PRODUCT_ID": pa.array(columns[1], pa.string()),
            "PRODUCT_NAME": pa.array(columns[2], pa.string()),
            "UNITS_SOLD": pa.array([_number(t) for t in columns[3]], pa.float32()),
            "CALENDAR_YEAR": pa.array(columns[4], pa.int32()),
            "CALENDAR_MONTH": pa.array(columns[5], pa.int32()),
            "REVENUE": pa.array([_number(t) for t in columns[6]], pa.float64()),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return EdgeFile(path, rows)


@pytest.fixture(scope="module", params=["csv", "parquet"])
def edge_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EdgeFile:
    directory = tmp_path_factory.mktemp(f"edge-{request.param}")
    if request.param == "csv":
        return write_edge_csv(directory / "edge.csv")
    return write_edge_parquet(directory / "edge.parquet")


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


# --- conversion and check -------------------------------------------------------------------------


def test_non_finite_cells_are_left_out_and_counted(edge_file: EdgeFile) -> None:
    data = SalesStore(edge_file.path).current()
    expected = edge_file.numbers()
    assert expected.units_not_finite.rows == 5 and expected.revenue_not_finite.rows == 4  # the file's design
    assert data.numbers == expected
    assert data.rows == len(edge_file.rows)
    assert data.dropped_rows == len(edge_file.rows) - len(edge_file.kept)
    with data.cursor() as cursor:
        kept, not_finite = cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT isfinite(units) OR NOT isfinite(revenue)) FROM sales"
        ).fetchone() or (None, None)
    assert (kept, not_finite) == (len(edge_file.kept), 0)


def test_check_reports_non_finite_and_negative_numbers(edge_file: EdgeFile, tmp_path: Path) -> None:
    report = run_checks(ServerConfig(data_path=edge_file.path, cache_dir=tmp_path))
    data_check = next(c for c in report["checks"] if c["name"] == "data")
    assert data_check["ok"], data_check
    numbers = edge_file.numbers()
    units, revenue, negative = numbers.units_not_finite, numbers.revenue_not_finite, numbers.negative_units
    assert numbers.incomplete.rows == 1  # the row with empty units
    assert data_check["warnings"] == [
        f"{units.rows} rows have a units value that is not a finite number (first: data row "
        f"{units.first_row}); they are left out",
        f"{revenue.rows} rows have a revenue value that is not a finite number (first: data row "
        f"{revenue.first_row}); they are left out",
        "1 row has an empty operation, product, units or date (first: data row "
        f"{numbers.incomplete.first_row}); it is left out",
        f"{negative.rows} rows have negative units (returns?); they are included as given",
    ]
    assert all(not c["warnings"] for c in report["checks"] if c["name"] != "data")


@pytest.mark.slow
def test_check_prints_the_warnings(tmp_path: Path) -> None:
    edge = write_edge_csv(tmp_path / "edge.csv")
    done = subprocess.run(
        [sys.executable, "-m", "mcp_sales", "check", "--data", str(edge.path), "--cache-dir", str(tmp_path)],
        capture_output=True,
        timeout=WAIT * 2,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    warnings = [line for line in done.stdout.decode().splitlines() if line.startswith("warn ")]
    first_units = edge.numbers().units_not_finite.first_row
    assert warnings[0] == (
        "warn data     5 rows have a units value that is not a finite number "
        f"(first: data row {first_units}); they are left out"
    )
    assert "1 row has an empty operation, product, units or date" in warnings[2]
    assert len(warnings) == 4 and "negative units (returns?)" in warnings[3]


def test_clean_data_has_no_number_warnings(small_csv: Path, tmp_path: Path) -> None:
    data = SalesStore(small_csv, cache_root=tmp_path).current()
    assert data.numbers == NumberChecks() and data.numbers.notes() == []


def test_first_rows_follow_the_file_order_in_big_files(tmp_path: Path) -> None:
    """Row numbers come from a second scan, read in parallel: they must still count in file order."""
    count = 600_000
    bad = {"units": 512_345, "revenue": 598_765, "negative": 423_456}  # 1-based data rows
    numbers = range(1, count + 1)
    units = [
        math.nan if r == bad["units"] else -2.0 if r == bad["negative"] else r % 7 + 1.0 for r in numbers
    ]
    revenue = [-math.inf if r == bad["revenue"] else r % 13 + 0.25 for r in numbers]
    table = pa.table(
        {
            "OPERATION_NAME": [f"Op{r % 37}" for r in numbers],
            "PRODUCT_ID": [f"P{r % 101}" for r in numbers],
            "PRODUCT_NAME": [f"Name {r % 101}" for r in numbers],
            "UNITS_SOLD": units,
            "CALENDAR_YEAR": [2020 + r % 4 for r in numbers],
            "CALENDAR_MONTH": [r % 12 + 1 for r in numbers],
            "REVENUE": revenue,
        }
    )
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=50_000)
    with (tmp_path / "big.csv").open("w", encoding="utf-8") as f:
        f.write(",".join(HEADER) + "\n")
        for row in zip(*(table.column(name).to_pylist() for name in HEADER), strict=True):
            f.write(",".join(map(str, row)) + "\n")  # str(nan) is "nan", str(-inf) is "-inf"
    for name in ("big.csv", "big.parquet"):
        found = SalesStore(tmp_path / name, cache_root=tmp_path / "cache").current().numbers
        assert found.units_not_finite == RowsNoted(rows=1, first_row=bad["units"]), name
        assert found.revenue_not_finite == RowsNoted(rows=1, first_row=bad["revenue"]), name
        assert found.negative_units == RowsNoted(rows=1, first_row=bad["negative"]), name


def test_all_rows_invalid_is_one_clear_error(tmp_path: Path) -> None:
    rows: list[Row] = [("Dallas", "P1", "Widget", "NaN", 2023, m, "1.00") for m in range(1, 4)]
    edge = write_edge_csv(tmp_path / "nan.csv", rows)
    with pytest.raises(DataError, match="not a finite number") as caught:
        SalesStore(edge.path).current()
    assert "\n" not in str(caught.value)


def test_values_whose_total_overflows_are_refused(tmp_path: Path) -> None:
    rows: list[Row] = [("Dallas", "P1", "Widget", "1", 2023, m, "1e308") for m in range(1, 4)]
    edge = write_edge_csv(tmp_path / "huge.csv", rows)
    with pytest.raises(DataError, match=r"'REVENUE' \(revenue\) has values so large") as caught:
        SalesStore(edge.path).current()
    assert "--column revenue=COL" in str(caught.value)
    cache = tmp_path / ".mcp_sales_cache"
    assert not [p for p in cache.iterdir() if re.fullmatch(r"[0-9a-f]{12}", p.name)]  # nothing half-made


# --- every tool, through a real client, on the edge file ------------------------------------------

# (tool, arguments): at least one call per tool the server lists, bar the forecast (one slow fit, below).
TOOL_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("top_n_products", {"n": 1000, "operation": "Austin", "metric": "revenue"}),
    ("top_n_products", {"n": 5, "operation": "Austin"}),
    ("top_n_products", {"n": 3, "operation": SQLISH_OPERATION, "metric": "revenue"}),
    ("top_n_products", {"n": 2, "operation": "Huge Co", "metric": "revenue"}),
    ("top_n_products", {"n": 2, "operation": "Freebies", "metric": "revenue", "start_date": "2023-02"}),
    ("top_n_products", {"n": 1, "operation": "Lonely"}),
    ("top_n_products", {"n": 1, "operation": UNICODE_OPERATION, "metric": "revenue"}),
    ("list_operations", {}),
    ("list_products", {}),
    ("list_products", {"operation": SQLISH_OPERATION}),
    ("dataset_summary", {}),
    ("sales_over_time", {}),
    ("sales_over_time", {"operation": "Austin", "grain": "quarter"}),
    ("sales_over_time", {"operation": "Dallas", "product": SQLISH_PRODUCT, "grain": "year"}),
    ("sales_over_time", {"operation": "Huge Co", "start_date": "2023-01", "end_date": "2023-02"}),
]
FORECAST_CALL = ("forecast_sales", {"operation": "Dallas", "metric": "revenue", "horizon_months": 2})


async def _call(path: Path, tool: str, arguments: dict[str, Any]) -> tuple[CallToolResult, dict[str, Any]]:
    """The result of one call in a fresh client session, and the output schemas the server lists."""
    config = ServerConfig(data_path=path, cache_dir=path.parent / "cache")
    with anyio.fail_after(WAIT):
        async with Client(build_server(config)) as client:
            schemas = {t.name: t.output_schema for t in (await client.list_tools()).tools}
            return await client.call_tool(tool, arguments), schemas


def assert_fits_its_schema(result: CallToolResult, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The structured result validates against the tool's output schema and is finite throughout."""
    assert not result.is_error, text_of(result)
    structured = result.structured_content
    assert structured is not None and schema is not None
    jsonschema.validate(structured, schema)
    json.dumps(structured, allow_nan=False)  # raises on NaN or Infinity
    assert not NON_FINITE_TEXT.search(text_of(result)), text_of(result)
    return structured


@pytest.mark.anyio
async def test_every_listed_tool_has_an_edge_case(edge_file: EdgeFile) -> None:
    _, schemas = await _call(edge_file.path, "list_operations", {})
    assert set(schemas) == {tool for tool, _ in [*TOOL_CALLS, FORECAST_CALL]}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "arguments"), TOOL_CALLS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(TOOL_CALLS)]
)
async def test_every_result_fits_its_output_schema(
    edge_file: EdgeFile, tool: str, arguments: dict[str, Any]
) -> None:
    result, schemas = await _call(edge_file.path, tool, arguments)
    assert_fits_its_schema(result, schemas[tool])


@pytest.mark.anyio
async def test_totals_leave_out_exactly_the_invalid_rows(edge_file: EdgeFile) -> None:
    result, _ = await _call(edge_file.path, "list_operations", {})
    operations = {o["name"]: o for o in (result.structured_content or {})["operations"]}
    assert {name: o["units"] for name, o in operations.items()} == approx(edge_file.units_by_operation())
    assert operations["Freebies"]["revenue"] == 0.0 and operations["Huge Co"]["revenue"] == approx(1e308)

    summary, _ = await _call(edge_file.path, "dataset_summary", {})
    numbers = (summary.structured_content or {})["numbers"]
    assert NumberChecks.model_validate(numbers) == edge_file.numbers()
    assert "Note: 5 rows have a units value that is not a finite number" in text_of(summary)
    assert "Note: 2 rows have negative units (returns?); they are included as given." in text_of(summary)
    assert "Note: 1 row has an empty operation, product, units or date (first: data row" in text_of(summary)

    top, _ = await _call(edge_file.path, "top_n_products", {"n": 5, "operation": "Austin"})
    products = (top.structured_content or {})["products"]
    austin = [row for row in edge_file.kept if row[0] == "Austin"]
    assert {p["product_id"] for p in products} == {row[1] for row in austin}
    for product in products:
        assert product["units"] == approx(sum(float(r[3]) for r in austin if r[1] == product["product_id"]))


@pytest.mark.anyio
@pytest.mark.slow
async def test_revenue_forecast_fits_its_schema_and_ignores_the_invalid_rows(tmp_path: Path) -> None:
    edge = write_edge_csv(tmp_path / "edge.csv")
    tool, arguments = FORECAST_CALL
    result, schemas = await _call(edge.path, tool, arguments)
    structured = assert_fits_its_schema(result, schemas[tool])
    actual = {p["period"][:7]: p["actual"] for p in structured["points"] if p["actual"] is not None}
    dallas = [row for row in edge.kept if row[0] == "Dallas"]
    assert len(actual) == 24
    for period, value in actual.items():
        year, month = int(period[:4]), int(period[5:])
        expected = sum(float(r[6]) for r in dallas if (r[4], r[5]) == (year, month))
        assert value == approx(expected, abs=0.01), period
