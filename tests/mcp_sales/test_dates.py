"""Date columns: the format is decided by every value of the column, like a careful analyst would.

Each test writes a real CSV, converts it through ``SalesStore`` (real DuckDB) and checks the periods,
the grain and the reading that ``check`` and dataset_summary report. Expected dates are read by eye;
Python's own ``strptime`` is the independent check of what a format means.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import TextContent

import mcp_sales.convert
import mcp_sales.data
from mcp_sales.data import LAYOUT, SalesData, SalesStore
from mcp_sales.errors import DataError
from mcp_sales.mapping import ColumnMapping, load_mapping
from mcp_sales.models import DatasetSummary
from mcp_sales.normalize import DateOrder, DateReading
from mcp_sales.server import ServerConfig, build_server

WAIT = 60  # seconds: bound on a subprocess or a client session
COLUMNS = {"operation": "OP", "product_id": "PID", "units": "UNITS", "date": "DATE"}


def write_dates(directory: Path, values: list[str]) -> Path:
    """A CSV with one sales line per date value (quoted by the csv module where needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "orders.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["OP", "PID", "UNITS", "DATE"])
        for i, value in enumerate(values):
            writer.writerow([f"Site{i % 2}", "P1", i + 1, value])
    return path


def convert(directory: Path, values: list[str], date_format: str | None = None) -> SalesData:
    path = write_dates(directory, values)
    overrides = {**COLUMNS, **({"date_format": date_format} if date_format else {})}
    return SalesStore(path, load_mapping(path, overrides), cache_root=directory / "cache").current()


def periods(data: SalesData) -> list[dt.date]:
    with data.cursor() as cursor:
        return [row[0] for row in cursor.execute("SELECT period FROM sales ORDER BY period").fetchall()]


def python_reads(values: list[str], date_format: str) -> list[dt.date]:
    return sorted(dt.datetime.strptime(v, date_format).date() for v in values)


def failure(directory: Path, values: list[str], date_format: str | None = None) -> str:
    with pytest.raises(DataError) as info:
        convert(directory, values, date_format)
    return str(info.value)


# --- the common shapes of an export -----------------------------------------------------------------

SHAPES: list[tuple[str, list[str], str, dt.date, dt.date, str | None, str | None]] = [
    # id, values, format, first, last, order, the value that decided the order
    (
        "day-first two-digit years",
        ["03/01/19", "13/01/19", "11/05/21", "30/12/22"],
        "%d/%m/%y",
        dt.date(2019, 1, 3),
        dt.date(2022, 12, 30),
        "day-first",
        "13/01/19",
    ),
    (
        "US unpadded",
        ["3/1/2019", "12/25/2019", "12/25/2019", "1/2/2020"],
        "%m/%d/%Y",
        dt.date(2019, 3, 1),
        dt.date(2020, 1, 2),
        "month-first",
        "12/25/2019",
    ),
    (
        "ISO",
        ["2019-01-03", "2020-02-29", "2019-12-31"],
        "%Y-%m-%d",
        dt.date(2019, 1, 3),
        dt.date(2020, 2, 29),
        None,
        None,
    ),
    (
        "German dots",
        ["03.01.2019", "31.12.2019", "01.02.2020"],
        "%d.%m.%Y",
        dt.date(2019, 1, 3),
        dt.date(2020, 2, 1),
        "day-first",
        "31.12.2019",
    ),
    (
        "Oracle day-month name-year",
        ["03-Jan-19", "31-DEC-20", "15-Jun-20"],
        "%d-%b-%y",
        dt.date(2019, 1, 3),
        dt.date(2020, 12, 31),
        None,
        None,
    ),
    (
        "month name first",
        ["Jan 3, 2019", "Dec 31, 2020", "Jun 15, 2020"],
        "%b %d, %Y",
        dt.date(2019, 1, 3),
        dt.date(2020, 12, 31),
        None,
        None,
    ),
    (
        "Excel timestamps",
        ["2019-01-03 00:00:00", "2019-12-31 00:00:00", "2019-06-30 13:45:00"],
        "%Y-%m-%d %H:%M:%S",
        dt.date(2019, 1, 3),
        dt.date(2019, 12, 31),
        None,
        None,
    ),
    (
        "US with a time",
        ["2/24/2003 0:00", "12/1/2004 0:00", "1/6/2003 0:00"],
        "%m/%d/%Y %H:%M",
        dt.date(2003, 1, 6),
        dt.date(2004, 12, 1),
        "month-first",
        "2/24/2003 0:00",
    ),
]


@pytest.mark.parametrize(
    ("values", "date_format", "first", "last", "order", "evidence"),
    [shape[1:] for shape in SHAPES],
    ids=[shape[0] for shape in SHAPES],
)
def test_common_export_shapes(
    tmp_path: Path,
    values: list[str],
    date_format: str,
    first: dt.date,
    last: dt.date,
    order: str | None,
    evidence: str | None,
) -> None:
    data = convert(tmp_path, values)
    assert (data.first_period, data.last_period, data.grain) == (first, last, "day")
    assert data.mapping.date_format == date_format
    assert data.dates is not None
    assert (data.dates.format, data.dates.source, data.dates.order) == (date_format, "detected", order)
    assert not data.dates.order_assumed
    assert data.dates.evidence == evidence
    assert periods(data) == python_reads(values, date_format)


def test_two_digit_years_pivot_like_posix(tmp_path: Path) -> None:
    # 00-68 are 2000-2068 and 69-99 are 1969-1999, as POSIX (and Python) read %y.
    values = ["31/12/68", "01/01/69", "13/01/69", "31/12/99", "01/01/00"]
    data = convert(tmp_path, values)
    assert data.mapping.date_format == "%d/%m/%y"
    assert periods(data) == [
        dt.date(1969, 1, 1),
        dt.date(1969, 1, 13),
        dt.date(1999, 12, 31),
        dt.date(2000, 1, 1),
        dt.date(2068, 12, 31),
    ]
    assert periods(data) == python_reads(values, "%d/%m/%y")


def test_the_whole_column_decides_not_the_first_rows(tmp_path: Path) -> None:
    # 60,000 lines read both ways; the last one only reads day-first.
    values = [f"{(i % 12) + 1:02d}/{(i % 7) + 1:02d}/2004" for i in range(60_000)] + ["25/01/2004"]
    data = convert(tmp_path, values)
    assert data.dates == DateReading(
        "%d/%m/%Y", "detected", "day-first", alternative="%m/%d/%Y", evidence="25/01/2004"
    )
    assert data.last_period == dt.date(2004, 7, 12)  # 12/07/2004 read day-first


# --- ambiguous columns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "assumed", "alternative", "order", "first", "last"),
    [
        (
            ["03/01/19", "12/11/20"],
            "%m/%d/%y",
            "%d/%m/%y",
            "month-first",
            dt.date(2019, 3, 1),
            dt.date(2020, 12, 11),
        ),
        (
            ["03.01.2019", "12.11.2020"],
            "%d.%m.%Y",
            "%m.%d.%Y",
            "day-first",
            dt.date(2019, 1, 3),
            dt.date(2020, 11, 12),
        ),
        (
            ["03-01-2019", "12-11-2020"],
            "%d-%m-%Y",
            "%m-%d-%Y",
            "day-first",
            dt.date(2019, 1, 3),
            dt.date(2020, 11, 12),
        ),
    ],
    ids=["slash: month-first", "dot: day-first", "dash: day-first"],
)
def test_an_ambiguous_column_is_read_by_convention_and_says_so(
    tmp_path: Path,
    values: list[str],
    assumed: str,
    alternative: str,
    order: DateOrder,
    first: dt.date,
    last: dt.date,
) -> None:
    data = convert(tmp_path, values)
    assert data.dates == DateReading(assumed, "detected", order, order_assumed=True, alternative=alternative)
    assert (data.first_period, data.last_period) == (first, last)
    hint = data.dates.override_hint()
    assert hint is not None
    assert f"so {order} was assumed" in hint
    assert (
        f"set date_format = {alternative!r} in mcp_sales.toml or pass --date-format {alternative!r}" in hint
    )


def test_the_assumed_order_is_overridden_by_date_format(tmp_path: Path) -> None:
    data = convert(tmp_path, ["03/01/19", "12/11/20"], date_format="%d/%m/%y")
    assert data.dates == DateReading("%d/%m/%y", "configured", "day-first")
    assert data.dates.override_hint() is None
    assert (data.first_period, data.last_period) == (dt.date(2019, 1, 3), dt.date(2020, 11, 12))


def test_year_and_month_only_is_month_grain(tmp_path: Path) -> None:
    data = convert(tmp_path, ["2019-01", "2019-12", "2020-02"])
    assert data.mapping.date_format == "%Y-%m"
    assert (data.grain, data.first_period, data.last_period) == (
        "month",
        dt.date(2019, 1, 1),
        dt.date(2020, 2, 1),
    )


# --- columns that no format reads ---------------------------------------------------------------------


def test_mixed_day_month_orders_name_a_value_the_best_format_does_not_read(tmp_path: Path) -> None:
    # Day-first on most lines, one month-first line: the example must be that line, which day-first
    # cannot read (the old detector quoted a value that did parse).
    values = ["13/01/2019"] * 5 + ["02/03/2019", "01/13/2019"]
    message = failure(tmp_path, values)
    assert message == (
        "column 'DATE' (date) mixes date formats: most dates read as '%d/%m/%Y' but values like "
        "'01/13/2019' only as '%m/%d/%Y'; export the column in one format or fix those rows"
    )
    with pytest.raises(ValueError):
        dt.datetime.strptime("01/13/2019", "%d/%m/%Y")


def test_mixed_shapes_name_a_value_the_best_format_does_not_read(tmp_path: Path) -> None:
    message = failure(tmp_path, ["2019-01-03", "2019-01-04", "2019-02-01", "13/01/2019"])
    assert message == (
        "column 'DATE' (date) mixes date formats: most dates read as '%Y-%m-%d' but values like "
        "'13/01/2019' only as '%d/%m/%Y'; export the column in one format or fix those rows"
    )


def test_two_and_four_digit_years_in_one_column_are_mixed_formats(tmp_path: Path) -> None:
    # "01/02/19" is not the year 19 of the four-digit format: it is another format, which no single
    # --date-format fixes.
    message = failure(tmp_path, ["01/02/2019", "03/04/2019", "01/02/19"])
    assert message == (
        "column 'DATE' (date) mixes date formats: most dates read as '%m/%d/%Y' but values like "
        "'01/02/19' only as '%m/%d/%y'; export the column in one format or fix those rows"
    )


def test_a_year_outside_1900_2100_is_refused(tmp_path: Path) -> None:
    message = failure(tmp_path / "typo", ["01/01/2019", "02/01/2019", "01/01/2201"])
    assert message.startswith(
        "column 'DATE' (date) has values like '01/01/2201' that '%m/%d/%Y' (the format that reads the "
        "most rows) reads as the year 2201, outside 1900-2100; fix those rows or pass the format with "
        "--date-format"
    )
    # %Y takes "0019" (and "19") as the year 19: no format may read a column that way.
    message = failure(tmp_path / "year19", ["0019-01-03", "0019-02-03"])
    assert message.startswith(
        "column 'DATE' (date) has values like '0019-01-03' that known date formats only read with a year "
        "outside 1900-2100 ('%Y-%m-%d' reads 19)"
    )


def test_unknown_values(tmp_path: Path) -> None:
    assert failure(tmp_path, ["last Tuesday", "next week"]) == (
        "column 'DATE' (date) has values like 'last Tuesday' that no known date format parses; pass the "
        "format with --date-format (strptime, e.g. '%d.%m.%Y') or date_format in mcp_sales.toml"
    )


# --- a configured date_format is checked too ------------------------------------------------------------


def test_configured_four_digit_year_on_two_digit_years_says_use_y(tmp_path: Path) -> None:
    assert failure(tmp_path, ["03/01/19", "13/01/19"], date_format="%d/%m/%Y") == (
        "date_format '%d/%m/%Y' reads '03/01/19' as the year 19: two-digit years need %y; "
        "set date_format = '%d/%m/%y' in mcp_sales.toml or pass --date-format '%d/%m/%y'"
    )


def test_configured_format_that_does_not_fit_names_a_value(tmp_path: Path) -> None:
    assert failure(tmp_path, ["13/01/19", "14/01/19"], date_format="%m/%d/%y") == (
        "column 'DATE' (date) has the value '13/01/19' that does not match the date format '%m/%d/%y'; "
        "pass the right one with --date-format (strptime, e.g. '%d/%m/%Y') or date_format in mcp_sales.toml"
    )


@pytest.mark.parametrize(
    ("date_format", "message"),
    [
        ("%d/%m", "date_format '%d/%m' has no year (%Y, or %y for two digits); give the whole format"),
        (
            "%d/%m/%Y %Q",
            "date_format '%d/%m/%Y %Q' is not a strptime format; fix --date-format or date_format",
        ),
    ],
)
def test_configured_format_without_a_year_or_invalid(tmp_path: Path, date_format: str, message: str) -> None:
    assert failure(tmp_path, ["03/01/2019"], date_format=date_format).startswith(message)


def test_a_date_format_on_year_and_month_columns_is_refused_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("OP,PID,UNITS,YEAR,MONTH\nSite0,P1,3,2019,1\nSite1,P1,4,2019,2\n")
    columns = {"operation": "OP", "product_id": "PID", "units": "UNITS", "year": "YEAR", "month": "MONTH"}
    mapping = load_mapping(path, {**columns, "date_format": "%d/%m/%y"})
    with pytest.raises(DataError) as info:
        SalesStore(path, mapping, cache_root=tmp_path / "cache").current()
    expected = "date_format '%d/%m/%y' applies to a date column, but orders.csv is read by"
    assert str(info.value).startswith(expected)
    assert "drop date_format" in str(info.value)
    # Without it the same file converts: the refusal is about the option, not the data.
    assert SalesStore(path, load_mapping(path, columns), cache_root=tmp_path / "cache2").current().rows == 2


# --- caches, check and dataset_summary ------------------------------------------------------------------


def test_a_version_converted_under_the_previous_layout_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The detector changed what a date column means, so versions it wrote must not be reused, not even
    # through the index's fast path (same file, same mapping, same stamp).
    path = write_dates(tmp_path, ["03/01/19", "13/01/19"])
    mapping = load_mapping(path, COLUMNS)
    previous = str(int(LAYOUT) - 1)
    with monkeypatch.context() as patch:
        for module in (mcp_sales.data, mcp_sales.convert):
            patch.setattr(module, "LAYOUT", previous)
        old = SalesStore(path, mapping, cache_root=tmp_path / "cache")
        old.current()
        assert old.conversions == 1
    store = SalesStore(path, mapping, cache_root=tmp_path / "cache")
    data = store.current()
    assert store.conversions == 1
    assert json.loads((data.cache_dir / "meta.json").read_text())["layout"] == LAYOUT
    assert data.dates is not None and data.dates.format == "%d/%m/%y"


def test_check_reports_format_range_grain_and_the_assumed_order(tmp_path: Path) -> None:
    path = write_dates(tmp_path / "data", ["03/01/19", "12/11/20", "05/06/20"])
    columns = [f"--column={field}={column}" for field, column in COLUMNS.items()]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcp_sales",
            "check",
            "--data",
            str(path),
            "--cache-dir",
            str(tmp_path / "c"),
            *columns,
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    (data_line,) = [line for line in lines if line.startswith("ok   data")]
    assert (
        "orders.csv: 3 rows, 2 operations, 2019-03-01..2020-12-11 (daily), "
        "date format '%m/%d/%y' (detected, month-first assumed), version "
    ) in data_line
    assert (
        "warn data     every date reads both day-first and month-first, so month-first was assumed; if "
        "the dates are day-first, set date_format = '%d/%m/%y' in mcp_sales.toml or pass --date-format "
        "'%d/%m/%y'"
    ) in lines


def test_check_names_the_value_that_decided_the_order(tmp_path: Path) -> None:
    from mcp_sales.__main__ import _check_data

    path = write_dates(tmp_path, ["03/01/19", "13/01/19", "30/12/22"])
    warnings: list[str] = []
    line = _check_data(ServerConfig(data_path=path, columns=COLUMNS, cache_dir=tmp_path / "c"), warnings)
    assert line.startswith(
        "orders.csv: 3 rows, 2 operations, 2019-01-03..2022-12-30 (daily), "
        "date format '%d/%m/%y' (detected, day-first as values like '13/01/19' show), version "
    )
    assert warnings == []


@pytest.mark.anyio
async def test_dataset_summary_reports_how_dates_were_read(tmp_path: Path) -> None:
    path = write_dates(tmp_path, ["03/01/19", "12/11/20"])
    config = ServerConfig(data_path=path, columns=COLUMNS, cache_dir=tmp_path / "c", prefetch=False)
    with anyio.fail_after(WAIT):
        async with Client(build_server(config)) as client:
            result = await client.call_tool("dataset_summary", {})
    assert not result.is_error
    summary = DatasetSummary.model_validate(result.structured_content)
    fields: dict[str, Any] = summary.model_dump(
        include={"grain", "date_format", "date_format_source", "date_order"}
    )
    assert fields == {
        "grain": "day",
        "date_format": "%m/%d/%y",
        "date_format_source": "detected",
        "date_order": "month-first",
    }
    assert summary.date_order_assumed
    assert summary.date_note is not None and "--date-format '%d/%m/%y'" in summary.date_note
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    assert "2019-03-01 to 2020-12-11 (daily data)" in text
    assert "Dates: read as '%m/%d/%y' (detected from every value, month-first); every date reads both" in text


@pytest.mark.anyio
async def test_dataset_summary_of_year_and_month_columns_has_no_date_format(
    sales_csv: Path, tmp_path: Path
) -> None:
    config = ServerConfig(data_path=sales_csv, cache_dir=tmp_path / "c", prefetch=False)
    with anyio.fail_after(WAIT):
        async with Client(build_server(config)) as client:
            result = await client.call_tool("dataset_summary", {})
    summary = DatasetSummary.model_validate(result.structured_content)
    assert (summary.grain, summary.date_format, summary.date_format_source) == ("month", None, None)
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    assert "(monthly data)" in text and "Dates:" not in text


def test_typed_date_column_reading(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "typed.parquet"
    duckdb.sql(
        "COPY (SELECT 'A' AS site, 'p' AS sku, 1 AS qty, DATE '2022-01-01' + CAST(i AS INTEGER) AS sold_on "
        f"FROM range(3) t(i)) TO '{path}' (FORMAT parquet)"
    )
    mapping = ColumnMapping(operation="site", product_id="sku", units="qty", revenue=None, date="sold_on")
    data = SalesStore(path, mapping, cache_root=tmp_path / "c").current()
    assert data.dates == DateReading(None, "typed")
    assert data.dates.describe() == "dates from a DATE/TIMESTAMP column"
