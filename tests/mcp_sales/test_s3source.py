"""Sales data from S3 (``--data s3://bucket/key``) against a real moto server on 127.0.0.1.

The server is ``moto_server`` in a subprocess; boto3 reaches it through ``AWS_ENDPOINT_URL``, as any
deployment pointing at another endpoint would.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mcp_sales.errors import DataError
from mcp_sales.s3source import S3SalesStore, mirror_path, parse_s3_url
from mcp_sales.server import ServerConfig, open_store

BOUND = 60.0
BUCKET = "sales-exports"
MOTO_SERVER = Path(sys.executable).parent / "moto_server"


@dataclass
class Moto:
    endpoint: str
    s3: Any  # a boto3 S3 client on the server


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """``moto_server -p 0`` on loopback, with fake credentials in the environment while it runs."""
    if not MOTO_SERVER.exists():
        pytest.skip(f"{MOTO_SERVER} is missing (moto[server] is a dev dependency)")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", "0"], stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        endpoint = _wait_for_port(process, log)
        saved = {k: os.environ.get(k) for k in _ENV}
        os.environ.update(_ENV | {"AWS_ENDPOINT_URL": endpoint})
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield Moto(endpoint, s3)
    finally:
        process.terminate()
        process.wait(timeout=BOUND)
        for key, value in locals().get("saved", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MCP_SALES_S3_CHECK_SECONDS": "0",
    "AWS_ENDPOINT_URL": "",
}


def _wait_for_port(process: subprocess.Popen[bytes], log: Path) -> str:
    import time

    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        found = re.search(rb"Running on (http://127\.0\.0\.1:\d+)", log.read_bytes())
        if found:
            return found.group(1).decode()
        if process.poll() is not None:
            break
        time.sleep(0.05)  # polling a log file for the line the server prints, bounded above
    raise AssertionError(f"moto_server did not start: {log.read_text(errors='replace')}")


def _config(url: str, cache: Path) -> ServerConfig:
    return ServerConfig(data_path=mirror_path(url, cache), data_url=url, cache_dir=cache)


def test_a_changed_object_is_a_new_data_version_and_an_unchanged_one_is_not_fetched(
    moto: Moto, sample_csv: Path, tmp_path: Path
) -> None:
    url = f"s3://{BUCKET}/exports/sales.csv"
    moto.s3.put_object(Bucket=BUCKET, Key="exports/sales.csv", Body=sample_csv.read_bytes())
    store = open_store(_config(url, tmp_path / "cache"))
    assert isinstance(store, S3SalesStore)
    first = store.current()
    assert store.source.downloads == 1
    assert store.current().version == first.version
    assert store.source.downloads == 1  # the conditional GET answered 304: nothing transferred

    table = pd.read_csv(sample_csv)
    table.iloc[: len(table) // 2].to_csv(buffer := io.StringIO(), index=False)
    moto.s3.put_object(Bucket=BUCKET, Key="exports/sales.csv", Body=buffer.getvalue().encode())
    second = store.current()
    assert second.version != first.version
    assert store.source.downloads == 2

    # Another replica (a fresh store and cache) reading the same object sees the same version.
    other = open_store(_config(url, tmp_path / "other-cache"))
    assert other.current().version == second.version


def test_parquet_objects_are_read_too(moto: Moto, sample_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(sample_csv)
    frame.to_parquet(buffer := io.BytesIO(), index=False)
    moto.s3.put_object(Bucket=BUCKET, Key="sales.parquet", Body=buffer.getvalue())
    data = open_store(_config(f"s3://{BUCKET}/sales.parquet", tmp_path)).current()
    assert data.source.suffix == ".parquet" and data.rows == len(frame)


def test_a_missing_object_is_a_clear_error(moto: Moto, tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        open_store(_config(f"s3://{BUCKET}/nope.csv", tmp_path))
    assert "does not exist" in str(caught.value) and "nope.csv" in str(caught.value)
    assert not any(tmp_path.rglob("nope.csv"))  # nothing half-written


def test_the_command_line_keeps_an_s3_url_and_reads_its_local_copy(tmp_path: Path) -> None:
    from mcp_sales.__main__ import parse_args, server_config

    config = server_config(
        parse_args(["serve", "--data", f"s3://{BUCKET}/a/b.csv", "--cache-dir", str(tmp_path)])
    )
    assert config.data_url == f"s3://{BUCKET}/a/b.csv"
    assert config.data_path == mirror_path(f"s3://{BUCKET}/a/b.csv", tmp_path)
    assert config.data_path.name == "b.csv" and tmp_path in config.data_path.parents
    local = server_config(parse_args(["serve", "--data", str(tmp_path / "x.csv")]))
    assert local.data_url is None and local.data_path == tmp_path / "x.csv"


@pytest.mark.parametrize("url", ["s3://", "s3://bucket", "s3://bucket/", "s3://bucket/dir/"])
def test_an_url_without_a_key_is_refused(url: str) -> None:
    with pytest.raises(DataError):
        parse_s3_url(url)


def test_local_data_does_not_import_boto3(small_csv: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from mcp_sales.server import ServerConfig, open_store; "
        f"open_store(ServerConfig(data_path=Path({str(small_csv)!r}))); "
        "assert 'boto3' not in sys.modules, 'boto3 imported'"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND * 2)
    assert ran.returncode == 0, ran.stderr
