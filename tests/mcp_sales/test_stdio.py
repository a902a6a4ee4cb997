"""The real ``mcp-sales`` process over stdio (``python -m mcp_sales``) with a real client: a whole
session including a Prophet fit, every raw byte of its stdout checked to be JSON-RPC; clean exits on
stdin EOF, SIGTERM and SIGHUP; and the ``check`` and ``sample`` commands."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.message import SessionMessage
from mcp_types import ImageContent, TextContent

from mcp_sales.models import ForecastResult, TopProductsResult
from tests.mcp_sales.warm.helpers import INITIALIZE

WAIT = 90  # seconds: bound on a whole session with a cold Prophet import and fit
EXIT_WAIT = 15


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """A working directory holding stray modules named like the standard library's, as a user's
    home directory might. ``python -m`` would import them first; each one shouts and fails."""
    work = tmp_path / "cwd"
    work.mkdir()
    for name in ("argparse", "json", "timeit"):
        (work / f"{name}.py").write_text(
            f"import os\nos.write(1, b'shadowed {name} imported')\nraise ImportError('shadowed {name}')\n"
        )
    return work


def server_command(data: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mcp_sales", "--data", str(data), "--cache-dir", str(cache), *extra]


class RecordingStdioTransport:
    """Spawn the server and speak MCP over its pipes, keeping every raw byte it writes to stdout.

    Exiting closes the server's stdin (what Claude Desktop does) and waits, bounded, for it to exit.
    """

    def __init__(self, command: Sequence[str], cwd: Path, stderr: Path) -> None:
        self.command = list(command)
        self.cwd = cwd
        self.stderr_path = stderr
        self.raw = bytearray()
        self.returncode: int | None = None
        self._stack = AsyncExitStack()
        self._process: anyio.abc.Process | None = None

    async def __aenter__(
        self,
    ) -> tuple[
        anyio.abc.ObjectReceiveStream[SessionMessage | Exception], anyio.abc.ObjectSendStream[SessionMessage]
    ]:
        stderr = self._stack.enter_context(self.stderr_path.open("wb"))
        self._process = await anyio.open_process(self.command, cwd=self.cwd, stderr=stderr)
        to_client, from_server = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        to_server, from_client = anyio.create_memory_object_stream[SessionMessage](16)
        group = await self._stack.enter_async_context(anyio.create_task_group())
        group.start_soon(self._read_stdout, to_client)
        group.start_soon(self._write_stdin, from_client)
        return from_server, to_server

    async def _read_stdout(self, sink: anyio.abc.ObjectSendStream[SessionMessage | Exception]) -> None:
        assert self._process is not None and self._process.stdout is not None
        pending = b""
        async with sink:
            async for chunk in self._process.stdout:
                self.raw += chunk
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(line)
                    except ValueError as exc:
                        await sink.send(exc)
                        continue
                    await sink.send(SessionMessage(message))

    async def _write_stdin(self, source: anyio.abc.ObjectReceiveStream[SessionMessage]) -> None:
        assert self._process is not None and self._process.stdin is not None
        async with source:
            async for item in source:
                line = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                await self._process.stdin.send(line.encode())

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            await self._process.stdin.aclose()
            with anyio.fail_after(EXIT_WAIT):
                self.returncode = await self._process.wait()
        finally:
            if self.returncode is None:
                self._process.kill()
            await self._stack.aclose()


def assert_only_json_rpc(raw: bytes) -> list[dict[str, Any]]:
    """Every byte on stdout belongs to a newline-terminated JSON-RPC 2.0 message."""
    assert raw.endswith(b"\n"), raw[-200:]
    messages = []
    for line in raw.split(b"\n")[:-1]:
        message = json.loads(line)  # raises on anything that is not JSON
        assert message.get("jsonrpc") == "2.0", line[:200]
        messages.append(message)
    return messages


@pytest.mark.anyio
@pytest.mark.slow
async def test_real_session_over_stdio_writes_nothing_but_json_rpc(
    sales_csv: Path, tmp_path: Path, cwd: Path
) -> None:
    transport = RecordingStdioTransport(
        server_command(sales_csv, tmp_path / "cache"), cwd=cwd, stderr=tmp_path / "stderr.log"
    )
    with anyio.fail_after(WAIT):
        async with Client(transport, mode="legacy") as client:  # the initialize handshake, like Claude
            assert client.server_info is not None and client.server_info.name == "mcp-sales"
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"top_n_products", "forecast_sales", "list_operations"} <= tools

            top = await client.call_tool("top_n_products", {"n": 3, "operation": "Dallas"})
            assert not top.is_error
            assert len(TopProductsResult.model_validate(top.structured_content).products) == 3

            fitted = await client.call_tool("forecast_sales", {"operation": "Dallas", "horizon_months": 6})
            assert not fitted.is_error, fitted.content
            result = ForecastResult.model_validate(fitted.structured_content)
            assert result.cached is False and sum(p.actual is None for p in result.points) == 6

            charted = await client.call_tool(
                "forecast_sales", {"operation": "Dallas", "horizon_months": 6, "chart": True}
            )
            assert not charted.is_error
            assert ForecastResult.model_validate(charted.structured_content).cached is True
            images = [c for c in charted.content if isinstance(c, ImageContent)]
            assert len(images) == 1
            assert base64.b64decode(images[0].data).startswith(b"\x89PNG\r\n\x1a\n")
            assert any(isinstance(c, TextContent) for c in charted.content)

    assert transport.returncode == 0, (tmp_path / "stderr.log").read_text()
    messages = assert_only_json_rpc(bytes(transport.raw))
    assert sum("result" in m for m in messages) >= 5  # initialize, tools/list and the three calls
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()


async def start_and_initialize(command: list[str], cwd: Path) -> tuple[anyio.abc.Process, bytes]:
    """Spawn, send initialize, return the process and its first stdout line."""
    process = await anyio.open_process(command, cwd=cwd)
    assert process.stdin is not None and process.stdout is not None
    await process.stdin.send(json.dumps(INITIALIZE).encode() + b"\n")
    line = b""
    async for chunk in process.stdout:
        line += chunk
        if b"\n" in line:
            break
    return process, line


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["stdin-eof", "SIGTERM", "SIGHUP"])
async def test_exits_cleanly(sales_csv: Path, tmp_path: Path, cwd: Path, how: str) -> None:
    with anyio.fail_after(WAIT):
        process, first = await start_and_initialize(server_command(sales_csv, tmp_path), cwd)
        try:
            assert json.loads(first)["result"]["serverInfo"]["name"] == "mcp-sales"
            assert process.stdin is not None and process.stderr is not None
            if how == "stdin-eof":
                await process.stdin.aclose()
            else:
                process.send_signal(getattr(signal, how))
            with anyio.fail_after(EXIT_WAIT):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
    assert code == 0
    stderr = b"".join([chunk async for chunk in process.stderr])
    assert b"Traceback" not in stderr


@pytest.mark.anyio
async def test_missing_data_still_starts_and_answers_with_the_fix(tmp_path: Path, cwd: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    with anyio.fail_after(WAIT):
        process, first = await start_and_initialize(server_command(missing, tmp_path), cwd)
        try:
            assert "result" in json.loads(first)
            assert process.stdin is not None and process.stdout is not None
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "dataset_summary"}}
            await process.stdin.send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
            await process.stdin.send(json.dumps(call).encode() + b"\n")
            buffer = b""
            async for chunk in process.stdout:
                buffer += chunk
                if buffer.endswith(b"\n"):
                    break
            answer = json.loads(buffer)
            await process.stdin.aclose()
            with anyio.fail_after(EXIT_WAIT):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
    assert answer["id"] == 2 and answer["result"]["isError"] is True
    assert str(missing) in answer["result"]["content"][0]["text"]
    assert code == 0


# --- the other commands ---------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_sales", *args], cwd=cwd, capture_output=True, timeout=WAIT, check=False
    )


@pytest.mark.slow
def test_check_validates_environment_and_data(sales_csv: Path, tmp_path: Path, cwd: Path) -> None:
    ok = run_cli("check", "--data", str(sales_csv), "--cache-dir", str(tmp_path), "--json", cwd=cwd)
    assert ok.returncode == 0, ok.stderr.decode()
    report = json.loads(ok.stdout)  # stdout is exactly the JSON report: nothing else leaked there
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == ["python", "imports", "stan", "data", "query"]
    assert all(c["ok"] for c in report["checks"])


def test_check_reports_every_failure_and_names_the_first(tmp_path: Path) -> None:
    from mcp_sales.__main__ import run_checks
    from mcp_sales.server import ServerConfig

    missing = tmp_path / "missing.csv"
    report = run_checks(ServerConfig(data_path=missing, cache_dir=tmp_path))
    assert report["ok"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["imports"]["ok"] and by_name["stan"]["ok"]  # the environment is checked regardless
    assert not by_name["data"]["ok"] and str(missing) in by_name["data"]["detail"]
    assert by_name["query"] == {**by_name["query"], "ok": False, "detail": "skipped: data failed"}
    assert report["error"].startswith("data: ") and str(missing) in report["error"]


def test_check_fails_with_one_line(cwd: Path) -> None:
    bad = run_cli("check", "--column", "units", cwd=cwd)
    assert bad.returncode == 1
    assert bad.stdout == b""
    lines = bad.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcp-sales check failed: --column 'units'")


def test_sample_writes_the_requested_rows(tmp_path: Path, cwd: Path) -> None:
    out = tmp_path / "s.csv"
    done = run_cli("sample", "--out", str(out), "--rows", "250", cwd=cwd)
    assert done.returncode == 0, done.stderr.decode()
    assert len(out.read_text().splitlines()) == 251  # header + rows


def test_exit_path_terminates_child_processes(tmp_path: Path) -> None:
    # In a separate interpreter: the helper signals every child of its process, and pytest's own
    # children (other fixtures' servers) must not be touched.
    script = (
        "import subprocess, sys\n"
        "from mcp_sales.__main__ import _terminate_children\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "_terminate_children()\n"
        f"print(child.wait(timeout={EXIT_WAIT}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, timeout=WAIT, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert int(done.stdout) == -signal.SIGTERM
