"""Warm start, for ``bench startup``: the launch command warm vs cold, a new session's first forecast,
the first ``tools/list`` through ``mcpctl connect`` vs a local cold start, and the warm server's memory.

Each comparison runs its paths round-robin, so machine noise hits them alike. The warm server runs
in a private directory (``MCP_SALES_WARM_DIR``) for the local measurements, and in the checkout's
own directory for ``mcpctl connect`` (the profile's remote_dir is this checkout, as in ``bench proxy``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.startup import ServerProcess
from mcp_sales.warm import attach

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 300.0
FORECAST = {"operation": "Dallas", "horizon_months": 6}


@dataclass
class Series:
    seconds: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000


def launch(*args: str) -> list[str]:
    return [sys.executable, "-I", "-S", str(REPO / "mcp_sales" / "warm" / "attach.py"), *args]


def wait_ready(directory: Path) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    while not (line := attach.ask("status", str(directory)) or "").startswith("ready"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no warm server became ready in {directory}")
        time.sleep(0.05)
    return line


def start_warm_server(directory: Path) -> subprocess.Popen[bytes]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (directory / "daemon.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_sales", "warm", "--dir", str(directory), "--idle-timeout", "900"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=REPO,
        )
    wait_ready(directory)
    return process


def round_robin(paths: dict[str, Callable[[], float]], runs: int) -> dict[str, Series]:
    """Run every path once unmeasured (caches), then ``runs`` times each, alternating."""
    for measure in paths.values():
        measure()
    series = {name: Series() for name in paths}
    for _ in range(runs):
        for name, measure in paths.items():
            series[name].seconds.append(measure())
    return series


def spawn_to_initialize(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    server = ServerProcess(command, cwd, env)
    try:
        return server.initialize()[0]
    finally:
        server.close()


def spawn_to_forecast(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """From spawn to the answer of the session's first, uncached forecast."""
    server = ServerProcess(command, cwd, env)
    try:
        server.initialize()
        result, _ = server.call_tool("forecast_sales", FORECAST)
        if result["structuredContent"]["cached"]:
            raise RuntimeError("the forecast came from the cache: the benchmark needs a fresh cache")
        return time.perf_counter() - server.started
    finally:
        server.close()


def memory_kib(pid: int) -> tuple[int, int]:
    """RSS and PSS (its share of pages shared with other processes) of a process, in KiB."""
    values = {"Rss:": 0, "Pss:": 0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(" ")
        if key in values:
            values[key] = int(rest.split()[0])
    return values["Rss:"], values["Pss:"]


def session_memory(
    directory: Path, data: Path, cache: Path, cwd: Path, env: dict[str, str]
) -> tuple[int, int]:
    """RSS and PSS of one warm session process after it answered a query."""
    server = ServerProcess(launch("--data", str(data), "--cache-dir", str(cache)), cwd, env)
    try:
        server.initialize()
        server.call_tool("top_n_products", {"n": 3, "operation": "Dallas"})
        line = attach.ask("status", str(directory)) or ""
        daemon = int(line.split()[line.split().index("pid") + 1])
        # The session's process, not the standby forked ahead for the next session (its name differs).
        children = [
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit() and _parent(int(p)) == daemon and _name(int(p)) == "mcp-sales"
        ]
        return memory_kib(children[0]) if children else (0, 0)
    finally:
        server.close()


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class WarmResults:
    launch: dict[str, Series]
    forecast: dict[str, Series]
    connect: dict[str, Series]
    daemon_rss_kib: int
    daemon_pss_kib: int
    session_rss_kib: int
    session_pss_kib: int
    ready_line: str


def measure_warm(data: Path, workdir: Path, runs: int, forecast_runs: int) -> WarmResults:
    """Every warm-start measurement, with its cold baseline measured in the same run."""
    directory = workdir / "warm"
    warm_env = {**os.environ, attach.DIR_ENV: str(directory)}
    cold_env = {**warm_env, attach.SWITCH_ENV: "0"}
    daemon = start_warm_server(directory)
    try:
        ready = attach.ask("status", str(directory)) or ""
        args = ("--data", str(data), "--cache-dir", str(workdir / "cache"))
        launch_series = round_robin(
            {
                "python -m mcp_sales (cold, before warm start)": lambda: spawn_to_initialize(
                    [sys.executable, "-m", "mcp_sales", *args], workdir, warm_env
                ),
                "launch command, cold (MCP_SALES_WARM=0)": lambda: spawn_to_initialize(
                    launch(*args), workdir, cold_env
                ),
                "launch command, warm": lambda: spawn_to_initialize(launch(*args), workdir, warm_env),
            },
            runs,
        )
        counter = iter(range(1_000_000))

        def fresh(env: dict[str, str]) -> float:
            cache = workdir / f"forecast-cache-{next(counter)}"  # uncached: a new cache each time
            return spawn_to_forecast(launch("--data", str(data), "--cache-dir", str(cache)), workdir, env)

        forecast_series = round_robin(
            {"new session, cold": lambda: fresh(cold_env), "new session, warm": lambda: fresh(warm_env)},
            forecast_runs,
        )
        daemon_rss, daemon_pss = memory_kib(daemon.pid)
        session_rss, session_pss = session_memory(directory, data, workdir / "cache", workdir, warm_env)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    connect_series = measure_connect(runs, workdir)
    return WarmResults(
        launch_series,
        forecast_series,
        connect_series,
        daemon_rss,
        daemon_pss,
        session_rss,
        session_pss,
        ready,
    )


def measure_connect(runs: int, workdir: Path) -> dict[str, Series]:
    """First tools/list through ``mcpctl connect`` (a local sshd, the host's warm server ready) vs a
    local cold start of ``python -m mcp_sales``."""
    from bench.proxy import DATA, _setup, time_to_tools_list

    host_dir = Path(attach.runtime_dir(str(REPO)))  # the checkout is the profile's remote_dir
    with _setup(workdir / "connect") as (paths, _pid):
        time_to_tools_list(paths.proxy(), paths.env)  # cold: starts the host's warm server
        wait_ready(host_dir)
        local = [sys.executable, "-m", "mcp_sales", "--data", str(DATA)]
        try:
            return round_robin(
                {
                    "local cold start: python -m mcp_sales": lambda: time_to_tools_list(local, paths.env),
                    "mcpctl connect (host warm)": lambda: time_to_tools_list(paths.proxy(), paths.env),
                },
                runs,
            )
        finally:
            attach.ask("stop", str(host_dir))


def render_warm(results: WarmResults, runs: int, forecast_runs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    for title, series, baseline, goal in (
        (
            f"Spawn to initialize response, launch command (median of {runs})",
            results.launch,
            0,
            "<= 60 ms warm",
        ),
        (
            f"Spawn to first tools/list answer (median of {runs})",
            results.connect,
            0,
            "mcpctl connect <= 0.5x the local cold start",
        ),
        (
            f"Spawn to the first uncached forecast of a new session (median of {forecast_runs})",
            results.forecast,
            0,
            "warm skips the imports",
        ),
    ):
        table = Table(title=f"{title}; goal: {goal}")
        for column in ("path", "median ms", "min ms", "max ms", "vs first row"):
            table.add_column(column, justify="left" if column == "path" else "right")
        base = list(series.values())[baseline].median_ms
        for name, each in series.items():
            table.add_row(
                name,
                f"{each.median_ms:.0f}",
                f"{min(each.seconds) * 1000:.0f}",
                f"{max(each.seconds) * 1000:.0f}",
                f"{each.median_ms / base:.2f}x",
            )
        console.print(table)
    daemon_mib = results.daemon_rss_kib / 1024
    console.print(
        f"warm server: RSS {daemon_mib:.0f} MiB (PSS {results.daemon_pss_kib / 1024:.0f} MiB); "
        f"a session process after a query: RSS {results.session_rss_kib / 1024:.0f} MiB, "
        f"PSS {results.session_pss_kib / 1024:.0f} MiB (pages shared with the warm server count in part)."
    )
