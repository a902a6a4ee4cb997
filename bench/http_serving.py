"""Tool calls per second over every way mcp-sales is served, against the reference HTTP pattern.

``uv run python -m bench http [--clients 1,8,32] [--seconds 5] [--warmup 2] [--shapes ...]``

On loopback, in one run, cached ``top_n_products(n=5, operation='Dallas')`` in a closed loop (each
client keeps one call in flight) through:

- ``stdio/ssh``: one ``mcpctl connect`` per client, each its own SSH session and server process on a
  throwaway local sshd (``tests/sshd.py``), as Claude Desktop runs it;
- ``stateful``: ``mcp-sales serve --transport streamable-http`` (``Mcp-Session-Id`` sessions);
- ``stateless``: the same with ``--stateless`` (JSON answers, any replica answers anything), and with
  ``--workers 2`` (``stateless-w2``); ``stateless-sdk`` is ``stateless`` with its fast path off
  (``MCP_SALES_HTTP_FAST_PATH=0``: the SDK's transport answers every request);
- ``sse``: ``mcp-sales serve --transport sse`` (``GET /sse`` + POSTs to its message endpoint);
- ``baseline``: the reference design's HTTP server (``bench/_reference_http_server.py``): the SDK's
  SSE app under uvicorn, one process, re-reading the CSV with pandas on every call.

Every HTTP server checks an API key (``MCP_API_KEY``) on every request, as deployed. The load comes from
``bench/_http_load.py`` in a process of its own (raw HTTP/1.1 keep-alive, one ``initialize`` per
session); it and every server share this machine's cores, so besides wall-clock throughput and
latency the table shows the server's CPU seconds per call, read from /proc for its whole process tree
(for stdio: the sshd sessions and the server processes; the ``mcpctl connect`` relays, which run on
the user's machine in real use, are reported apart).

Goal at 32 clients: >= 1,000 calls/s per core (calls per server CPU-second), p99 < 50 ms, and >= 50x
the baseline's calls/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
DATA = REPO / "data" / "sample_sales_data.csv"
PROFILE = "bench"
TOOL = "top_n_products"
ARGUMENTS = {"n": 5, "operation": "Dallas"}
READY_TIMEOUT = 120.0  # seconds for a server to answer its readiness probe
GOAL_PER_CORE = 1000.0
GOAL_P99 = 0.050
GOAL_RATIO = 50.0
SHAPES = ("baseline", "stdio/ssh", "stateful", "stateless", "sse", "stateless-w2", "stateless-sdk")
# Where a stateless call's server time goes (bench/_http_layers_server.py): each adds one layer.
LAYERS = ("layer: http", "layer: +sdk", "layer: +tools")
ALL_SHAPES = SHAPES + LAYERS


@dataclass(frozen=True)
class Shape:
    """How to start one server and how the load generator talks to it."""

    name: str
    kind: str  # the load generator's client: streamable, sse or stdio
    argv: list[str]  # the server command ([] for stdio: the sessions start their own servers)
    ready_path: str  # GET this until 200 (no auth sent) ... or any answer at all for ``probe_any``
    probe_any: bool = False
    env: tuple[tuple[str, str], ...] = ()  # added to the server's environment


def _free_port() -> int:
    from tests.sshd import free_port

    return free_port()


def _server_argv(transport: str, port: int, data: Path, cache: Path, *extra: str) -> list[str]:
    return [
        str(PYTHON), "-m", "mcp_sales", "serve", "--transport", transport, "--host", "127.0.0.1",
        "--port", str(port), "--data", str(data), "--cache-dir", str(cache), *extra,
    ]  # fmt: skip


def _shape(name: str, port: int, cache: Path, data: Path = DATA) -> Shape:
    if name == "baseline":
        argv = [str(PYTHON), "-m", "bench._reference_http_server", "--data", str(data), "--port", str(port)]
        return Shape(name, "sse", argv, "/sse", probe_any=True)
    if name in LAYERS:
        layer = {"layer: http": "http", "layer: +sdk": "sdk", "layer: +tools": "tools"}[name]
        argv = [str(PYTHON), "-m", "bench._http_layers_server", layer, "--port", str(port)]
        return Shape(name, "streamable", [*argv, "--data", str(data), "--cache-dir", str(cache)], "/health")
    if name == "stdio/ssh":
        return Shape(name, "stdio", [], "")
    if name == "sse":
        return Shape(name, "sse", _server_argv("sse", port, data, cache), "/health")
    extra = {"stateful": [], "stateless": ["--stateless"], "stateless-w2": ["--stateless", "--workers", "2"]}
    if name == "stateless-sdk":  # the stateless server with its fast path off: the SDK answers every POST
        argv = _server_argv("streamable-http", port, data, cache, "--stateless")
        return Shape(name, "streamable", argv, "/health", env=(("MCP_SALES_HTTP_FAST_PATH", "0"),))
    argv = _server_argv("streamable-http", port, data, cache, *extra[name])
    return Shape(name, "streamable", argv, "/health")


def _wait_ready(process: subprocess.Popen[bytes], port: int, shape: Shape, log: Path) -> None:
    """Poll (bounded) until the server answers its readiness probe; raise with its log if it dies."""
    url = f"http://127.0.0.1:{port}{shape.ready_path}"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if shape.probe_any:
                return
            exc.close()
        except (OSError, TimeoutError):
            pass
        time.sleep(0.1)  # polling a port: there is no event to wait on
    raise RuntimeError(f"not ready within {READY_TIMEOUT:g} s: {_tail(log)}")


def _tail(log: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def _http_server(shape: Shape, port: int, key: str, workdir: Path) -> Iterator[int]:
    """Start one HTTP server; yield its pid once it is ready; stop it (and its workers) after."""
    log = workdir / f"{shape.name.replace('/', '-')}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            shape.argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, **dict(shape.env), "MCP_API_KEY": key},
            start_new_session=True,  # one process group: stopping it stops every worker too
        )
        try:
            _wait_ready(process, port, shape, log)
            yield process.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


@contextlib.contextmanager
def _ssh_profile(workdir: Path, data: Path, cache: Path) -> Iterator[tuple[list[str], dict[str, str], int]]:
    """A local sshd and profile 'bench' serving this checkout: yield (connect argv, env, sshd pid)."""
    from tests.sshd import running_sshd

    home = workdir / "home"
    os.environ["MCPCTL_HOME"] = str(home)  # the profile functions read it
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
                data=[data],
                server_args=["--cache-dir", str(cache)],
            )
        )
        key_line = sshd.known_hosts.read_text().split(None, 1)[1].strip()
        pin_host_key(known_hosts_path(PROFILE), sshd.host, sshd.port, key_line)
        script = PYTHON.parent / "mcpctl"
        argv = (
            [str(script), "connect", PROFILE]
            if script.exists()
            else [str(PYTHON), "-m", "provision.connect", PROFILE]
        )
        yield argv, {**os.environ, "MCPCTL_HOME": str(home)}, sshd.process.pid


def _load(spec: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """Run the load generator in its own process; its results, one per client count."""
    spec = {**spec, "out": str(out)}
    done = subprocess.run(
        [str(PYTHON), "-m", "bench._http_load", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"load generator exited with {done.returncode}")
    return list(json.loads(out.read_text())["results"])


def run_shape(name: str, args: argparse.Namespace, workdir: Path, cache: Path) -> list[dict[str, Any]]:
    """Measure one shape at every client count."""
    key = secrets.token_urlsafe(24)
    spec: dict[str, Any] = {
        "clients": args.clients,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "tool": TOOL,
        "arguments": ARGUMENTS,
        "host": "127.0.0.1",
        "headers": {"Authorization": f"Bearer {key}"},
    }
    port = _free_port()
    shape = _shape(name, port, cache, args.data)
    spec.update(kind=shape.kind, port=port)
    if shape.kind == "stdio":
        with _ssh_profile(workdir / "ssh", args.data, cache) as (argv, env, sshd_pid):
            spec.update(argv=argv, env=env, server_pid=sshd_pid, start_at_once=8)
            return _load(spec, workdir / "load.json")
    with _http_server(shape, port, key, workdir) as pid:
        spec["server_pid"] = pid
        return _load(spec, workdir / "load.json")


def _prepare(data: Path, cache: Path) -> None:
    """Convert the data once, so no server converts it while being measured."""
    subprocess.run(
        [str(PYTHON), "-m", "mcp_sales", "check", "--data", str(data), "--cache-dir", str(cache)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )


def _quantile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return (
        ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))] if ordered else float("nan")
    )


@dataclass(frozen=True)
class Row:
    shape: str
    clients: int
    calls: int
    per_s: float
    median: float
    p99: float
    cpu_server: float | None  # CPU seconds of the server tree in the window
    cpu_server_by_name: dict[str, float]  # the same by command name (sshd, python...)
    cpu_relays: float
    cpu_load: float

    @property
    def per_core(self) -> float | None:
        """Calls per CPU-second of the server: its throughput per fully used core."""
        return self.calls / self.cpu_server if self.cpu_server else None


def summarize(shape: str, result: dict[str, Any]) -> Row:
    latencies = result["latencies"]
    return Row(
        shape=shape,
        clients=result["clients"],
        calls=len(latencies),
        per_s=len(latencies) / result["seconds"],
        median=_quantile(latencies, 0.5),
        p99=_quantile(latencies, 0.99),
        cpu_server=result["cpu_server"],
        cpu_server_by_name=result.get("cpu_server_by_name", {}),
        cpu_relays=result["cpu_relays"],
        cpu_load=result["cpu_load"],
    )


def _client_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--clients takes counts like 1,8,32, not {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("--clients needs positive counts, like 1,8,32")
    return counts


def _shapes(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in ALL_SHAPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--shapes takes some of {','.join(ALL_SHAPES)}, not {text!r}")
    return names


def _data_file(text: str) -> Path:
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file {text}; write one with `mcp-sales sample`")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench http", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=_client_counts, default=[1, 8, 32], help="client counts (1,8,32)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per client count (5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per shape (2)")
    parser.add_argument(
        "--shapes", type=_shapes, default=list(ALL_SHAPES), help=f"any of {','.join(ALL_SHAPES)}"
    )
    parser.add_argument(
        "--data",
        type=_data_file,
        default=DATA,
        help="sales CSV in the reference schema (default: the sample; `mcp-sales sample` writes bigger ones)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every row to this file")
    return parser


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def render(rows: list[Row], failures: dict[str, str], data: Path) -> Any:
    from rich.table import Table

    baseline = {row.clients: row.per_s for row in rows if row.shape == "baseline"}
    load = os.getloadavg()[0]
    table = Table(
        title=f"{TOOL}(n=5, 'Dallas') on {data.name}, closed loop on loopback",
        caption=f"{os.cpu_count()} cores, load average {load:.1f} at the end; server CPU = its whole "
        "process tree; per core = calls per server CPU-second",
    )
    columns = ("shape", "clients", "calls/s", "median ms", "p99 ms", "server CPU/call", "per core",
               "relay CPU/call", "load gen CPU/call", "vs baseline")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "shape" else "right")
    for index, row in enumerate(rows):
        ratio = row.per_s / baseline[row.clients] if baseline.get(row.clients) else None
        calls = max(row.calls, 1)
        table.add_row(
            row.shape if index == 0 or rows[index - 1].shape != row.shape else "",
            str(row.clients),
            f"{row.per_s:,.0f}" if row.per_s >= 10 else f"{row.per_s:.2f}",
            _ms(row.median),
            _ms(row.p99),
            f"{row.cpu_server / calls * 1e3:.2f} ms" if row.cpu_server is not None else "-",
            f"{row.per_core:,.0f}" if row.per_core else "-",
            f"{row.cpu_relays / calls * 1e3:.2f} ms" if row.cpu_relays else "-",
            f"{row.cpu_load / calls * 1e3:.2f} ms",
            f"{ratio:,.1f}x" if ratio is not None else "-",
            end_section=index + 1 < len(rows) and rows[index + 1].shape != row.shape,
        )
    for name, error in failures.items():
        table.add_row(name, "", "not run", "", "", "", "", "", "", error[:60])
    return table


def verdicts(rows: list[Row]) -> list[str]:
    """One line per shape at the largest client count: the goals met or missed."""
    top = max((row.clients for row in rows), default=0)
    baseline = next((row.per_s for row in rows if row.shape == "baseline" and row.clients == top), None)
    lines = []
    for row in rows:
        if row.clients != top or row.shape == "baseline" or row.shape in LAYERS:
            continue
        ratio = row.per_s / baseline if baseline else None
        checks = [
            f"per core {row.per_core:,.0f} calls/s {'ok' if row.per_core >= GOAL_PER_CORE else 'MISSED'}"
            if row.per_core
            else "per core -",
            f"p99 {_ms(row.p99)} ms {'ok' if row.p99 < GOAL_P99 else 'MISSED'}",
            f"{ratio:,.0f}x baseline {'ok' if ratio >= GOAL_RATIO else 'MISSED'}" if ratio else "no baseline",
        ]
        lines.append(f"{row.shape} at {top} clients: " + "; ".join(checks))
    return lines


def splits(rows: list[Row]) -> list[str]:
    """Server CPU per call by process name, where the server is more than one kind of process."""
    lines = []
    for row in rows:
        named = {name: cpu for name, cpu in row.cpu_server_by_name.items() if cpu > 0}
        if len(named) > 1 and row.calls:
            parts = ", ".join(f"{name} {cpu / row.calls * 1e3:.2f}" for name, cpu in sorted(named.items()))
            lines.append(
                f"{row.shape} at {row.clients} clients: server CPU per call (ms) by process: {parts}"
            )
    return lines


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    console = Console(width=160)
    rows: list[Row] = []
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mcpctl-bench-http-") as tmp:
        workdir = Path(tmp)
        cache = workdir / "cache"
        with console.status("converting the data once"):
            _prepare(args.data, cache)
        for name in args.shapes:
            with console.status(f"{name}: {', '.join(map(str, args.clients))} clients"):
                try:
                    results = run_shape(name, args, workdir, cache)
                except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
                    failures[name] = str(exc)
                    console.print(f"[red]{name} not measured:[/red] {exc}")
                    continue
            rows.extend(summarize(name, result) for result in results)
    console.print(render(rows, failures, args.data))
    for line in verdicts(rows) + splits(rows):
        console.print(line)
    if args.json is not None:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
