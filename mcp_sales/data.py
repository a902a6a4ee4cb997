"""The current version of a sales data file, and the DuckDB connection its queries run on.

A user's export (CSV in any common encoding, or Parquet; any column names, year+month or one date
column) is converted once (:mod:`mcp_sales.convert`) into a normalized Parquet file sorted by operation
plus a small pre-aggregate (operation x product x period). Both live in ``<cache root>/<version>/``,
where the version is a short hash of the file's content and the column mapping. Every server process
(each SSH session starts one) finds a finished conversion through the cache index
(:mod:`mcp_sales.cache`), so only the first one pays for it; a file lock makes two processes starting
together safe.

Opening a version reads only its metadata: DuckDB is imported, and the version's connection built,
by the first query. A question that needs none (a cached forecast) is answered without it.

The cache root is ``.mcp_sales_cache/`` beside the data file, or ``$XDG_CACHE_HOME/mcp_sales``
(``~/.cache/mcp_sales``) when the data directory is not writable.
"""

from __future__ import annotations

import datetime as dt
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from mcp_sales.cache import (
    default_cache_root,
    hash_stable,
    indexed_version,
    locked,
    read_meta,
    record,
    short_hash,
)
from mcp_sales.errors import DataError
from mcp_sales.mapping import MAPPING_FILES, ColumnMapping, load_mapping
from mcp_sales.models import NumberChecks
from mcp_sales.normalize import DateReading
from mcp_sales.sql import lit

if TYPE_CHECKING:
    import duckdb

# Part of every version id, and recorded in its metadata: bump it when the normalized layout or the
# metadata changes, so versions written by an older release are rebuilt, not reused.
# 3: rows with a non-finite units or revenue are left out and counted (meta "numbers").
# 4: the date format is detected from every distinct value: two-digit years read as %y, years outside
#    1900-2100 refused, day/month order decided by the values (meta "dates").
# 5: rows left out for an empty operation, product, units or date are counted in meta "numbers".
LAYOUT = "5"
QUERY_MEMORY_LIMIT = "512MB"
# The pre-aggregate is held in memory when at most this many rows (day-grain data can be larger).
AGG_IN_MEMORY_MAX_ROWS = 2_000_000


# --------------------------------------------------------------------------------------------------
# Prepared data


@dataclass(frozen=True)
class SalesData:
    """One prepared, immutable version of the sales data.

    Attributes:
        source: The data file.
        version: 12 hex digits of content + mapping; changes when either changes.
        mapping: The mapping as applied (source column names as spelled in the file).
        grain: "month" for year+month data, "day" for a date column.
        rows: Rows in the source file (including dropped ones).
        columns: Source columns as found in the file.
        operations: Sorted distinct operation names.
        first_period: Earliest period (first of the month for month grain).
        last_period: Latest period.
        cache_dir: This version's directory for derived files.
        has_revenue: Whether a revenue column is mapped.
        dropped_rows: Source rows left out: an empty operation, product, units or period, or a units or
            revenue value that is not a finite number.
        numbers: Rows with a non-finite units or revenue (left out) or negative units (kept), with the
            first data row of each.
        dates: How the date column was read (format, detected or configured, day/month order and
            whether it was assumed); None for year + month columns.
    """

    source: Path
    version: str
    mapping: ColumnMapping
    grain: Literal["month", "day"]
    rows: int
    columns: tuple[str, ...]
    operations: tuple[str, ...]
    first_period: dt.date
    last_period: dt.date
    cache_dir: Path
    has_revenue: bool
    dropped_rows: int
    numbers: NumberChecks
    dates: DateReading | None
    _db: _VersionDB = field(repr=False, compare=False)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on this version's connection; use one per thread.

        Views: ``sales`` (operation, product_id, product_name, period, units, revenue: the normalized
        rows), ``agg`` (the same summed per operation x product x period, plus ``lines``) and
        ``totals`` (per operation x product over all periods, plus first_period and last_period).
        The connection is built by the first call, from any thread.

        Raises:
            DataError: the version's Parquet files cannot be read; the store rebuilds the version on its
                next call.
        """
        return self._db.connection().cursor()


class _VersionDB:
    """The in-process DuckDB database of one version (views over its Parquet files), built on first use.

    Args:
        directory: The version's directory.
        agg_rows: Rows of its pre-aggregate (decides whether it is loaded into memory).
        meta_stamp: (inode, mtime_ns) of its meta.json when opened: tells a rebuilt version from this one.
    """

    def __init__(self, directory: Path, agg_rows: int, meta_stamp: tuple[int, int]) -> None:
        self.directory = directory
        self.agg_rows = agg_rows
        self.meta_stamp = meta_stamp
        # Set when the files turned out unreadable: the store then rebuilds instead of reusing this.
        self.damaged = False
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The connection, built once (the first caller builds it, concurrent ones wait for it).

        Raises:
            DataError: the Parquet files cannot be read.
        """
        connection = self._connection
        if connection is not None:
            return connection
        with self._lock:
            if self._connection is None:
                self._connection = self._connect()
            return self._connection

    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        # One thread: queries hit small tables, where starting threads costs more than it saves.
        connection = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": QUERY_MEMORY_LIMIT})
        try:
            connection.execute("SET enable_progress_bar = false")  # stdout belongs to the protocol
            sales, agg = lit(str(self.directory / "sales.parquet")), lit(str(self.directory / "agg.parquet"))
            connection.execute(f"CREATE VIEW sales AS SELECT * FROM read_parquet({sales})")
            # In memory, a query skips Parquet decoding; too large a day-grain aggregate stays on disk.
            kind = "TABLE" if self.agg_rows <= AGG_IN_MEMORY_MAX_ROWS else "VIEW"
            connection.execute(f"CREATE {kind} agg AS SELECT * FROM read_parquet({agg})")
            # All-time totals per operation x product: the common "top products" question reads only this.
            connection.execute(
                "CREATE TABLE totals AS SELECT operation, product_id, min(product_name) AS product_name, "
                "sum(units) AS units, sum(revenue) AS revenue, CAST(sum(lines) AS BIGINT) AS lines, "
                "min(period) AS first_period, max(period) AS last_period "
                "FROM agg GROUP BY operation, product_id ORDER BY operation, product_id"
            )
        except duckdb.Error as exc:
            connection.close()
            self.damaged = True
            reason = next(
                (line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__
            )
            raise DataError(
                f"the converted data in {self.directory} cannot be read ({reason}); it is rebuilt on the "
                "next call, so ask again"
            ) from None
        return connection


# --------------------------------------------------------------------------------------------------
# The store


class SalesStore:
    """The current version of one data file, re-prepared when the file (or its mapping file) changes.

    Args:
        path: The CSV or Parquet data file.
        mapping: The column mapping; None reads it with :func:`~mcp_sales.mapping.load_mapping` (and
            re-reads it when the mapping file changes).
        cache_root: Where versions are stored; None picks ``.mcp_sales_cache`` beside the data, or the
            user cache directory when that is not writable.
    """

    def __init__(
        self, path: Path, mapping: ColumnMapping | None = None, cache_root: Path | None = None
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self._mapping = mapping
        self._cache_root = Path(cache_root).expanduser().absolute() if cache_root is not None else None
        self._lock = threading.Lock()
        self._state: tuple[tuple[Any, ...], SalesData] | None = None
        # Conversions this store performed (not reused from disk): lets callers and tests see reuse.
        self.conversions = 0

    def current(self) -> SalesData:
        """The prepared data for the file as it is now.

        A stat per call; when size, mtime or inode changed the content hash decides whether the version
        changed (a touch keeps it), and a new version is converted on the spot. A version whose files
        proved unreadable is rebuilt.

        Raises:
            DataError: the file is missing, unreadable, empty or does not fit the mapping.
        """
        stamp = self._stamp()
        state = self._state
        if state is not None and state[0] == stamp and not state[1]._db.damaged:
            return state[1]
        with self._lock:
            state = self._state
            if state is not None and state[0] == stamp and not state[1]._db.damaged:
                return state[1]
            damaged = state[1] if state is not None and state[1]._db.damaged else None
            stamp, data = self._prepare(stamp, damaged)
            if (
                state is not None
                and damaged is None
                and (state[1].version, state[1].source) == (data.version, data.source)
            ):
                data = state[1]  # same content: keep the open connection and warmed caches
            self._state = (stamp, data)
            return data

    def _stamp(self) -> tuple[Any, ...]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise DataError(
                f"data file {self.path} not found; pass --data PATH or copy the file there (mcpctl sync)"
            ) from None
        except OSError as exc:
            raise DataError(
                f"cannot access data file {self.path} ({exc.strerror}); check its permissions"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise DataError(
                f"data path {self.path} is not a file; pass a CSV or Parquet file with --data PATH"
            )
        stamp: tuple[Any, ...] = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._mapping is None:
            for name in MAPPING_FILES:
                try:
                    mst = (self.path.parent / name).stat()
                    stamp += ((mst.st_size, mst.st_mtime_ns, mst.st_ino),)
                except OSError:
                    stamp += (None,)
        return stamp

    def _root(self) -> Path:
        if self._cache_root is None:
            self._cache_root = default_cache_root(self.path)
        try:
            self._cache_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot create cache directory {self._cache_root} ({exc.strerror}); make it writable"
            ) from None
        return self._cache_root

    def _prepare(
        self, stamp: tuple[Any, ...], damaged: SalesData | None
    ) -> tuple[tuple[Any, ...], SalesData]:
        mapping = self._mapping if self._mapping is not None else load_mapping(self.path)
        root = self._root()
        key = f"{short_hash(mapping.key())}:{self.path}"
        file_stamp = list(stamp[:3])
        # Fast path for a new process: a finished conversion recorded for this exact size/mtime/inode.
        version = indexed_version(root, key, file_stamp)
        if version is not None:
            data = _open_version(root / version, self.path, version)
            if data is not None and not _same_files(data, damaged):
                return stamp, data
        with locked(root):
            version = indexed_version(root, key, file_stamp)  # another process may have just finished
            if version is None:
                try:
                    digest, file_stamp = hash_stable(self.path)
                except OSError as exc:
                    raise DataError(
                        f"cannot read data file {self.path} ({exc.strerror}); check its permissions"
                    ) from None
                stamp = (*file_stamp, *stamp[3:])
                version = short_hash(f"{LAYOUT}\n{digest}\n{mapping.key()}")
            data = _open_version(root / version, self.path, version)
            # Never converted, or damaged (and not rebuilt by another process meanwhile): (re)build it.
            if data is None or _same_files(data, damaged):
                from mcp_sales.convert import build_version  # only the first process pays for importing it

                build_version(self.path, mapping, root, version)
                self.conversions += 1
                data = _open_version(root / version, self.path, version)
                if data is None:
                    raise DataError(
                        f"cannot open the converted data in {root / version}; delete it and retry"
                    )
            record(root, key, str(self.path), file_stamp, version)
            return stamp, data


def _same_files(data: SalesData, damaged: SalesData | None) -> bool:
    """Whether ``data`` is the very version found damaged (same directory, not rebuilt since)."""
    return (
        damaged is not None
        and data.cache_dir == damaged.cache_dir
        and data._db.meta_stamp == damaged._db.meta_stamp
    )


def _open_version(directory: Path, source: Path, version: str) -> SalesData | None:
    """The prepared data of a finished version, from its metadata alone; None if it vanished or is
    damaged. No DuckDB here: the connection is built by the first query."""
    found = read_meta(directory)
    if found is None:
        return None
    meta, meta_stamp = found
    if meta.get("layout") != LAYOUT:
        return None  # written by another release (the index may still point at it): rebuilt
    try:
        numbers = NumberChecks.model_validate(meta["numbers"])
    except (KeyError, ValidationError):
        return None  # damaged: rebuilt
    return SalesData(
        source=source,
        version=version,
        mapping=ColumnMapping(**meta["mapping"]),
        grain=meta["grain"],
        rows=meta["rows"],
        columns=tuple(meta["columns"]),
        operations=tuple(meta["operations"]),
        first_period=dt.date.fromisoformat(meta["first_period"]),
        last_period=dt.date.fromisoformat(meta["last_period"]),
        cache_dir=directory,
        has_revenue=meta["has_revenue"],
        dropped_rows=meta["dropped_rows"],
        numbers=numbers,
        dates=DateReading.from_meta(meta.get("dates")),
        _db=_VersionDB(directory, meta["agg_rows"], meta_stamp),
    )
