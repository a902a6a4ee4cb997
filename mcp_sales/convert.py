"""Convert a user's export into a version: normalized Parquet sorted by operation + a pre-aggregate.

Runs once per data version, in a work directory renamed into place when complete, with DuckDB under a
memory limit (spilling to the work directory) so files larger than memory convert too. Every error a
user can cause becomes one :class:`~mcp_sales.errors.DataError` sentence saying what to fix.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_sales.cache import META, VERSION_FILES, atomic_write
from mcp_sales.data import LAYOUT
from mcp_sales.errors import DataError, echo
from mcp_sales.mapping import ColumnMapping, resolve_columns
from mcp_sales.models import NumberChecks, RowsNoted
from mcp_sales.normalize import (
    DATE_MARK,
    MARK,
    DateReading,
    has_no_day,
    is_temporal,
    normalized_select,
    read_date_column,
)
from mcp_sales.sources import detect_encoding, first_bad_line, read_csv_sql, sniff_kind, utf8_copy
from mcp_sales.sql import lit, one

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger(__name__)

CONVERT_MEMORY_LIMIT = "1GB"

# Staged rows the version leaves out. A number cell that parses but is not finite (NaN, inf, -inf in any
# spelling DuckDB reads, 1e999, or a NaN stored in a Parquet DOUBLE) is as unusable as an empty one:
# such rows are dropped like incomplete rows and counted, so `check` can say how many and where.
_INCOMPLETE = "(operation IS NULL OR product_id IS NULL OR units IS NULL OR period IS NULL)"
_UNITS_NOT_FINITE = "(units IS NOT NULL AND NOT isfinite(units))"
_REVENUE_NOT_FINITE = "(revenue IS NOT NULL AND NOT isfinite(revenue))"
_LEFT_OUT = f"({_INCOMPLETE} OR {_UNITS_NOT_FINITE} OR {_REVENUE_NOT_FINITE})"
_NEGATIVE_UNITS = f"(units < 0 AND NOT {_LEFT_OUT})"


def build_version(source: Path, mapping: ColumnMapping, root: Path, version: str) -> None:
    """Convert ``source`` into ``root/version`` (built in a work directory, renamed when complete).

    Raises:
        DataError: the source does not convert, or the cache directory cannot be written.
    """
    started = time.perf_counter()
    target = root / version
    try:
        work = Path(tempfile.mkdtemp(prefix=f"{version}.tmp-", dir=root))
        try:
            meta = _convert(source, mapping, work)
            for scratch in ("stage.parquet", "utf8.csv", "spill"):
                if (work / scratch).is_dir():
                    shutil.rmtree(work / scratch, ignore_errors=True)
                else:
                    (work / scratch).unlink(missing_ok=True)
            # Sizes let an opening process spot a truncated or replaced file without reading it.
            meta["files"] = {name: (work / name).stat().st_size for name in VERSION_FILES}
            atomic_write(work / META, json.dumps(meta, indent=1).encode("utf-8"))
            if target.exists():  # a damaged version: replace it
                shutil.rmtree(target)
            os.replace(work, target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        raise DataError(
            f"cannot write the converted data to {root} ({exc.strerror or exc}); free disk space or make it "
            "writable"
        ) from None
    logger.info(
        "prepared data version %s from %s (%d rows) in %.1f s",
        version,
        source.name,
        meta["rows"],
        time.perf_counter() - started,
    )


def _convert(source: Path, mapping: ColumnMapping, work: Path) -> dict[str, Any]:
    """Write ``sales.parquet`` and ``agg.parquet`` into ``work`` and return the version's metadata."""
    import duckdb

    kind = sniff_kind(source)
    encoding = None if kind == "parquet" else mapping.encoding or detect_encoding(source)
    con = duckdb.connect(
        ":memory:",
        config={
            "memory_limit": CONVERT_MEMORY_LIMIT,
            # More threads than this would need more memory than the limit allows for big sorts.
            "threads": min(4, os.cpu_count() or 1),
            # Order is imposed explicitly where it matters; without this DuckDB can stream big copies.
            "preserve_insertion_order": False,
        },
    )
    csv_path: Path | None = None
    try:
        con.execute(f"SET temp_directory = {lit(str(work / 'spill'))}")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # stdout belongs to the protocol
        if encoding is not None:
            csv_path = utf8_copy(source, encoding, work)
        src = f"read_parquet({lit(str(source))})" if csv_path is None else read_csv_sql(csv_path)
        relation = con.sql(f"SELECT * FROM {src}")
        columns = tuple(relation.columns)
        types = {name: str(type_).upper() for name, type_ in zip(columns, relation.types, strict=True)}
        effective = resolve_columns(mapping, columns, source.name)
        if effective.date is None and effective.date_format:
            # Silently ignoring it would hide a mapping the user believes is in force.
            raise DataError(
                f"date_format {echo(effective.date_format)} applies to a date column, but {source.name} is "
                f"read by its year ({effective.year!r}) and month ({effective.month!r}) columns; drop "
                "date_format, or map the date column with --column date=COLUMN"
            )
        dates: DateReading | None = None
        if effective.date is not None:
            # The whole column decides the format up front, so a late value cannot change it midway.
            temporal = is_temporal(types[effective.date])
            dates = DateReading(None, "typed") if temporal else read_date_column(con, src, effective)
        date_format = dates.format if dates is not None else None
        select = normalized_select(src, effective, types, date_format)
        stage = lit(str(work / "stage.parquet"))
        # lz4: the stage file is read once, right away; writing speed matters more than its size.
        con.execute(f"COPY ({select}) TO {stage} (FORMAT parquet, COMPRESSION lz4_raw)")
        effective = dataclasses.replace(effective, date_format=date_format, encoding=encoding)
        return {
            **_finish(con, work, source, effective, columns, select),
            "dates": dates.as_meta() if dates is not None else None,
        }
    except duckdb.Error as exc:
        if encoding == "utf-8" and mapping.encoding is None and "unicode" in str(exc).lower():
            # Non-UTF-8 bytes past the sampled part of the file: read it as cp1252 after all.
            logger.info("%s is not UTF-8 throughout; reading it as cp1252", source.name)
            con.close()
            return _convert(source, dataclasses.replace(mapping, encoding="cp1252"), work)
        raise _translate(exc, source, encoding, csv_path) from None
    finally:
        con.close()


def _finish(
    con: duckdb.DuckDBPyConnection,
    work: Path,
    source: Path,
    mapping: ColumnMapping,
    columns: tuple[str, ...],
    select: str,
) -> dict[str, Any]:
    """From the staged rows: drop incomplete and non-finite ones, sort by operation, aggregate, collect
    metadata. ``select`` is the normalizing query the stage was written with."""
    stage = f"read_parquet({lit(str(work / 'stage.parquet'))})"
    kept = f"NOT {_LEFT_OUT}"
    total, empty, dropped, units_not_finite, revenue_not_finite, negative, units_size, revenue_size = one(
        con,
        f"SELECT count(*), count(*) FILTER (WHERE {_INCOMPLETE}), count(*) FILTER (WHERE {_LEFT_OUT}), "
        f"count(*) FILTER (WHERE {_UNITS_NOT_FINITE}), count(*) FILTER (WHERE {_REVENUE_NOT_FINITE}), "
        f"count(*) FILTER (WHERE {_NEGATIVE_UNITS}), "
        f"sum(abs(units)) FILTER (WHERE {kept}), sum(abs(revenue)) FILTER (WHERE {kept}) FROM {stage}",
    )
    if total == 0:
        raise DataError(f"data file {source.name} has a header but no rows; export the data again")
    if dropped == total:
        raise DataError(
            f"all {total} rows of {source.name} have an empty operation, product, units or date, or a "
            "units or revenue value that is not a finite number; check the column mapping "
            "(--column FIELD=COLUMN)"
        )
    _check_addable(mapping, units_size, revenue_size)
    if empty:
        logger.warning(
            "dropped %d of %d rows of %s with an empty operation, product, units or date",
            empty,
            total,
            source.name,
        )
    numbers = NumberChecks()
    if empty or units_not_finite or revenue_not_finite or negative:
        numbers = _number_checks(con, select, units_not_finite, revenue_not_finite, negative, empty)
        for note in numbers.notes():
            logger.warning("%s: %s", source.name, note)
    sales = lit(str(work / "sales.parquet"))
    # Sorted on operation alone: enough for row-group pruning, at half the cost of a full sort.
    complete = f"SELECT * FROM {stage} WHERE {kept}"
    con.execute(f"COPY ({complete} ORDER BY operation) TO {sales} (FORMAT parquet)")
    # One name per product id (the one on most lines), so the id is the product's identity.
    con.execute(
        f"""
        COPY (
            WITH g AS (
                SELECT operation, product_id, product_name, period,
                       sum(units) AS units, sum(revenue) AS revenue, count(*) AS lines
                FROM read_parquet({sales}) GROUP BY ALL
            ), names AS (
                SELECT product_id, first(product_name ORDER BY lines DESC, product_name) AS product_name
                FROM (SELECT product_id, product_name, sum(lines) AS lines FROM g GROUP BY ALL)
                GROUP BY product_id
            )
            SELECT g.operation, g.product_id, names.product_name, g.period,
                   sum(g.units) AS units, sum(g.revenue) AS revenue, CAST(sum(g.lines) AS BIGINT) AS lines
            FROM g JOIN names USING (product_id)
            GROUP BY ALL ORDER BY operation, product_id, period
        ) TO {lit(str(work / "agg.parquet"))} (FORMAT parquet)
        """
    )
    agg = f"read_parquet({lit(str(work / 'agg.parquet'))})"
    agg_rows, first, last = one(con, f"SELECT count(*), min(period), max(period) FROM {agg}")
    operations = sorted(row[0] for row in con.execute(f"SELECT DISTINCT operation FROM {agg}").fetchall())
    return {
        "layout": LAYOUT,
        "mapping": dataclasses.asdict(mapping),
        "grain": "month" if mapping.date is None or has_no_day(mapping.date_format) else "day",
        "rows": int(total),
        "dropped_rows": int(dropped),
        "numbers": numbers.model_dump(mode="json"),
        "columns": list(columns),
        "operations": operations,
        "first_period": first.isoformat(),
        "last_period": last.isoformat(),
        "has_revenue": mapping.revenue is not None,
        "agg_rows": int(agg_rows),
        "source_name": source.name,
        "prepared_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "prepared_by_pid": os.getpid(),
    }


def _check_addable(mapping: ColumnMapping, units_size: float | None, revenue_size: float | None) -> None:
    """Refuse numbers whose sum overflows a double: every total a tool reports must be finite.

    ``*_size`` is the sum of absolute values, which bounds every sum of a subset of the rows.

    Raises:
        DataError: names the column.
    """
    for field, column, size in (
        ("units", mapping.units, units_size),
        ("revenue", mapping.revenue, revenue_size),
    ):
        if size is not None and not math.isfinite(size):
            raise DataError(
                f"column {column!r} ({field}) has values so large that their total passes 1.8e308, the "
                f"largest number DuckDB holds; fix those rows or map another column with --column {field}=COL"
            )


def _number_checks(
    con: duckdb.DuckDBPyConnection,
    select: str,
    units_not_finite: int,
    revenue_not_finite: int,
    negative: int,
    incomplete: int,
) -> NumberChecks:
    """The counts, with the data row (1-based, header not counted) of the first of each kind.

    A second pass over the source, numbering rows in file order: only files with such values pay for it,
    and DuckDB numbers rows in a streaming window, so it needs no memory beyond the scan's.
    """
    con.execute("SET preserve_insertion_order = true")  # row_number() OVER () then follows the file
    try:
        first_units, first_revenue, first_negative, first_incomplete = one(
            con,
            f"SELECT min(data_row) FILTER (WHERE {_UNITS_NOT_FINITE}), "
            f"min(data_row) FILTER (WHERE {_REVENUE_NOT_FINITE}), "
            f"min(data_row) FILTER (WHERE {_NEGATIVE_UNITS}), "
            f"min(data_row) FILTER (WHERE {_INCOMPLETE}) "
            f"FROM (SELECT row_number() OVER () AS data_row, * FROM ({select}))",
        )
    finally:
        con.execute("SET preserve_insertion_order = false")
    return NumberChecks(
        units_not_finite=RowsNoted(rows=units_not_finite, first_row=first_units),
        revenue_not_finite=RowsNoted(rows=revenue_not_finite, first_row=first_revenue),
        negative_units=RowsNoted(rows=negative, first_row=first_negative),
        incomplete=RowsNoted(rows=incomplete, first_row=first_incomplete),
    )


def _translate(exc: Exception, source: Path, encoding: str | None, csv_path: Path | None) -> DataError:
    """One actionable sentence for an error DuckDB raised while reading the source."""
    text = str(exc)
    for mark in (DATE_MARK, MARK):
        if mark in text:
            return DataError(text.split(mark, 1)[1].splitlines()[0].strip())
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    first = re.sub(r"^[A-Za-z ]*Error: ", "", first)
    if "No space left" in text:
        return DataError(f"no disk space left to convert {source.name}; free space in the cache directory")
    if csv_path is None:
        return DataError(f"cannot read {source.name} as Parquet ({first}); export the file again")
    if "unicode" in text.lower():
        return DataError(
            f"data file {source.name} is not valid {encoding or 'UTF-8'} text; set its encoding with "
            "--column encoding=NAME (e.g. cp1252, utf-16) or encoding in mcp_sales.toml"
        )
    if "CSV Error on Line" in text or "sniffing" in text:
        where = first_bad_line(csv_path) or "its rows do not all fit the header"
        return DataError(f"cannot read {source.name} as CSV: {where}; fix the file or export it again")
    return DataError(
        f"cannot read {source.name} as CSV ({first}); check that it is a comma-, semicolon- or "
        "tab-separated export with one header row"
    )
