"""Start-up: time from spawning a server to its ``initialize`` response (what Claude Desktop waits for).

Three servers on the same interpreter and data, measured round-robin so machine noise hits them alike:
the SDK-only floor (no tools, nothing imported but ``mcp``), ``mcp-sales``, and a baseline that starts
like the reference server (pandas and Prophet imported eagerly). Goal: ``mcp-sales`` within 10% of
the floor. Then warm start (see ``bench/_warm.py``): the launch command warm vs cold, a new session's
first forecast, the first ``tools/list`` through ``mcpctl connect`` vs a local cold start, memory.
Usage: ``python -m bench startup [--runs N] [--forecast-runs N] [--data PATH] [--warm-only]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    },
}
TIMEOUT = 120.0  # a server that takes longer is broken, not slow


class ServerProcess:
    """A server subprocess spoken to with raw JSON-RPC lines; every read is bounded by a watchdog."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._next_id = 1

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def receive(self, request_id: int) -> dict[str, Any]:
        """The response to ``request_id`` (notifications before it are skipped)."""
        assert self.process.stdout is not None
        watchdog = threading.Timer(TIMEOUT, self.process.kill)
        watchdog.start()
        try:
            while True:
                line = self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"server exited before answering request {request_id}")
                message: dict[str, Any] = json.loads(line)
                if message.get("id") == request_id:
                    return message
        finally:
            watchdog.cancel()

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}})
        return self.receive(self._next_id)

    def initialize(self) -> tuple[float, float | None]:
        """Send ``initialize``; return seconds from spawn to its response, and the CPU seconds the
        server had used by then (Linux; far less sensitive than wall time to a busy machine)."""
        self.send(INITIALIZE)
        response = self.receive(1)
        elapsed = time.perf_counter() - self.started
        cpu = cpu_seconds(self.process.pid)
        if "result" not in response:
            raise RuntimeError(f"initialize failed: {response}")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return elapsed, cpu

    def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Call a tool; return the result and the round trip in seconds."""
        started = time.perf_counter()
        response = self.request("tools/call", {"name": name, "arguments": arguments})
        elapsed = time.perf_counter() - started
        if "result" not in response or response["result"].get("isError"):
            raise RuntimeError(f"{name} failed: {response}")
        result: dict[str, Any] = response["result"]
        return result, elapsed

    def close(self) -> None:
        """Close stdin (the normal end of a session) and reap the process."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, from /proc (None elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def sample_data(directory: Path) -> Path:
    from mcp_sales.sample import generate_sample

    path = directory / "sample_sales_data.csv"
    generate_sample(path)
    return path


def commands(data: Path, cache: Path) -> dict[str, list[str]]:
    """The servers compared, by label; the first is the denominator of every ratio."""
    py = sys.executable
    return {
        "SDK floor (no tools)": [py, str(HERE / "_floor_server.py")],
        "mcp-sales": [py, "-m", "mcp_sales", "--data", str(data), "--cache-dir", str(cache)],
        "reference-like baseline": [py, str(HERE / "_reference_server.py"), str(data)],
    }


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def cpu_median_ms(self) -> float | None:
        return statistics.median(self.cpu) * 1000 if self.cpu else None


def measure_startup(data: Path, cache: Path, runs: int, cwd: Path) -> dict[str, Samples]:
    servers = commands(data, cache)
    samples = {label: Samples() for label in servers}
    for command in servers.values():  # warm-up: bytecode and OS file cache, not measured
        server = ServerProcess(command, cwd)
        server.initialize()
        server.close()
    for _ in range(runs):
        for label, command in servers.items():  # round-robin: drift and noise spread evenly
            server = ServerProcess(command, cwd)
            wall, cpu = server.initialize()
            server.close()
            samples[label].seconds.append(wall)
            if cpu is not None:
                samples[label].cpu.append(cpu)
    return samples


def render(samples: dict[str, Samples], runs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    first = next(iter(samples.values()))
    floor, floor_cpu = first.median_ms, first.cpu_median_ms
    table = Table(title=f"Spawn to initialize response (median of {runs} runs, bytecode compiled)")
    columns = ("server", "median ms", "min ms", "max ms", "vs floor", "CPU ms", "CPU vs floor")
    for column in columns:
        table.add_column(column, justify="left" if column == "server" else "right")
    for label, s in samples.items():
        cpu = s.cpu_median_ms
        table.add_row(
            label,
            f"{s.median_ms:.0f}",
            f"{min(s.seconds) * 1000:.0f}",
            f"{max(s.seconds) * 1000:.0f}",
            f"{s.median_ms / floor:.2f}x",
            "-" if cpu is None else f"{cpu:.0f}",
            "-" if cpu is None or not floor_cpu else f"{cpu / floor_cpu:.2f}x",
        )
    console = Console(width=120)
    console.print(table)
    ours = samples["mcp-sales"]
    console.print(
        f"mcp-sales wall time is {100 * (ours.median_ms / floor - 1):+.1f}% vs the SDK floor (goal: +10%)."
    )
    if ours.cpu_median_ms is not None and floor_cpu:
        console.print(
            f"mcp-sales CPU time is {100 * (ours.cpu_median_ms / floor_cpu - 1):+.1f}% vs the SDK floor "
            f"(CPU time is what wall time would be on an idle machine)."
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument(
        "--forecast-runs", type=int, default=11, help="new sessions per path that fit Prophet"
    )
    parser.add_argument("--data", type=Path, default=None, help="sales file (default: a generated sample)")
    parser.add_argument("--warm-only", action="store_true", help="only the warm-start measurements")
    args = parser.parse_args(argv)
    from bench._warm import measure_warm, render_warm

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        workdir = Path(tmp)
        data = args.data.resolve() if args.data else sample_data(workdir)
        if not args.warm_only:
            samples = measure_startup(data, workdir / "cache", args.runs, workdir)
            render(samples, args.runs)
        warm = measure_warm(data, workdir, args.runs, args.forecast_runs)
    render_warm(warm, args.runs, args.forecast_runs)


if __name__ == "__main__":
    main(sys.argv[1:])
