"""Benchmark ``mcpctl connect`` (the stdio proxy) against plain OpenSSH, on a throwaway local sshd.

Measured in one run, each path started as a separate process the way an MCP client starts it:

1. **First ``tools/list``**: from process start to the ``tools/list`` answer (initialize handshake
   included) through the proxy, through ``ssh -T host exec .../python -m mcp_sales`` (OpenSSH client,
   absolute path), and through the seed's ``ssh host "cd DIR && source .venv/bin/activate && python
   -m mcp_sales"``.
2. **Round trip per message**: many small JSON-RPC messages, one at a time, echoed by ``cat`` on the
   host, through the proxy on uvloop, through the proxy on asyncio's own loop, and through
   ``ssh host cat`` (median and p99; goal: proxy <= 1.5x).
3. **The proxy's own start**: from process start to the relay imported (profile, logging, asyncssh,
   the proxy), against the bare interpreter's start.
4. **Recovery after a drop**: the SSH session processes are killed under a live session; the time
   until a tool call succeeds again through the same proxy (goal < 3 s on loopback). Plain ssh has no
   recovery: its session is simply gone.

``uv run python -m bench proxy [--runs N] [--messages N] [--drops N]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from provision.connect.settings import LOOP_ENV
from tests.sshd import SshdServer, descendants, running_sshd

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
DATA = REPO / "data" / "sample_sales_data.csv"
PROFILE = "bench"
TIMEOUT = 120.0  # seconds: an upper bound on any single exchange
RTT_GOAL = 1.5
RECOVERY_GOAL = 3.0
_CONNECT_WITH_COMMAND = (
    "import sys, provision.connect.main as m; sys.exit(m.connect_main(sys.argv[1], command=sys.argv[2:]))"
)


class _Line:
    """Blocking newline-delimited JSON-RPC over a child's pipes (the same client for every path)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin
        self._out = self.process.stdout

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        self._in.write(data)
        self._in.flush()

    def recv_raw(self) -> bytes:
        line = self._out.readline()
        if not line:
            raise RuntimeError(f"{self.process.args!r} closed its stdout (exit {self.process.poll()})")
        return line

    def response(self, request_id: Any) -> dict[str, Any]:
        while True:
            message = json.loads(self.recv_raw())
            if "method" not in message and message.get("id") == request_id:
                return dict(message)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class Paths:
    """The command lines of every path, for one sshd and one MCPCTL_HOME."""

    sshd: SshdServer
    env: dict[str, str]

    def ssh(self, *command: str) -> list[str]:
        return [*self.sshd.ssh_command(), "-T", f"{self.sshd.user}@{self.sshd.host}", *command]

    def proxy(self, command: Sequence[str] | None = None) -> list[str]:
        if command is not None:
            # connect_main with a remote command of our choosing (cat, for the echo benchmark).
            return [sys.executable, "-c", _CONNECT_WITH_COMMAND, PROFILE, *command]
        script = Path(sys.executable).parent / "mcpctl"  # what the client config runs
        if script.exists():
            return [str(script), "connect", PROFILE]
        return [sys.executable, "-m", "provision.connect", PROFILE]


def _initialize(line: _Line) -> None:
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    }
    line.send({"id": 0, "method": "initialize", "params": params})
    if "result" not in line.response(0):
        raise RuntimeError("initialize failed")
    line.send({"method": "notifications/initialized"})


def time_to_tools_list(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds from process start to the tools/list answer (handshake included)."""
    started = time.perf_counter()
    line = _Line(argv, env)
    try:
        _initialize(line)
        line.send({"id": 1, "method": "tools/list"})
        if "result" not in line.response(1):
            raise RuntimeError(f"tools/list failed through {argv[0]}")
        return time.perf_counter() - started
    finally:
        line.close()


@dataclass(frozen=True)
class Echo:
    """Round trips of one path: seconds per message, and the relay process's CPU seconds per message."""

    samples: list[float]
    cpu_per_message: float | None  # None where /proc is not available


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trips(
    paths: dict[str, tuple[Sequence[str], dict[str, str]]], messages: int, warmup: int = 100
) -> dict[str, Echo]:
    """Echo ``messages`` small JSON-RPC messages one at a time through every path (argv, environment),
    alternating between the paths message by message, so that a change in the machine's load affects
    them all alike."""
    lines = {name: _Line(argv, env) for name, (argv, env) in paths.items()}
    try:
        samples: dict[str, list[float]] = {name: [] for name in lines}
        cpu_start: dict[str, float | None] = {}
        for index in range(messages + warmup):
            if index == warmup:
                cpu_start = {name: _cpu_seconds(line.process.pid) for name, line in lines.items()}
            message = {"jsonrpc": "2.0", "id": index, "method": "ping", "params": {"n": index}}
            data = json.dumps(message).encode()
            for name, line in lines.items():
                started = time.perf_counter()
                line.send_raw(data + b"\n")
                echoed = line.recv_raw()
                elapsed = time.perf_counter() - started
                if echoed.rstrip(b"\r\n") != data:
                    raise RuntimeError(f"unexpected echo through {name}: {echoed[:80]!r}")
                if index >= warmup:
                    samples[name].append(elapsed)
        result = {}
        for name, line in lines.items():
            first, last = cpu_start.get(name), _cpu_seconds(line.process.pid)
            cpu = (last - first) / messages if first is not None and last is not None else None
            result[name] = Echo(samples[name], cpu)
        return result
    finally:
        for line in lines.values():
            line.close()


# What `mcpctl connect` imports before it can connect: its entry point, then the relay and the SSH side.
_PROXY_IMPORTS = (
    "from provision.connect import main; main._import_relay(); import provision.ssh.profile_target"
)


def start_times(runs: int) -> dict[str, list[float]]:
    """Seconds from process start to exit: the proxy's imports, and the bare interpreter (round robin)."""
    commands = {"imports": [sys.executable, "-c", _PROXY_IMPORTS], "python": [sys.executable, "-c", "pass"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            started = time.perf_counter()
            subprocess.run(argv, check=True, timeout=TIMEOUT)
            times[name].append(time.perf_counter() - started)
    return times


def _session_processes(sshd_pid: int) -> list[int]:
    return descendants(sshd_pid)


def recovery_times(paths: Paths, sshd_pid: int, drops: int) -> list[float]:
    """Seconds from killing every SSH session process to the next successful tool call."""
    line = _Line(paths.proxy(), paths.env)
    times = []
    try:
        _initialize(line)
        call = {"name": "list_operations", "arguments": {}}
        line.send({"id": 1, "method": "tools/call", "params": call})
        if "result" not in line.response(1):
            raise RuntimeError("the first tool call failed")
        request_id = 1
        for _ in range(drops):
            victims = _session_processes(sshd_pid)
            started = time.perf_counter()
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            while True:  # a call written into the dying link is answered with an error: send it again
                request_id += 1
                line.send({"id": request_id, "method": "tools/call", "params": call})
                answer = line.response(request_id)
                if "result" in answer:
                    break
                if time.perf_counter() - started > TIMEOUT:
                    raise RuntimeError(f"no recovery within {TIMEOUT:g} s: {answer}")
            times.append(time.perf_counter() - started)
    finally:
        line.close()
    return times


@contextlib.contextmanager
def _setup(workdir: Path) -> Iterator[tuple[Paths, int]]:
    """A local sshd and an MCPCTL_HOME with profile 'bench' whose remote_dir is this checkout."""
    home = workdir / "home"
    os.environ["MCPCTL_HOME"] = str(home)  # the profile functions below read it too
    from provision.profiles import Profile, known_hosts_path, save_profile
    from provision.ssh.hostkeys import pin_host_key

    with running_sshd(workdir / "sshd") as sshd:
        save_profile(
            Profile(
                name=PROFILE,
                host=sshd.host,
                port=sshd.port,
                user=sshd.user,
                identity_file=sshd.client_key,
                remote_dir=str(REPO),
                data=[DATA],
                server_args=["--cache-dir", str(workdir / "cache")],  # prepared data survives restarts
            )
        )
        key_line = sshd.known_hosts.read_text().split(None, 1)[1].strip()
        pin_host_key(known_hosts_path(PROFILE), sshd.host, sshd.port, key_line)
        sshd_pid = sshd.process.pid
        yield Paths(sshd, {**os.environ, "MCPCTL_HOME": str(home)}), sshd_pid


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def _p99(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "-"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="cold starts per path (default 3)")
    parser.add_argument("--messages", type=int, default=2000, help="echoed messages per path (default 2000)")
    parser.add_argument("--drops", type=int, default=3, help="dropped links to recover from (default 3)")
    args = parser.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="mcpctl-bench-proxy-") as tmp, _setup(Path(tmp)) as (paths, pid):
        server = [str(PYTHON), "-m", "mcp_sales", "--data", str(DATA)]
        seed = f"cd {REPO} && source .venv/bin/activate && python -m mcp_sales"
        starts = {"proxy": paths.proxy(), "ssh exec": paths.ssh("exec", *server), "seed ssh": paths.ssh(seed)}
        times: dict[str, list[float]] = {name: [] for name in starts}
        with console.status("first tools/list"):
            for _ in range(args.runs):  # round robin: load drift hits every path alike
                for name, command in starts.items():
                    times[name].append(time_to_tools_list(command, paths.env))
        cold = {name: statistics.median(values) for name, values in times.items()}
        with console.status("round trips"):
            on_asyncio = {**paths.env, LOOP_ENV: "asyncio"}
            echoes = round_trips(
                {
                    "proxy": (paths.proxy(["cat"]), paths.env),
                    "proxy on asyncio": (paths.proxy(["cat"]), on_asyncio),
                    "ssh": (paths.ssh("cat"), paths.env),
                },
                args.messages,
            )
            ours, theirs = echoes["proxy"], echoes["ssh"]
        with console.status("the proxy's own start"):
            starts_of = start_times(max(args.runs, 11))
        with console.status("recovery after dropped links"):
            recovery = recovery_times(paths, pid, args.drops)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    uvloop_used = importlib.util.find_spec("uvloop") is not None and sys.platform != "win32"
    table = Table(
        title="mcpctl connect vs OpenSSH, loopback",
        caption=f"{os.cpu_count()} cores, load average {load:.1f}; {args.runs} cold starts, "
        f"{args.messages} echoed messages, {args.drops} drops",
    )
    for column in ("measurement", "proxy", "baseline", "ratio", "goal"):
        table.add_column(column, justify="left" if column in ("measurement", "goal") else "right")
    for name in ("ssh exec", "seed ssh"):
        table.add_row(
            f"first tools/list vs {name}",
            _ms(cold["proxy"]),
            _ms(cold[name]),
            _ratio(cold["proxy"], cold[name]),
            "",
        )
    median_theirs, p99_theirs = statistics.median(theirs.samples), _p99(theirs.samples)
    for name, loop in (("proxy", "uvloop" if uvloop_used else "asyncio"), ("proxy on asyncio", "asyncio")):
        echo = echoes[name]
        median = statistics.median(echo.samples)
        table.add_row(
            f"round trip median, {loop}",
            _us(median),
            _us(median_theirs),
            _ratio(median, median_theirs),
            f"<= {RTT_GOAL}x",
        )
        p99 = _p99(echo.samples)
        table.add_row(f"round trip p99, {loop}", _us(p99), _us(p99_theirs), _ratio(p99, p99_theirs), "")
        if echo.cpu_per_message is not None and theirs.cpu_per_message is not None:
            table.add_row(
                f"relay CPU per message, {loop}",
                _us(echo.cpu_per_message),
                _us(theirs.cpu_per_message),
                _ratio(echo.cpu_per_message, theirs.cpu_per_message),
                "",
            )
    imports, bare = statistics.median(starts_of["imports"]), statistics.median(starts_of["python"])
    table.add_row("start to relay imported / python", _ms(imports), _ms(bare), "", "")
    table.add_row("  of which the proxy's imports", _ms(imports - bare), "", "", "")
    worst = max(recovery)
    table.add_row(
        "recovery after a drop (worst)", f"{worst:.2f} s", "session lost", "", f"< {RECOVERY_GOAL:g} s"
    )
    console.print(table)
    rtt = statistics.median(ours.samples) / median_theirs
    console.print(
        f"round trip {'meets' if rtt <= RTT_GOAL else 'misses'} its goal ({rtt:.2f}x); "
        f"recovery {'meets' if worst < RECOVERY_GOAL else 'misses'} its goal ({worst:.2f} s; "
        f"all: {', '.join(f'{t:.2f}' for t in recovery)} s)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
