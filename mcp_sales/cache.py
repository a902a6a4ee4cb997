"""The on-disk cache of converted versions: where it lives, its index, its lock, and what it keeps.

Layout of a cache root::

    .lock                   flock held while a version is prepared (by any process)
    index.json              "<mapping hash>:<data path>" -> {source, stamp, version, previous}
    <version>/meta.json     what a version is (rows, operations, periods, mapping, ...), written last
    <version>/*.parquet     the normalized rows and the pre-aggregate

A process finds a finished conversion through the index, keyed by the data file's size, mtime and
inode, so it never re-hashes an unchanged file. Nothing here imports DuckDB: opening a cached version
must stay cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcp_sales.errors import DataError

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = ".mcp_sales_cache"
META = "meta.json"
VERSION_FILES = ("sales.parquet", "agg.parquet")
_INDEX = "index.json"
_VERSION_RE = re.compile(r"[0-9a-f]{12}")
_PARQUET_MAGIC = b"PAR1"
_META_KEYS = (
    *("mapping", "grain", "rows", "dropped_rows", "columns", "operations"),
    *("first_period", "last_period", "has_revenue", "agg_rows"),
)


def default_cache_root(data_path: Path) -> Path:
    """``.mcp_sales_cache`` beside the data file, or the user cache directory when that is not writable."""
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


def short_hash(text: str) -> str:
    """12 hex digits identifying ``text`` (a version id, a mapping in an index key)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=6).hexdigest()


def hash_stable(path: Path) -> tuple[str, list[int]]:
    """Content hash plus the (size, mtime_ns, inode) it belongs to; re-hashes if written meanwhile.

    Raises:
        DataError: the file kept changing over five attempts (a copy still in progress).
        OSError: the file cannot be read.
    """
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
def locked(root: Path) -> Iterator[None]:
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


def indexed_version(root: Path, key: str, file_stamp: list[int]) -> str | None:
    """The version the index records for ``key`` at exactly this (size, mtime_ns, inode), if any."""
    entry = _read_index(root).get(key)
    if not isinstance(entry, dict) or entry.get("stamp") != file_stamp:
        return None
    version = entry.get("version")
    return version if isinstance(version, str) and _VERSION_RE.fullmatch(version) else None


def record(root: Path, key: str, source: str, file_stamp: list[int], version: str) -> None:
    """Point the index at ``version`` for this source + mapping, then drop versions nobody needs.

    Call it holding :func:`locked`. Each entry keeps its previous version too, so the last two versions
    of every file stay on disk (a process still serving the older one keeps working).

    Raises:
        OSError: the index cannot be written.
    """
    index = _read_index(root)
    old = index.get(key) if isinstance(index.get(key), dict) else None
    previous = old.get("previous") if old else None
    if old and old.get("version") != version:
        previous = old.get("version")
    index[key] = {"source": source, "stamp": file_stamp, "version": version, "previous": previous}
    # Forget files that are gone, so their versions can be collected.
    index = {k: v for k, v in index.items() if isinstance(v, dict) and Path(str(v.get("source"))).exists()}
    atomic_write(root / _INDEX, json.dumps(index, indent=1, sort_keys=True).encode("utf-8"))
    keep = {v.get(name) for v in index.values() for name in ("version", "previous")}
    for child in root.iterdir():
        stale_version = _VERSION_RE.fullmatch(child.name) is not None and child.name not in keep
        # Work directories of crashed preparations: safe to remove, we hold the lock.
        if child.is_dir() and (stale_version or ".tmp-" in child.name):
            shutil.rmtree(child, ignore_errors=True)


def atomic_write(path: Path, payload: bytes) -> None:
    """Write ``path`` through a temporary file and a rename, so readers see all of it or none.

    Raises:
        OSError: the directory is not writable or the disk is full.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_meta(directory: Path) -> tuple[dict[str, Any], tuple[int, int]] | None:
    """A version's metadata and the (inode, mtime_ns) of its meta.json; None when it is missing or
    damaged (then it is rebuilt).

    The second value changes whenever the version is rebuilt, which tells a rebuilt version from the
    one found damaged. The Parquet files are checked without reading them: their sizes (when recorded)
    and the magic bytes at both ends catch truncated and overwritten files.
    """
    try:
        with (directory / META).open("rb") as f:
            st = os.fstat(f.fileno())
            meta = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not all(k in meta for k in _META_KEYS):
        return None
    sizes = meta.get("files")
    for name in VERSION_FILES:
        expected = sizes.get(name) if isinstance(sizes, dict) else None
        if not _parquet_intact(directory / name, expected):
            return None
    return meta, (st.st_ino, st.st_mtime_ns)


def _parquet_intact(path: Path, size: int | None) -> bool:
    """Whether ``path`` has the expected size (if known) and starts and ends with Parquet's magic."""
    try:
        with path.open("rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual < 2 * len(_PARQUET_MAGIC) or (size is not None and actual != size):
                return False
            head = f.read(len(_PARQUET_MAGIC))
            f.seek(-len(_PARQUET_MAGIC), os.SEEK_END)
            return head == _PARQUET_MAGIC and f.read() == _PARQUET_MAGIC
    except OSError:
        return False
