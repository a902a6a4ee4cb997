"""Load, validate and convert a sales export once; cache the result on disk under a data version.

A user's export (CSV in any common encoding, or Parquet; any column names, year+month or one date
column) is converted once into a normalized Parquet file sorted by operation plus a small
pre-aggregate (operation x product x period). Both live in ``<cache root>/<version>/``, where the
version is a short hash of the file's content and the column mapping. Every server process (each SSH
session starts one) finds a finished conversion through a small JSON index keyed by size and mtime,
so only the first one pays for it; a file lock makes two processes starting together safe.

The cache root is ``.mcp_sales_cache/`` beside the data file, or ``$XDG_CACHE_HOME/mcp_sales``
(``~/.cache/mcp_sales``) when the data directory is not writable.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mcp_sales.errors import DataError, InvalidInput

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger(__name__)

FIELDS = ("operation", "product_id", "product_name", "units", "revenue", "year", "month", "date")
OPTIONS = ("date_format", "encoding")  # mapping keys that are not columns
MAPPING_FILES = ("mcp_sales.toml", "mcp_sales.json")
CACHE_DIR_NAME = ".mcp_sales_cache"
# Part of every version id: bump it when the normalized layout changes so old caches are not reused.
LAYOUT = "2"
CONVERT_MEMORY_LIMIT = "1GB"
QUERY_MEMORY_LIMIT = "512MB"
# The pre-aggregate is held in memory when at most this many rows (day-grain data can be larger).
AGG_IN_MEMORY_MAX_ROWS = 2_000_000
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

_META = "meta.json"
_INDEX = "index.json"
_VERSION_RE = re.compile(r"[0-9a-f]{12}")
_MARK = "mcp_sales: "  # prefixes our own error() messages raised from inside DuckDB queries
_DATE_MARK = "mcp_sales date: "
_SAMPLE_BYTES = 1 << 20
# Encodings charset-normalizer may report that are not a Western single-byte code page. Any other
# legacy guess on a short sample (cp1250, cp850, mac_roman, ...) is read as cp1252: that is what
# spreadsheet exports in the Americas and Western Europe are, and the guesses differ only there.
_NON_LATIN = frozenset(
    (
        *("cp1251", "koi8_r", "koi8_u", "iso8859_5", "mac_cyrillic", "cp866", "cp855"),  # Cyrillic
        *("cp1253", "iso8859_7", "cp1255", "iso8859_8", "cp1256", "iso8859_6", "cp874", "tis_620"),
        *("big5", "big5hkscs", "gb2312", "gbk", "gb18030", "hz"),  # Chinese
        *("shift_jis", "cp932", "euc_jp", "iso2022_jp", "euc_kr", "cp949", "johab", "iso2022_kr"),
        *("utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be"),
    )
)


# --------------------------------------------------------------------------------------------------
# Column mapping


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each field; defaults are the reference schema.

    When ``date`` is set, ``year`` and ``month`` are ignored (cleared on construction).

    Raises:
        DataError: neither product column, or no complete time column, is mapped.
    """

    operation: str = "OPERATION_NAME"
    product_id: str | None = "PRODUCT_ID"
    product_name: str | None = "PRODUCT_NAME"
    units: str = "UNITS_SOLD"
    revenue: str | None = "REVENUE"
    year: str | None = "CALENDAR_YEAR"
    month: str | None = "CALENDAR_MONTH"
    date: str | None = None
    date_format: str | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        if self.date is not None:
            object.__setattr__(self, "year", None)
            object.__setattr__(self, "month", None)
        if not self.operation or not self.units:
            raise DataError(
                "the column mapping needs operation and units; map them with --column operation=COL"
            )
        if self.product_id is None and self.product_name is None:
            raise DataError(
                "the column mapping needs a product column; map one with --column product_id=COL "
                "or --column product_name=COL"
            )
        if self.date is None and (self.year is None or self.month is None):
            raise DataError(
                "the column mapping needs a time column; map one date column with --column date=COL "
                "or both --column year=COL and --column month=COL"
            )

    def as_dict(self) -> dict[str, str]:
        """Field -> source column, for the fields that are mapped."""
        return {name: value for name in FIELDS if (value := getattr(self, name)) is not None}

    def key(self) -> str:
        """A canonical text of the whole mapping (part of the data version)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _mapping_from(values: Mapping[str, Any]) -> ColumnMapping:
    return ColumnMapping(**values)


def parse_column_overrides(items: Sequence[str]) -> dict[str, str]:
    """Parse ``--column FIELD=COLUMN`` options (later ones win).

    ``date_format=...`` and ``encoding=...`` are accepted too. An empty column (``revenue=``) unmaps
    an optional field.

    Raises:
        InvalidInput: an item is not ``FIELD=COLUMN`` or names an unknown field.
    """
    known = FIELDS + OPTIONS
    result: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise InvalidInput(
                f"--column {item!r} is not FIELD=COLUMN; write it like --column units=QUANTITYORDERED "
                f"(fields: {', '.join(known)})"
            )
        if name not in known:
            raise InvalidInput(
                f"--column {item!r} names an unknown field {name!r}; fields are: {', '.join(known)}"
            )
        if not column.strip() and name in ("operation", "units"):
            raise InvalidInput(f"--column {item!r} needs a column name after '='; {name} is required")
        result[name] = column.strip()
    return result


def load_mapping(data_path: Path, overrides: Mapping[str, str] | None = None) -> ColumnMapping:
    """The column mapping for a data file: defaults <- mapping file beside the data <- overrides.

    The mapping file is ``mcp_sales.toml`` (a ``[columns]`` table) or ``mcp_sales.json``
    (``{"columns": {...}}``) in the data file's directory. In each layer, mapping ``date`` drops
    year/month and mapping year/month drops ``date``; an empty value unmaps an optional field.

    Raises:
        DataError: the mapping file is malformed or names an unknown field, or the result is incomplete.
    """
    values: dict[str, str | None] = dict(dataclasses.asdict(ColumnMapping()))
    defaults = dict(values)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    found = _read_mapping_file(Path(data_path).parent)
    if found is not None:
        layers.append(found)
    if overrides:
        layers.append(("--column", overrides))
    for origin, layer in layers:
        for name, column in layer.items():
            if name not in FIELDS + OPTIONS:
                raise DataError(
                    f"{origin} maps an unknown field {name!r}; fields are: {', '.join(FIELDS + OPTIONS)}"
                )
            if column is not None and not isinstance(column, str):
                raise DataError(f"{origin}: {name} must be a column name in quotes, not {column!r}")
            values[name] = column.strip() if column and column.strip() else None
        if values["date"] and "date" in layer:
            values["year"] = values["month"] = None
        elif "year" in layer or "month" in layer:
            values["date"] = None
            for part in ("year", "month"):
                if part not in layer and values[part] is None:
                    values[part] = defaults[part]
    try:
        return _mapping_from(values)
    except DataError as exc:
        where = " or ".join(origin for origin, _ in layers) or "the default mapping"
        raise DataError(f"{where}: {exc}") from None


def _read_mapping_file(directory: Path) -> tuple[str, Mapping[str, Any]] | None:
    """The ``columns`` table of the mapping file in ``directory`` as (file path, table), if any."""
    present = [directory / name for name in MAPPING_FILES if (directory / name).is_file()]
    if not present:
        return None
    if len(present) > 1:
        raise DataError(
            f"both {present[0]} and {present[1]} exist; keep one mapping file and delete the other"
        )
    path = present[0]
    try:
        raw = path.read_bytes()
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - exercised on 3.10 only
                import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
            document: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            document = json.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read mapping file {path} ({exc.strerror}); fix its permissions") from None
    except ValueError as exc:  # TOMLDecodeError, JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"mapping file {path} is malformed ({exc}); fix it or delete it") from None
    columns = document.get("columns") if isinstance(document, dict) else None
    if not isinstance(columns, dict):
        example = (
            '[columns] operation = "CITY"' if path.suffix == ".toml" else '{"columns": {"operation": "CITY"}}'
        )
        raise DataError(f"mapping file {path} has no columns table; add one, e.g. {example}")
    return str(path), columns


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
        dropped_rows: Source rows dropped for an empty operation, product, units or period.
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
    _db: _VersionDB = field(repr=False, compare=False)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on this version's connection; use one per thread.

        Views: ``sales`` (operation, product_id, product_name, period, units, revenue: the normalized
        rows), ``agg`` (the same summed per operation x product x period, plus ``lines``) and
        ``totals`` (per operation x product over all periods, plus first_period and last_period).
        """
        return self._db.connection.cursor()


class _VersionDB:
    """The in-process DuckDB database of one version: views over its Parquet files."""

    def __init__(self, directory: Path, agg_rows: int) -> None:
        import duckdb

        # One thread: queries hit small tables, where starting threads costs more than it saves.
        self.connection = duckdb.connect(
            ":memory:", config={"threads": 1, "memory_limit": QUERY_MEMORY_LIMIT}
        )
        self.connection.execute("SET enable_progress_bar = false")  # stdout belongs to the protocol
        sales, agg = _lit(str(directory / "sales.parquet")), _lit(str(directory / "agg.parquet"))
        self.connection.execute(f"CREATE VIEW sales AS SELECT * FROM read_parquet({sales})")
        # In memory, a query skips Parquet decoding; too large a day-grain aggregate stays on disk.
        kind = "TABLE" if agg_rows <= AGG_IN_MEMORY_MAX_ROWS else "VIEW"
        self.connection.execute(f"CREATE {kind} agg AS SELECT * FROM read_parquet({agg})")
        # All-time totals per operation x product: the common "top products" question reads only this.
        self.connection.execute(
            "CREATE TABLE totals AS SELECT operation, product_id, min(product_name) AS product_name, "
            "sum(units) AS units, sum(revenue) AS revenue, CAST(sum(lines) AS BIGINT) AS lines, "
            "min(period) AS first_period, max(period) AS last_period "
            "FROM agg GROUP BY operation, product_id ORDER BY operation, product_id"
        )


# --------------------------------------------------------------------------------------------------
# The store


class SalesStore:
    """The current version of one data file, re-prepared when the file (or its mapping file) changes.

    Args:
        path: The CSV or Parquet data file.
        mapping: The column mapping; None reads it with :func:`load_mapping` (and re-reads it when the
            mapping file changes).
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
        changed (a touch keeps it), and a new version is converted on the spot.

        Raises:
            DataError: the file is missing, unreadable, empty or does not fit the mapping.
        """
        stamp = self._stamp()
        state = self._state
        if state is not None and state[0] == stamp:
            return state[1]
        with self._lock:
            state = self._state
            if state is not None and state[0] == stamp:
                return state[1]
            stamp, data = self._prepare(stamp)
            if state is not None and state[1].version == data.version and state[1].source == data.source:
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
            self._cache_root = _default_cache_root(self.path)
        try:
            self._cache_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot create cache directory {self._cache_root} ({exc.strerror}); make it writable"
            ) from None
        return self._cache_root

    def _prepare(self, stamp: tuple[Any, ...]) -> tuple[tuple[Any, ...], SalesData]:
        mapping = self._mapping if self._mapping is not None else load_mapping(self.path)
        root = self._root()
        key = f"{_short_hash(mapping.key())}:{self.path}"
        file_stamp = list(stamp[:3])
        # Fast path for a new process: a finished conversion recorded for this exact size/mtime/inode.
        version = _indexed_version(root, key, file_stamp)
        if version is not None:
            data = _open_version(root / version, self.path, version)
            if data is not None:
                return stamp, data
        with _locked(root):
            version = _indexed_version(root, key, file_stamp)  # another process may have just finished
            if version is None:
                try:
                    digest, file_stamp = _hash_stable(self.path)
                except OSError as exc:
                    raise DataError(
                        f"cannot read data file {self.path} ({exc.strerror}); check its permissions"
                    ) from None
                stamp = (*file_stamp, *stamp[3:])
                version = _short_hash(f"{LAYOUT}\n{digest}\n{mapping.key()}")
            data = _open_version(root / version, self.path, version)
            if data is None:  # never converted, or damaged: (re)build it
                _build_version(self.path, mapping, root, version)
                self.conversions += 1
                data = _open_version(root / version, self.path, version)
                if data is None:
                    raise DataError(
                        f"cannot open the converted data in {root / version}; delete it and retry"
                    )
            _record(root, key, str(self.path), file_stamp, version)
            return stamp, data


def _default_cache_root(data_path: Path) -> Path:
    beside = data_path.parent / CACHE_DIR_NAME
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK | os.X_OK):
            return beside
    except OSError:
        pass
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    logger.info("data directory %s is not writable; caching in %s", data_path.parent, base / "mcp_sales")
    return base / "mcp_sales"


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=6).hexdigest()


def _hash_stable(path: Path) -> tuple[str, list[int]]:
    """Content hash plus the (size, mtime_ns, inode) it belongs to; re-hashes if written meanwhile."""
    for _ in range(5):
        before = path.stat()
        digest = hashlib.blake2b(digest_size=20)
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        after = path.stat()
        stamp = [after.st_size, after.st_mtime_ns, after.st_ino]
        if stamp == [before.st_size, before.st_mtime_ns, before.st_ino]:
            return digest.hexdigest(), stamp
    raise DataError(f"data file {path} keeps changing while it is read; wait until the copy has finished")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Exclusive lock on the cache root across processes (held while preparing a version)."""
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if sys.platform == "win32":  # pragma: no cover - the server runs on POSIX hosts
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read_index(root: Path) -> dict[str, Any]:
    try:
        index = json.loads((root / _INDEX).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _indexed_version(root: Path, key: str, file_stamp: list[int]) -> str | None:
    entry = _read_index(root).get(key)
    if not isinstance(entry, dict) or entry.get("stamp") != file_stamp:
        return None
    version = entry.get("version")
    if not isinstance(version, str) or _read_meta(root / version) is None:
        return None
    return version


def _record(root: Path, key: str, source: str, file_stamp: list[int], version: str) -> None:
    """Point the index at ``version`` for this source + mapping, then drop versions nobody needs.

    Each entry keeps its previous version too, so the last two versions of every file stay on disk
    (a process still serving the older one keeps working).
    """
    index = _read_index(root)
    old = index.get(key) if isinstance(index.get(key), dict) else None
    previous = old.get("previous") if old else None
    if old and old.get("version") != version:
        previous = old.get("version")
    index[key] = {"source": source, "stamp": file_stamp, "version": version, "previous": previous}
    # Forget files that are gone, so their versions can be collected.
    index = {k: v for k, v in index.items() if isinstance(v, dict) and Path(str(v.get("source"))).exists()}
    _atomic_write(root / _INDEX, json.dumps(index, indent=1, sort_keys=True).encode("utf-8"))
    keep = {v.get(name) for v in index.values() for name in ("version", "previous")}
    for child in root.iterdir():
        stale_version = _VERSION_RE.fullmatch(child.name) is not None and child.name not in keep
        # Work directories of crashed preparations: safe to remove, we hold the lock.
        if child.is_dir() and (stale_version or ".tmp-" in child.name):
            shutil.rmtree(child, ignore_errors=True)


def _atomic_write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_META_KEYS = (
    *("mapping", "grain", "rows", "dropped_rows", "columns", "operations"),
    *("first_period", "last_period", "has_revenue", "agg_rows"),
)


def _read_meta(directory: Path) -> dict[str, Any] | None:
    """A version's metadata, or None when the version is missing or damaged (then it is rebuilt)."""
    try:
        meta = json.loads((directory / _META).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    complete = isinstance(meta, dict) and all(k in meta for k in _META_KEYS)
    files = all((directory / name).is_file() for name in ("sales.parquet", "agg.parquet"))
    return meta if complete and files else None


def _open_version(directory: Path, source: Path, version: str) -> SalesData | None:
    """The prepared data of a finished version; None if it vanished or is damaged."""
    import duckdb

    meta = _read_meta(directory)
    if meta is None:
        return None
    try:
        db = _VersionDB(directory, meta["agg_rows"])
    except duckdb.Error:  # its Parquet files are unreadable: treat the version as missing
        return None
    return SalesData(
        source=source,
        version=version,
        mapping=_mapping_from(meta["mapping"]),
        grain=meta["grain"],
        rows=meta["rows"],
        columns=tuple(meta["columns"]),
        operations=tuple(meta["operations"]),
        first_period=dt.date.fromisoformat(meta["first_period"]),
        last_period=dt.date.fromisoformat(meta["last_period"]),
        cache_dir=directory,
        has_revenue=meta["has_revenue"],
        dropped_rows=meta["dropped_rows"],
        _db=db,
    )


# --------------------------------------------------------------------------------------------------
# Conversion


def _build_version(source: Path, mapping: ColumnMapping, root: Path, version: str) -> None:
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
            _atomic_write(work / _META, json.dumps(meta, indent=1).encode("utf-8"))
            if target.exists():  # a damaged version (its meta.json gone): replace it
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

    kind = _sniff_kind(source)
    encoding = None if kind == "parquet" else mapping.encoding or _detect_encoding(source)
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
        con.execute(f"SET temp_directory = {_lit(str(work / 'spill'))}")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # stdout belongs to the protocol
        if encoding is not None:
            csv_path = _utf8_copy(source, encoding, work)
        src = f"read_parquet({_lit(str(source))})" if csv_path is None else _read_csv_sql(csv_path)
        relation = con.sql(f"SELECT * FROM {src}")
        columns = tuple(relation.columns)
        types = {name: str(type_).upper() for name, type_ in zip(columns, relation.types, strict=True)}
        effective = _resolve_columns(mapping, columns, source.name)
        formats: list[str | None] = [None]
        if effective.date is not None and not _is_temporal(types[effective.date]):
            formats = (
                [effective.date_format]
                if effective.date_format
                else _detect_date_formats(con, src, effective)
            )
        for attempt, date_format in enumerate(formats):
            select = _normalized_select(src, effective, types, date_format)
            stage = _lit(str(work / "stage.parquet"))
            try:
                # lz4: the stage file is read once, right away; writing speed matters more than its size.
                con.execute(f"COPY ({select}) TO {stage} (FORMAT parquet, COMPRESSION lz4_raw)")
                break
            except duckdb.Error as exc:
                if _DATE_MARK in str(exc) and attempt + 1 < len(formats):
                    continue  # an ambiguous sample (all days <= 12): try the next format that fit it
                raise
        effective = dataclasses.replace(effective, date_format=date_format, encoding=encoding)
        return _finish(con, work, source, effective, columns)
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
    con: duckdb.DuckDBPyConnection, work: Path, source: Path, mapping: ColumnMapping, columns: tuple[str, ...]
) -> dict[str, Any]:
    """From the staged rows: drop incomplete ones, sort by operation, aggregate, collect metadata."""
    stage = f"read_parquet({_lit(str(work / 'stage.parquet'))})"
    incomplete = "operation IS NULL OR product_id IS NULL OR units IS NULL OR period IS NULL"
    total, dropped = _one(con, f"SELECT count(*), count(*) FILTER (WHERE {incomplete}) FROM {stage}")
    if total == 0:
        raise DataError(f"data file {source.name} has a header but no rows; export the data again")
    if dropped == total:
        raise DataError(
            f"all {total} rows of {source.name} have an empty operation, product, units or date; "
            "check the column mapping (--column FIELD=COLUMN)"
        )
    if dropped:
        logger.warning(
            "dropped %d of %d rows of %s with an empty operation, product, units or date",
            dropped,
            total,
            source.name,
        )
    sales = _lit(str(work / "sales.parquet"))
    # Sorted on operation alone: enough for row-group pruning, at half the cost of a full sort.
    complete = f"SELECT * FROM {stage} WHERE NOT ({incomplete})"
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
        ) TO {_lit(str(work / "agg.parquet"))} (FORMAT parquet)
        """
    )
    agg = f"read_parquet({_lit(str(work / 'agg.parquet'))})"
    agg_rows, first, last = _one(con, f"SELECT count(*), min(period), max(period) FROM {agg}")
    operations = sorted(row[0] for row in con.execute(f"SELECT DISTINCT operation FROM {agg}").fetchall())
    return {
        "mapping": dataclasses.asdict(mapping),
        "grain": "day" if mapping.date is not None else "month",
        "rows": int(total),
        "dropped_rows": int(dropped),
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


def _sniff_kind(source: Path) -> Literal["csv", "parquet"]:
    """Parquet by its magic bytes, CSV otherwise; refuse empty and obviously non-tabular files."""
    try:
        with source.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise DataError(f"cannot read data file {source} ({exc.strerror}); check its permissions") from None
    if not head:
        raise DataError(
            f"data file {source.name} is empty; export the sales data again or pass another --data file"
        )
    if head.startswith(b"PAR1"):
        return "parquet"
    if source.suffix.lower() in (".parquet", ".pq"):
        raise DataError(f"data file {source.name} is not a valid Parquet file; export it again")
    if head.startswith(b"\x1f\x8b"):
        raise DataError(
            f"data file {source.name} is gzip-compressed; decompress it (gunzip) and pass the CSV"
        )
    if head.startswith(b"PK\x03\x04"):
        raise DataError(
            f"data file {source.name} looks like an Excel or zip file; save it as CSV and pass that"
        )
    return "csv"


def _detect_encoding(source: Path) -> str:
    """The text encoding of a CSV file, judged from its beginning and end."""
    with source.open("rb") as f:
        head = f.read(_SAMPLE_BYTES)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(len(head), size - _SAMPLE_BYTES // 4))
        tail = f.read()
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8"),  # DuckDB skips a UTF-8 byte order mark itself
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if head.startswith(bom):
            return name
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > len(odd) * 0.3:
            return "utf-16-le"
        if even.count(0) > len(even) * 0.3:
            return "utf-16-be"
        raise DataError(
            f"data file {source.name} is not a CSV or Parquet file (it looks binary); export it as CSV"
        )
    if _is_utf8(head, partial_end=len(head) == _SAMPLE_BYTES) and _is_utf8(tail, partial_start=True):
        return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(head).best()
    guess = best.encoding if best is not None else "cp1252"
    return guess if guess in _NON_LATIN else "cp1252"


def _is_utf8(sample: bytes, *, partial_start: bool = False, partial_end: bool = False) -> bool:
    """Whether ``sample`` is UTF-8, allowing a character cut at a sampled edge."""
    if partial_start:
        sample = sample[next((i for i, b in enumerate(sample[:4]) if b & 0xC0 != 0x80), 0) :]
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=not partial_end)
    except UnicodeDecodeError:
        return False
    return True


def _latin1_fallback(error: UnicodeError) -> tuple[str, int]:
    """Decode bytes cp1252 leaves undefined (0x81, 0x8d, ...) as their latin-1 characters."""
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("mcp_sales_latin1", _latin1_fallback)


def _utf8_copy(source: Path, encoding: str, work: Path) -> Path:
    """The CSV as UTF-8: the file itself, or a streamed transcoded copy in ``work``."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(
            f"unknown encoding {encoding!r} for {source.name}; use one like utf-8, cp1252, latin-1 or utf-16"
        ) from None
    if codec == "utf-8":
        return source
    path = work / "utf8.csv"
    decoder = codecs.getincrementaldecoder(codec)(
        errors="mcp_sales_latin1" if codec == "cp1252" else "replace"
    )
    with source.open("rb") as raw, path.open("w", encoding="utf-8", newline="") as out:
        while chunk := raw.read(4 << 20):
            out.write(decoder.decode(chunk))
        out.write(decoder.decode(b"", final=True))
    return path


def _read_csv_sql(path: Path) -> str:
    """A DuckDB ``read_csv`` of a UTF-8 CSV with a header line."""
    # Everything as text: ids keep leading zeros, and bad values are reported by us, with the column.
    options = "header = true, skip = 0, all_varchar = true"
    delimiter = _header_delimiter(path)
    if delimiter is not None:
        # Fixed from the header line: on a damaged file DuckDB's sniffer would otherwise guess some
        # other layout and report misleading columns instead of the broken line.
        options += f", delim = {_lit(delimiter)}"
    return f"read_csv({_lit(str(path))}, {options})"


def _first_bad_line(path: Path, max_lines: int = 2_000_000) -> str | None:
    """Where a CSV stops fitting its header, e.g. "line 7 has 9 fields but the header has 7"."""
    import csv

    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=_header_delimiter(path) or ",", strict=True)
        start = 1
        try:
            header = next(reader, [])
            while reader.line_num < max_lines:
                start = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    return None
                if row and len(row) != len(header):
                    return f"line {start} has {len(row)} fields but the header has {len(header)}"
        except csv.Error:
            return f"line {start} has an unbalanced quote"
    return None


def _header_delimiter(path: Path) -> str | None:
    """The separator used in the header line (the most frequent of , ; tab |), if any."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        header = f.readline(1 << 16)
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else None


def _resolve_columns(mapping: ColumnMapping, columns: tuple[str, ...], name: str) -> ColumnMapping:
    """The mapping with each column spelled as in the file.

    A column matches exactly, else case-insensitively. Optional fields left at their default
    (product_id, product_name, revenue) are unmapped when the file lacks them.

    Raises:
        DataError: a mapped column is missing, listing the file's columns and the option to fix it.
    """
    by_folded: dict[str, list[str]] = {}
    for column in columns:
        by_folded.setdefault(column.strip().casefold(), []).append(column)
    defaults = ColumnMapping()
    resolved: dict[str, str | None] = {}
    missing: list[str] = []
    for field_name in FIELDS:
        wanted = getattr(mapping, field_name)
        if wanted is None:
            continue
        matches = [wanted] if wanted in columns else by_folded.get(wanted.strip().casefold(), [])
        if len(matches) == 1:
            resolved[field_name] = matches[0]
        elif field_name in ("product_id", "product_name", "revenue") and wanted == getattr(
            defaults, field_name
        ):
            resolved[field_name] = None
        else:
            missing.append(field_name)
    no_product = resolved.get("product_id") is None and resolved.get("product_name") is None
    if no_product and not {"product_id", "product_name"} & set(missing):
        missing.insert(1 if missing[:1] == ["operation"] else 0, "product_id")
    if missing:
        raise DataError(_missing_columns_message(mapping, missing, columns, name))
    return _mapping_from({**dataclasses.asdict(mapping), **resolved})


# Column names often used for each field in exports, for the suggestion in the error message.
_ALIASES = {
    "operation": (
        "city",
        "operation",
        "store",
        "site",
        "location",
        "branch",
        "region",
        "territory",
        "market",
    ),
    "product_id": ("productcode", "product_code", "sku", "productid", "item", "itemcode", "code"),
    "product_name": ("productname", "product", "productline", "item_name", "description", "name"),
    "units": ("quantityordered", "quantity", "qty", "units", "unitssold", "volume"),
    "revenue": ("sales", "revenue", "amount", "total", "net_sales", "value"),
    "year": ("year", "yr", "year_id", "calendar_year"),
    "month": ("month", "month_id", "mon", "calendar_month"),
    "date": ("orderdate", "order_date", "date", "invoice_date", "sale_date", "day"),
}


def _suggest(field_name: str, columns: tuple[str, ...]) -> str:
    """A plausible source column for a field, or ``COL``."""
    import difflib

    folded = {c.casefold().replace(" ", "_"): c for c in columns}
    for alias in _ALIASES[field_name]:
        for key, column in folded.items():
            if key == alias or key.replace("_", "") == alias.replace("_", ""):
                return column
    for alias in _ALIASES[field_name]:
        for key, column in folded.items():
            if len(alias) >= 4 and alias in key:  # short aliases ("qty", "mon") only match whole names
                return column
    close = difflib.get_close_matches(field_name, list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else "COL"


def _missing_columns_message(
    mapping: ColumnMapping, missing: list[str], columns: tuple[str, ...], name: str
) -> str:
    fixes: list[str] = []
    for field_name in missing:
        if field_name in ("year", "month") and mapping.date is None:
            guess = _suggest("date", columns)
            if guess != "COL" and "year" in missing and "month" in missing:
                fixes.append(f"date={guess}")
                continue
        fixes.append(f"{field_name}={_suggest(field_name, columns)}")
    fixes = list(dict.fromkeys(fixes))
    listed = ", ".join(columns)
    if len(missing) == 1:
        wanted = getattr(mapping, missing[0]) or missing[0].upper()
        fix = fixes[0]
        toml = f'{fix.split("=", 1)[0]} = "{fix.split("=", 1)[1]}"'
        return (
            f"column {wanted!r} ({missing[0]}) not found in {name}; columns are: {listed}; "
            f"map it with --column {fix} or in mcp_sales.toml [columns] {toml}"
        )
    wanted = ", ".join(f"{getattr(mapping, m) or m.upper()!r} ({m})" for m in missing)
    options = " ".join(f"--column {fix}" for fix in fixes)
    return (
        f"columns {wanted} not found in {name}; columns are: {listed}; "
        f"map them with {options} or in mcp_sales.toml [columns]"
    )


def _is_temporal(type_name: str) -> bool:
    return type_name.startswith(("DATE", "TIMESTAMP"))


def _is_numeric(type_name: str) -> bool:
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


def _detect_date_formats(
    con: duckdb.DuckDBPyConnection, src: str, mapping: ColumnMapping
) -> list[str | None]:
    """Formats (best first) that parse every value in a sample of the date column.

    Raises:
        DataError: no known format parses the sample; names the column, an example and --date-format.
    """
    assert mapping.date is not None
    column = _ident(mapping.date)
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
    checks = ", ".join(f"count(*) FILTER (WHERE try_strptime(v, {_lit(f)}) IS NULL)" for f in DATE_FORMATS)
    failures = _one(con, f"SELECT {checks} FROM date_sample")
    fitting: list[str | None] = [f for f, bad in zip(DATE_FORMATS, failures, strict=True) if bad == 0]
    if fitting:
        return fitting
    best = DATE_FORMATS[min(range(len(DATE_FORMATS)), key=lambda i: failures[i])]
    (example,) = _one(con, f"SELECT v FROM date_sample WHERE try_strptime(v, {_lit(best)}) IS NULL LIMIT 1")
    raise DataError(
        f"column {mapping.date!r} (date) has values like {example!r} that no known date format parses; "
        "pass the format with --date-format (strptime, e.g. '%d.%m.%Y') or date_format in mcp_sales.toml"
    )


def _normalized_select(
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
        if _is_numeric(types[column]):
            text.append(f"CAST({_ident(column)} AS DOUBLE) AS n_{name}")
            text.append(f"CAST(NULL AS VARCHAR) AS t_{name}")
            parsed += [f"n_{name}", f"t_{name}"]
        else:
            text.append(f"{_text_expr(column)} AS t_{name}")
            parsed += [f"t_{name}", f"{_parse_number(f't_{name}')} AS n_{name}"]
    if mapping.date is not None:
        if _is_temporal(types[mapping.date]):
            text.append(f"CAST({_ident(mapping.date)} AS DATE) AS d_date")
            parsed.append("d_date")
        else:
            assert date_format is not None
            text.append(f"{_text_expr(mapping.date)} AS t_date")
            parsed += ["t_date", f"CAST(try_strptime(t_date, {_lit(date_format)}) AS DATE) AS d_date"]
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
    return f"NULLIF(trim(CAST({_ident(column)} AS VARCHAR)), '')"


def _parse_number(text: str) -> str:
    """A DOUBLE from text such as ``2871.5``, ``-$1,234.50``; NULL when it is not a number."""
    grouped = r"[-+]?[$€£]?\s*\d{1,3}(,\d{3})*(\.\d+)?"
    # COALESCE evaluates the regular expressions only for the rare values a plain cast rejects.
    return (
        f"COALESCE(TRY_CAST({text} AS DOUBLE), TRY_CAST(CASE WHEN regexp_full_match({text}, {_lit(grouped)}) "
        f"THEN regexp_replace({text}, '[$€£,\\s]', '', 'g') END AS DOUBLE))"
    )


def _checked_number(name: str, column: str) -> str:
    message = _error_text(
        _MARK,
        f"column {column!r} ({name}) has a value that is not a number: '",
        f"'; fix those rows or map another column with --column {name}=COL",
        f"t_{name}",
    )
    return f"CASE WHEN n_{name} IS NULL AND t_{name} IS NOT NULL THEN error({message}) ELSE n_{name} END"


def _checked_whole(name: str, column: str, low: int, high: int, plural: str) -> str:
    message = _error_text(
        _MARK,
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
        _DATE_MARK,
        f"column {column!r} (date) has the value '",
        f"' that does not match the date format {date_format!r}; pass the right one with "
        "--date-format (strptime, e.g. '%d/%m/%Y') or date_format in mcp_sales.toml",
        "t_date",
    )
    return f"CASE WHEN d_date IS NULL AND t_date IS NOT NULL THEN error({message}) ELSE d_date END"


def _error_text(mark: str, before: str, after: str, value_sql: str) -> str:
    """SQL building an error message around a value (shortened so the message stays one line)."""
    return f"{_lit(mark + before)} || left({value_sql}, 60) || {_lit(after)}"


def _translate(exc: Exception, source: Path, encoding: str | None, csv_path: Path | None) -> DataError:
    """One actionable sentence for an error DuckDB raised while reading the source."""
    text = str(exc)
    for mark in (_DATE_MARK, _MARK):
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
        where = _first_bad_line(csv_path) or "its rows do not all fit the header"
        return DataError(f"cannot read {source.name} as CSV: {where}; fix the file or export it again")
    return DataError(
        f"cannot read {source.name} as CSV ({first}); check that it is a comma-, semicolon- or "
        "tab-separated export with one header row"
    )


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The first row of a query that always returns one (an aggregate, a LIMIT 1 known to match)."""
    row = con.execute(sql).fetchone()
    assert row is not None
    return row


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
