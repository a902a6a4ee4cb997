"""SQL that turns source rows into the normalized table, checking every value on the way.

The normalized rows are (operation, product_id, product_name, period, units, revenue). Values that do
not parse stop the conversion with DuckDB's ``error()``, whose message names the column and an example
value; :data:`MARK` and :data:`DATE_MARK` let the caller find that message in DuckDB's error text.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mcp_sales.errors import DataError
from mcp_sales.mapping import ColumnMapping
from mcp_sales.sql import ident, lit, one

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger(__name__)

# --- dates: which strptime format reads the date column -------------------------------------------
#
# A format fits the column when it reads every distinct value as a date in MIN_YEAR..MAX_YEAR. The
# range matters: DuckDB's %Y also takes "19" (the year 19), so without it %Y would win over %y. %y
# pivots like POSIX (and DuckDB): 00-68 are 2000-2068, 69-99 are 1969-1999.
MIN_YEAR, MAX_YEAR = 1900, 2100

_TIMES = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")
_ISO_TIMES = (
    *("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f"),
    *("T%H:%M", "T%H:%M:%S", "T%H:%M:%S.%f", "T%H:%M:%SZ", "T%H:%M:%S.%fZ"),
)
# Day and month as numbers: both orders are candidates and the values decide (a first field above 12
# means day-first, a second one above 12 month-first). When every value reads both ways the order
# listed first is assumed, and reported as assumed: month-first with "/" (US exports), day-first with
# "." and "-" (European exports).
_DAY_MONTH_ORDERS = {"/": ("%m/%d", "%d/%m"), ".": ("%d.%m", "%m.%d"), "-": ("%d-%m", "%m-%d")}
_MONTH_NAMES = (
    *("%d-%b-%Y", "%d-%b-%y", "%d %b %Y", "%d %b %y", "%b %d, %Y", "%b %d %Y"),
    *("%d %B %Y", "%B %d, %Y", "%B %d %Y"),
)
DATE_FORMATS: tuple[str, ...] = (
    *(f"%Y-%m-%d{time}" for time in _ISO_TIMES),
    *(f"%Y/%m/%d{time}" for time in _TIMES[:3]),
    "%Y%m%d",
    *(
        f"{day_month}{sep}{year}{time}"
        for sep, orders in _DAY_MONTH_ORDERS.items()
        for year in ("%Y", "%y")
        for day_month in orders
        for time in _TIMES
    ),
    *(f"{date}{time}" for date in _MONTH_NAMES for time in _TIMES[:3]),
    "%Y-%m",
)
# Detection reads every distinct value of the column up to this many (beyond, a fixed sample of this
# many: only timestamp columns get there; the conversion still checks every row).
DATE_VALUES_LIMIT = 200_000
# Which formats read anything at all is found on this many distinct values first, so that the misses
# of a hundred formats (each slower than a hit) are paid on a few hundred values, not on all of them.
DATE_SCREEN_SIZE = 500

DateOrder = Literal["day-first", "month-first"]
DateSource = Literal["detected", "configured", "typed"]


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


@dataclass(frozen=True)
class DateReading:
    """How the date column is read; kept in the version's metadata for ``check`` and dataset_summary.

    Attributes:
        format: strptime format of the column; None for a DATE/TIMESTAMP column (nothing to parse).
        source: "detected" from the values, "configured" (date_format / --date-format) or "typed".
        order: Day/month order when both are numbers and the year is not first; else None.
        order_assumed: Every value reads both ways, so ``order`` is the convention, not a finding.
        alternative: The format with day and month swapped: what to configure if the assumption is wrong.
        evidence: A value only one order reads (e.g. ``13/01/19``), when the values decided the order.
    """

    format: str | None
    source: DateSource
    order: DateOrder | None = None
    order_assumed: bool = False
    alternative: str | None = None
    evidence: str | None = None

    def as_meta(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_meta(cls, meta: object) -> DateReading | None:
        """The reading stored by :meth:`as_meta`; None when absent or not understood."""
        if not isinstance(meta, dict):
            return None
        try:
            return cls(**meta)
        except TypeError:
            return None

    def override_hint(self) -> str | None:
        """For an assumed order: which order was assumed and how to read the dates the other way."""
        if not self.order_assumed or self.alternative is None:
            return None
        other = "month-first" if self.order == "day-first" else "day-first"
        return (
            f"every date reads both day-first and month-first, so {self.order} was assumed; if the dates "
            f"are {other}, set date_format = {self.alternative!r} in mcp_sales.toml or pass --date-format "
            f"{self.alternative!r}"
        )

    def describe(self) -> str:
        """One phrase for people: the format, where it came from and what decided the day/month order
        (:meth:`override_hint` says more when the order was assumed)."""
        if self.format is None:
            return "dates from a DATE/TIMESTAMP column"
        how = "detected" if self.source == "detected" else "from date_format"
        if self.order_assumed:
            how += f", {self.order} assumed"
        elif self.order is not None and self.evidence is not None:
            how += f", {self.order} as values like {self.evidence!r} show"
        elif self.order is not None:
            how += f", {self.order}"
        return f"date format {self.format!r} ({how})"


def has_no_day(date_format: str | None) -> bool:
    """Whether a date format has no day (``%Y-%m``): then every date is the first of its month."""
    return date_format is not None and "%d" not in date_format and "%j" not in date_format


def read_date_column(con: duckdb.DuckDBPyConnection, src: str, mapping: ColumnMapping) -> DateReading:
    """How to read the text date column: the configured date_format, checked, or the detected format.

    Reads every distinct value of the column (a fixed sample of :data:`DATE_VALUES_LIMIT` of them when
    there are more) with DuckDB aggregates: one pass over the file, whatever its size.

    Raises:
        DataError: the configured format is invalid or does not read every value as a plausible date, or
            no format reads the column; names the column, an example value and what to do.
    """
    assert mapping.date is not None
    column, configured = mapping.date, mapping.date_format
    if configured:
        _check_format_text(con, configured)
    distinct = _collect_date_values(con, src, column)
    if configured:
        return _check_configured(con, column, configured)
    if distinct == 0:  # all empty: every row is dropped, and reported as such
        return DateReading(DATE_FORMATS[0], "detected")
    return _detect(con, column, distinct)


def _collect_date_values(con: duckdb.DuckDBPyConnection, src: str, column: str) -> int:
    """Fill the temp table ``date_values`` (v, n: distinct trimmed value, rows holding it)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE date_values AS SELECT v, n FROM (SELECT v, count(*) AS n FROM "
        f"(SELECT {_text_expr(column)} AS v FROM {src}) WHERE v IS NOT NULL GROUP BY v) "
        f"ORDER BY hash(v) LIMIT {DATE_VALUES_LIMIT}"
    )
    (distinct,) = one(con, "SELECT count(*) FROM date_values")
    if distinct == DATE_VALUES_LIMIT:
        logger.info("date column %r has over %d distinct values; detection reads a sample", column, distinct)
    return int(distinct)


def _reads(date_format: str) -> str:
    """SQL: whether ``date_format`` reads the value ``v`` as a date in MIN_YEAR..MAX_YEAR (NULL when it
    does not parse it at all)."""
    return f"year(try_strptime(v, {lit(date_format)})) BETWEEN {MIN_YEAR} AND {MAX_YEAR}"


def _misses(con: duckdb.DuckDBPyConnection, formats: Sequence[str]) -> list[tuple[int, int]]:
    """Per format: (distinct values, rows) of the column it does not read."""
    parts = ", ".join(
        f"count(*) FILTER (WHERE {_reads(f)}), coalesce(sum(n) FILTER (WHERE {_reads(f)}), 0)"
        for f in formats
    )
    values, rows, *read = one(con, f"SELECT count(*), coalesce(sum(n), 0), {parts} FROM date_values")
    return [(int(values - read[2 * i]), int(rows - read[2 * i + 1])) for i in range(len(formats))]


def _example(con: duckdb.DuckDBPyConnection, date_format: str | None) -> str:
    """The most common value ``date_format`` does not read (the most common value when None)."""
    where = f"WHERE NOT coalesce({_reads(date_format)}, false) " if date_format is not None else ""
    (value,) = one(con, f"SELECT v FROM date_values {where}ORDER BY n DESC, v LIMIT 1")
    return str(value)


def _years(con: duckdb.DuckDBPyConnection, value: str, formats: Sequence[str]) -> list[int | None]:
    """The year each format reads ``value`` as (None where it does not parse)."""
    parts = ", ".join(f"year(try_strptime(v, {lit(f)}))" for f in formats)
    row = con.execute(
        f"SELECT {parts} FROM (SELECT CAST($value AS VARCHAR) AS v)", {"value": value}
    ).fetchone()
    assert row is not None
    return list(row)


def _order(date_format: str) -> DateOrder | None:
    day, month = date_format.find("%d"), date_format.find("%m")
    if day < 0 or month < 0 or date_format.startswith("%Y"):
        return None
    return "day-first" if day < month else "month-first"


def _swapped(date_format: str) -> str | None:
    """The candidate format with day and month swapped, if there is one."""
    swapped = date_format.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    return swapped if swapped != date_format and swapped in DATE_FORMATS else None


def _detect(con: duckdb.DuckDBPyConnection, column: str, distinct: int) -> DateReading:
    """The first candidate that reads every value; the values (or the convention) decide day/month."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE date_screen AS SELECT v FROM date_values "
        f"ORDER BY hash(v) LIMIT {DATE_SCREEN_SIZE}"
    )
    # Only whether a format parses anything: this simplest of expressions keeps planning a hundred of
    # them cheap. The year range is checked on the few candidates left.
    parsed = one(
        con, f"SELECT {', '.join(f'count(try_strptime(v, {lit(f)}))' for f in DATE_FORMATS)} FROM date_screen"
    )
    candidates = [f for f, hits in zip(DATE_FORMATS, parsed, strict=True) if hits]
    if not candidates:
        raise _unreadable(con, column, None)
    misses = _misses(con, candidates)
    fitting = [f for f, (values, _rows) in zip(candidates, misses, strict=True) if values == 0]
    if not fitting:
        # The best format reads the most rows; None when none reads a single value as a plausible date.
        readers = [
            (f, rows) for f, (values, rows) in zip(candidates, misses, strict=True) if values < distinct
        ]
        best = min(readers, key=lambda reader: reader[1])[0] if readers else None
        raise _unreadable(con, column, best)
    chosen = fitting[0]
    twin = _swapped(chosen)
    if twin is None:
        return DateReading(chosen, "detected", _order(chosen))
    if twin in fitting:
        return DateReading(chosen, "detected", _order(chosen), order_assumed=True, alternative=twin)
    # A value the other order does not read is what decided it.
    return DateReading(chosen, "detected", _order(chosen), alternative=twin, evidence=_example(con, twin))


def _unreadable(con: duckdb.DuckDBPyConnection, column: str, best: str | None) -> DataError:
    """Why no format reads the whole column, with a value that ``best`` (the format reading the most
    rows, if any) does not read."""
    example = _example(con, best)
    shown = example[:60]
    years = _years(con, example, DATE_FORMATS)
    where = " or ".join(("--date-format (strptime, e.g. '%d.%m.%Y')", "date_format in mcp_sales.toml"))
    plausible = [
        f for f, y in zip(DATE_FORMATS, years, strict=True) if y is not None and MIN_YEAR <= y <= MAX_YEAR
    ]
    # Checked first: "01/02/19" among "01/02/2019" is another format (%y), not a year-19 typo.
    if best is not None and plausible:
        return DataError(
            f"column {column!r} (date) mixes date formats: most dates read as {best!r} but values like "
            f"{shown!r} only as {plausible[0]!r}; export the column in one format or fix those rows"
        )
    if best is not None and (year := years[DATE_FORMATS.index(best)]) is not None:
        return DataError(
            f"column {column!r} (date) has values like {shown!r} that {best!r} (the format that reads the "
            f"most rows) reads as the year {year}, outside {MIN_YEAR}-{MAX_YEAR}; fix those rows or pass the "
            f"format with {where}"
        )
    parsed = [(f, y) for f, y in zip(DATE_FORMATS, years, strict=True) if y is not None]
    if parsed:
        f, year = parsed[0]
        return DataError(
            f"column {column!r} (date) has values like {shown!r} that known date formats only read with a "
            f"year outside {MIN_YEAR}-{MAX_YEAR} ({f!r} reads {year}); fix those rows or pass the format "
            f"with {where}"
        )
    return DataError(
        f"column {column!r} (date) has values like {shown!r} that no known date format parses; "
        f"pass the format with {where}"
    )


def _check_format_text(con: duckdb.DuckDBPyConnection, date_format: str) -> None:
    """A configured format must have a year and be one DuckDB's strptime understands."""
    import duckdb

    if "%Y" not in date_format and "%y" not in date_format:
        raise DataError(
            f"date_format {date_format!r} has no year (%Y, or %y for two digits); give the whole format "
            "of the date column with --date-format or date_format in mcp_sales.toml, e.g. '%d/%m/%Y'"
        )
    try:
        con.execute(f"SELECT try_strptime('', {lit(date_format)})")
    except duckdb.InvalidInputException:
        raise DataError(
            f"date_format {date_format!r} is not a strptime format; fix --date-format or date_format in "
            "mcp_sales.toml (e.g. '%d/%m/%Y %H:%M')"
        ) from None


def _check_configured(con: duckdb.DuckDBPyConnection, column: str, date_format: str) -> DateReading:
    """The configured format, once it reads every value as a date in MIN_YEAR..MAX_YEAR."""
    ((missed, _rows),) = _misses(con, [date_format])
    if not missed:
        return DateReading(date_format, "configured", _order(date_format))
    example = _example(con, date_format)
    shown = example[:60]
    (year,) = _years(con, example, [date_format])
    if year is None:
        raise DataError(
            f"column {column!r} (date) has the value {shown!r} that does not match the date format "
            f"{date_format!r}; pass the right one with --date-format (strptime, e.g. '%d/%m/%Y') or "
            "date_format in mcp_sales.toml"
        )
    if "%Y" in date_format and year < 100:
        two_digits = date_format.replace("%Y", "%y")
        raise DataError(
            f"date_format {date_format!r} reads {shown!r} as the year {year}: two-digit years need %y; "
            f"set date_format = {two_digits!r} in mcp_sales.toml or pass --date-format {two_digits!r}"
        )
    raise DataError(
        f"date_format {date_format!r} reads {shown!r} (column {column!r}) as the year {year}, outside "
        f"{MIN_YEAR}-{MAX_YEAR}; fix those rows, or the format in --date-format or mcp_sales.toml"
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
    # Detection read every distinct value, but only a sample of a column with very many of them.
    implausible = _error_text(
        DATE_MARK,
        f"column {column!r} (date) has the value '",
        f"' that the date format {date_format!r} reads as a year outside {MIN_YEAR}-{MAX_YEAR}; fix those "
        "rows or pass the right format with --date-format (strptime) or date_format in mcp_sales.toml",
        "t_date",
    )
    return (
        f"CASE WHEN d_date IS NULL AND t_date IS NOT NULL THEN error({message}) "
        f"WHEN NOT (year(d_date) BETWEEN {MIN_YEAR} AND {MAX_YEAR}) THEN error({implausible}) ELSE d_date END"
    )


def _error_text(mark: str, before: str, after: str, value_sql: str) -> str:
    """SQL building an error message around a value (shortened so the message stays one line)."""
    return f"{lit(mark + before)} || left({value_sql}, 60) || {lit(after)}"
