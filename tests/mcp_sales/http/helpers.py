"""A real ``mcp-sales serve`` HTTP process for tests, MCP clients for it, and pandas references.

``HttpServer.start`` runs ``python -m mcp_sales serve --transport ... --port 0`` and waits (bounded)
for its ``mcp-sales listening on URL`` line on stderr; every stderr line is kept for assertions and
for the report of a failed test.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pandas as pd
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

START_WAIT = 60.0
STOP_WAIT = 15.0
LISTENING = re.compile(r"mcp-sales listening on (https?://\S+)")


@dataclass
class HttpServer:
    process: subprocess.Popen[bytes]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(
        cls, args: Sequence[str], env: Mapping[str, str] | None = None, wait: float = START_WAIT
    ) -> HttpServer:
        # The caller's environment minus a key it may hold: each test says which keys its server takes.
        environment = {k: v for k, v in os.environ.items() if k != "MCP_API_KEY"} | dict(env or {})
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_sales", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment,
        )
        server = cls(process)
        threading.Thread(target=server._read, daemon=True).start()
        if not server._ready.wait(wait) or not server.url:
            server.stop()
            raise AssertionError("the server did not start:\n" + server.log())
        return server

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
            if not self.url and (found := LISTENING.search(line)):
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()  # exited before listening
        with self._changed:
            self._changed.notify_all()

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, wait: float = 30.0) -> str:
        """The first stderr line matching ``pattern``, waiting (bounded) for it to be written."""
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((x for x in self.lines if regex.search(x)), None), wait
            )
        if not found:
            raise AssertionError(f"no line matching {pattern!r} in:\n" + self.log())
        return found

    def wait_for_count(self, pattern: str, count: int, wait: float = 30.0) -> list[str]:
        """The first ``count`` stderr lines matching ``pattern``, waiting (bounded) for them."""
        regex = re.compile(pattern)

        def matching() -> list[str]:
            return [x for x in self.lines if regex.search(x)]

        with self._changed:
            self._changed.wait_for(lambda: len(matching()) >= count, wait)
            found = matching()
        if len(found) < count:
            raise AssertionError(f"fewer than {count} lines matching {pattern!r} in:\n" + self.log())
        return found[:count]

    def health_until(self, statuses: set[str], wait: float = 60.0, **kwargs: Any) -> httpx2.Response:
        """GET /health until its status is one of ``statuses`` (each call waits for the server's own
        check, so this does not spin); fails after ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            response = httpx2.get(f"{self.url}/health", timeout=30.0, **kwargs)
            if response.json()["status"] in statuses:
                return response
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"/health stayed {response.text} instead of {statuses}:\n" + self.log())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(STOP_WAIT)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def run_to_exit(
    args: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``mcp-sales serve ARGS`` expected to refuse to start: its exit code and stderr."""
    environment = {k: v for k, v in os.environ.items() if k != "MCP_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "mcp_sales", "serve", *args],
        env={**environment, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_WAIT,
        check=False,
    )


def http_client(key: str | None = None, header: str = "bearer", **kwargs: Any) -> httpx2.AsyncClient:
    headers: dict[str, str] = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0), **kwargs)


@contextlib.asynccontextmanager
async def mcp_session(
    url: str, key: str | None, transport: str = "streamable-http", mode: str = "legacy", **kwargs: Any
) -> AsyncIterator[Client]:
    """The SDK's client on ``url`` (``/mcp`` or ``/sse``), with ``key`` as a bearer token."""
    if transport == "sse":
        headers = {"Authorization": f"Bearer {key}"} if key else None
        async with Client(sse_client(f"{url}/sse", headers=headers), mode=mode) as client:
            yield client
        return
    async with (
        http_client(key, **kwargs) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


# --- the pandas reference ---------------------------------------------------------------------------


def reference_frame(csv: Path) -> pd.DataFrame:
    """The sample file read with plain pandas (the columns of ``generate_sample``)."""
    raw = pd.read_csv(csv, dtype={"PRODUCT_ID": str})
    return pd.DataFrame(
        {
            "operation": raw["OPERATION_NAME"],
            "product_id": raw["PRODUCT_ID"],
            "product_name": raw["PRODUCT_NAME"],
            "month": [
                f"{int(y):04d}-{int(m):02d}"
                for y, m in zip(raw["CALENDAR_YEAR"], raw["CALENDAR_MONTH"], strict=True)
            ],
            "units": raw["UNITS_SOLD"].astype(float),
        }
    )


def expected_top(frame: pd.DataFrame, operation: str, n: int) -> list[tuple[str, float]]:
    """(product_id, units) of the ``n`` best sellers of ``operation`` by units, ties by id."""
    grouped = frame[frame["operation"] == operation].groupby("product_id")["units"].sum().reset_index()
    ordered = grouped.sort_values(["units", "product_id"], ascending=[False, True]).head(n)
    return [(str(r.product_id), float(r.units)) for r in ordered.itertuples()]


def expected_monthly(frame: pd.DataFrame, operation: str) -> dict[str, float]:
    """Units per month (YYYY-MM) of ``operation``."""
    monthly = frame[frame["operation"] == operation].groupby("month")["units"].sum()
    return {str(month): float(units) for month, units in monthly.items()}
