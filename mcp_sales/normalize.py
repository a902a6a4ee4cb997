"""SQL that turns source rows into the normalized table, checking every value on the way.

The normalized rows are (operation, product_id, product_name, period, units, revenue). Values that do
not parse stop the conversion with DuckDB's ``error()``, whose message names the column and an example
value; :data:`MARK` and :data:`DATE_MARK` let the caller find that message in DuckDB's error text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mcp_sales.errors import DataError
from mcp_sales.mapping import ColumnMapping
from mcp_sales.sql import ident, lit, one

if TYPE_CHECKING:
    import duckdb

# Tried in order on a sample of the date column; US month-first before day-first when both parse.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%SZ",
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%y",
    "%d/%m/%y",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%Y/%m/%d",
    "%Y%m%d",
    "%d-%b-%Y",
    "%d %b %Y",
    "%b %d, %Y",
    "%Y-%m",
)


MARK = "mcp_sales: "  # prefixes our own error() messages raised from inside DuckDB queries
DATE_MARK = "mcp_sales date: "  # the same for a date that does not fit the format being tried


def is_temporal(type_name: str) -> bool:
    return type_name.startswith(("DATE", "TIMESTAMP"))


def is_numeric(type_name: str) -> bool:
    return type_name.startswith(
        (
            "TINYINT",
            "SMALLINT",
            "INTEGER",
            "BIGINT",
            "HUGEINT",
            "UTINYINT",
            "USMALLINT",
            "UINTEGER",
            "UBIGINT",
        )
    ) or type_name.startswith(("FLOAT", "DOUBLE", "DECIMAL", "REAL"))


def detect_date_formats(con: duckdb.DuckDBPyConnection, src: str, mapping: ColumnMapping) -> list[str | None]:
    """Formats (best first) that parse every value in a sample of the date column.

    Raises:
        DataError: no known format parses the sample; names the column, an example and --date-format.
    """
    assert mapping.date is not None
    column = ident(mapping.date)
    values = [
        row[0]
        for row in con.execute(
            f"SELECT DISTINCT v FROM (SELECT NULLIF(trim(CAST({column} AS VARCHAR)), '') AS v FROM {src} "
            "LIMIT 50000) WHERE v IS NOT NULL LIMIT 5000"
        ).fetchall()
    ]
    if not values:
        return [DATE_FORMATS[0]]  # all empty: every row is dropped and reported as such
    con.execute("CREATE OR REPLACE TEMP TABLE date_sample AS SELECT unnest(?::VARCHAR[]) AS v", [values])
    checks = ", ".join(f"count(*) FILTER (WHERE try_strptime(v, {lit(f)}) IS NULL)" for f in DATE_FORMATS)
    failures = one(con, f"SELECT {checks} FROM date_sample")
    fitting: list[str | None] = [f for f, bad in zip(DATE_FORMATS, failures, strict=True) if bad == 0]
    if fitting:
        return fitting
    best = DATE_FORMATS[min(range(len(DATE_FORMATS)), key=lambda i: failures[i])]
    (example,) = one(con, f"SELECT v FROM date_sample WHERE try_strptime(v, {lit(best)}) IS NULL LIMIT 1")
    raise DataError(
        f"column {mapping.date!r} (date) has values like {example!r} that no known date format parses; "
        "pass the format with --date-format (strptime, e.g. '%d.%m.%Y') or date_format in mcp_sales.toml"
    )


def normalized_select(
    src: str, mapping: ColumnMapping, types: Mapping[str, str], date_format: str | None
) -> str:
    """The SELECT that normalizes source rows; bad values raise our error() with column and example.

    Three layers, so that each value is trimmed and parsed once: text, then parsed values, then checks.
    """
    product_id = mapping.product_id or mapping.product_name
    product_name = mapping.product_name or mapping.product_id
    assert product_id is not None and product_name is not None
    numbers = {f: c for f in ("units", "revenue", "year", "month") if (c := getattr(mapping, f)) is not None}
    text = [f"{_text_expr(c)} AS t_{f}" for f, c in (("operation", mapping.operation), ("pid", product_id))]
    text.append(f"{_text_expr(product_name)} AS t_pname")
    parsed = ["t_operation", "t_pid", "t_pname"]
    for name, column in numbers.items():
        if is_numeric(types[column]):
            text.append(f"CAST({ident(column)} AS DOUBLE) AS n_{name}")
            text.append(f"CAST(NULL AS VARCHAR) AS t_{name}")
            parsed += [f"n_{name}", f"t_{name}"]
        else:
            text.append(f"{_text_expr(column)} AS t_{name}")
            parsed += [f"t_{name}", f"{_parse_number(f't_{name}')} AS n_{name}"]
    if mapping.date is not None:
        if is_temporal(types[mapping.date]):
            text.append(f"CAST({ident(mapping.date)} AS DATE) AS d_date")
            parsed.append("d_date")
        else:
            assert date_format is not None
            text.append(f"{_text_expr(mapping.date)} AS t_date")
            parsed += ["t_date", f"CAST(try_strptime(t_date, {lit(date_format)}) AS DATE) AS d_date"]
        period = _checked_date(mapping.date, date_format) if "t_date" in parsed else "d_date"
    else:
        assert mapping.year is not None and mapping.month is not None
        year = _checked_whole("year", mapping.year, 1800, 2200, "years")
        month = _checked_whole("month", mapping.month, 1, 12, "months")
        period = f"make_date({year}, {month}, 1)"
    units = _checked_number("units", mapping.units)
    revenue = _checked_number("revenue", mapping.revenue) if mapping.revenue else "CAST(NULL AS DOUBLE)"
    return (
        "SELECT t_operation AS operation, t_pid AS product_id, t_pname AS product_name, "
        f"{period} AS period, {units} AS units, {revenue} AS revenue "
        f"FROM (SELECT {', '.join(parsed)} FROM (SELECT {', '.join(text)} FROM {src}))"
    )


def _text_expr(column: str) -> str:
    return f"NULLIF(trim(CAST({ident(column)} AS VARCHAR)), '')"


def _parse_number(text: str) -> str:
    """A DOUBLE from text such as ``2871.5``, ``-$1,234.50``; NULL when it is not a number.

    ``NaN``, ``inf``, ``-Infinity`` and overflowing values (``1e999``) parse, to non-finite doubles, as
    a Parquet DOUBLE column can hold them: they are not "not a number" errors here, but invalid cells the
    conversion leaves out and counts (see ``convert._finish``).
    """
    grouped = r"[-+]?[$€£]?\s*\d{1,3}(,\d{3})*(\.\d+)?"
    # COALESCE evaluates the regular expressions only for the rare values a plain cast rejects.
    return (
        f"COALESCE(TRY_CAST({text} AS DOUBLE), TRY_CAST(CASE WHEN regexp_full_match({text}, {lit(grouped)}) "
        f"THEN regexp_replace({text}, '[$€£,\\s]', '', 'g') END AS DOUBLE))"
    )


def _checked_number(name: str, column: str) -> str:
    message = _error_text(
        MARK,
        f"column {column!r} ({name}) has a value that is not a number: '",
        f"'; fix those rows or map another column with --column {name}=COL",
        f"t_{name}",
    )
    return f"CASE WHEN n_{name} IS NULL AND t_{name} IS NOT NULL THEN error({message}) ELSE n_{name} END"


def _checked_whole(name: str, column: str, low: int, high: int, plural: str) -> str:
    message = _error_text(
        MARK,
        f"column {column!r} ({name}) has the value ",
        f" but {plural} are whole numbers {low}..{high}; fix those rows or map another column "
        f"with --column {name}=COL",
        f"coalesce(t_{name}, CAST(n_{name} AS VARCHAR))",
    )
    value = f"n_{name}"
    return (
        f"CASE WHEN {value} <> floor({value}) OR {value} < {low} OR {value} > {high} THEN error({message}) "
        f"ELSE CAST({_checked_number(name, column)} AS INTEGER) END"
    )


def _checked_date(column: str, date_format: str | None) -> str:
    message = _error_text(
        DATE_MARK,
        f"column {column!r} (date) has the value '",
        f"' that does not match the date format {date_format!r}; pass the right one with "
        "--date-format (strptime, e.g. '%d/%m/%Y') or date_format in mcp_sales.toml",
        "t_date",
    )
    return f"CASE WHEN d_date IS NULL AND t_date IS NOT NULL THEN error({message}) ELSE d_date END"


def _error_text(mark: str, before: str, after: str, value_sql: str) -> str:
    """SQL building an error message around a value (shortened so the message stays one line)."""
    return f"{lit(mark + before)} || left({value_sql}, 60) || {lit(after)}"
