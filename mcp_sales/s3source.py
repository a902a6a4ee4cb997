"""Sales data read from S3 (``--data s3://bucket/key``): mirrored into the cache, then read like a file.

The object is downloaded into the cache directory (``CACHE/s3/<hash of bucket and key>/<file name>``)
and replaced atomically when its ETag changes; every data call first asks S3 with a conditional GET
(``If-None-Match``: nothing is transferred while the object is unchanged), at most once per
``MCP_SALES_S3_CHECK_SECONDS`` (default 60). From the local copy on, the engine is the one for local
files: a changed object is a changed file, so the next answer carries the new data version, and
replicas reading the same object compute the same version (it is a hash of the content).

boto3 is imported only here, so only S3 data pays for it. Credentials and region come from boto3's
usual chain; ``AWS_ENDPOINT_URL`` points it at another endpoint (moto in the tests). When S3 cannot be
reached after a first download, the last copy keeps being served (logged); before one, the error says
what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mcp_sales.data import SalesData, SalesStore
from mcp_sales.errors import DataError

if TYPE_CHECKING:
    from mcp_sales.mapping import ColumnMapping
    from mcp_sales.server import ServerConfig

log = logging.getLogger(__name__)

SCHEME = "s3://"
CHECK_ENV = "MCP_SALES_S3_CHECK_SECONDS"
DEFAULT_CHECK_SECONDS = 60.0
_CHUNK = 1 << 20


def is_s3_url(value: object) -> bool:
    """Whether a ``--data`` value names an S3 object."""
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key).

    Raises:
        DataError: No bucket, or no key (a prefix is not a data file).
    """
    bucket, _, key = url[len(SCHEME) :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise DataError(
            f"{url!r} does not name an S3 object; pass --data s3://BUCKET/KEY with the key of a CSV or "
            "Parquet file"
        )
    return bucket, key


def mirror_path(url: str, cache_dir: Path | None) -> Path:
    """Where the local copy of ``url`` lives: under ``cache_dir`` (else the user cache), named by the key.

    Raises:
        DataError: ``url`` does not name an object.
    """
    bucket, key = parse_s3_url(url)
    name = PurePosixPath(key).name
    digest = hashlib.blake2b(f"{bucket}/{key}".encode(), digest_size=8).hexdigest()
    if cache_dir is None:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        cache_dir = (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "mcp_sales"
    return Path(cache_dir).expanduser().absolute() / "s3" / digest / name


def _check_seconds() -> float:
    value = os.environ.get(CHECK_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_CHECK_SECONDS
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise DataError(
            f"{CHECK_ENV}={value!r} is not a number of seconds between 0 and 86400; fix or unset it"
        )
    return seconds


class S3Source:
    """The local copy of one S3 object, kept current by conditional GETs.

    Args:
        url: ``s3://bucket/key``.
        path: The local copy (see :func:`mirror_path`).
        check_seconds: Ask S3 at most this often (None: ``$MCP_SALES_S3_CHECK_SECONDS``, else 60).
        client: A boto3 S3 client (None: one from boto3's usual configuration, made on first use).
    """

    def __init__(
        self, url: str, path: Path, *, check_seconds: float | None = None, client: Any = None
    ) -> None:
        self.url = url
        self.bucket, self.key = parse_s3_url(url)
        self.path = path
        self.check_seconds = _check_seconds() if check_seconds is None else check_seconds
        self._client = client
        self._lock = threading.Lock()
        self._checked: float | None = None  # time.monotonic() of the last answer from S3
        self.downloads = 0

    @property
    def _etag_path(self) -> Path:
        return self.path.with_name(self.path.name + ".etag")

    def _s3(self) -> Any:
        if self._client is None:
            import boto3  # only S3 data pays for importing boto3

            self._client = boto3.client("s3")
        return self._client

    def refresh(self) -> Path:
        """Bring the local copy up to date if it is time to ask; return its path.

        Raises:
            DataError: The object is missing, S3 refuses access, or cannot be reached and there is no
                local copy yet.
        """
        with self._lock:
            now = time.monotonic()
            if self._checked is not None and now - self._checked < self.check_seconds:
                return self.path
            try:
                self._fetch()
            except DataError:
                if self._checked is None or not self.path.is_file():
                    raise
                log.warning("%s: keeping the local copy: S3 could not be asked", self.url, exc_info=True)
            self._checked = time.monotonic()
            return self.path

    def _fetch(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        etag = self._local_etag()
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if etag is not None:
            arguments["IfNoneMatch"] = etag
        try:
            response = self._s3().get_object(**arguments)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("304", "NotModified") or status == 304:
                return
            raise DataError(self._describe(code, str(error.get("Message", "")))) from None
        except BotoCoreError as exc:
            raise DataError(
                f"cannot read {self.url} ({exc}); check the network, AWS_ENDPOINT_URL and credentials"
            ) from None
        self._store(response["Body"], str(response.get("ETag", "")))
        log.info("%s: downloaded (ETag %s) to %s", self.url, response.get("ETag"), self.path)

    def _describe(self, code: str, message: str) -> str:
        if code in ("NoSuchKey", "404", "NotFound"):
            return f"{self.url} does not exist (no such key); check the key or upload the file, then retry"
        if code == "NoSuchBucket":
            return f"the bucket of {self.url} does not exist; check the bucket name and region"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"S3 refused to read {self.url} ({code}); grant s3:GetObject on it to these credentials"
        return f"cannot read {self.url} ({code or 'error'}: {message}); check the bucket, key and credentials"

    def _local_etag(self) -> str | None:
        if not self.path.is_file():
            return None
        try:
            return self._etag_path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def _store(self, body: Any, etag: str) -> None:
        """Write the object beside its final place, then rename it over: readers see old or new."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in body.iter_chunks(_CHUNK):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(name, self.path)
            except BaseException:
                Path(name).unlink(missing_ok=True)
                raise
            # Replaced like the data: workers sharing the cache never read half an ETag.
            marker = self._etag_path.with_name(f".{self._etag_path.name}.{os.getpid()}.tmp")
            marker.write_text(etag + "\n", encoding="utf-8")
            os.replace(marker, self._etag_path)
        except OSError as exc:
            raise DataError(
                f"cannot write the copy of {self.url} to {self.path} ({exc.strerror}); make the cache "
                "directory writable or pass --cache-dir"
            ) from None
        self.downloads += 1


class S3SalesStore(SalesStore):
    """A :class:`SalesStore` over the local copy of an S3 object, refreshed before each use."""

    def __init__(self, source: S3Source, mapping: ColumnMapping | None, cache_root: Path | None) -> None:
        super().__init__(source.path, mapping, cache_root)
        self.source = source

    def current(self) -> SalesData:
        self.source.refresh()
        return super().current()


def open_s3_store(config: ServerConfig) -> S3SalesStore:
    """The store for ``config.data_url``: the object is downloaded first (so its errors come first).

    Raises:
        DataError: The object cannot be read, or its columns cannot be mapped.
    """
    from mcp_sales.mapping import load_mapping

    assert config.data_url is not None
    source = S3Source(config.data_url, config.data_path)
    source.refresh()
    overrides = dict(config.columns)
    if config.date_format:
        overrides["date_format"] = config.date_format
    mapping = load_mapping(config.data_path, overrides) if overrides else None
    return S3SalesStore(source, mapping, config.cache_dir)


__all__ = ["S3SalesStore", "S3Source", "is_s3_url", "mirror_path", "open_s3_store", "parse_s3_url"]
