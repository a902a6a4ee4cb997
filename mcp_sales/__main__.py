"""Entry point: ``mcp-sales [serve|check|sample]`` (``python -m mcp_sales`` works the same).

Serving starts by moving the real stdout to a private descriptor (so nothing but JSON-RPC can reach
it), logs to stderr only, and imports nothing heavy before ``initialize`` is answered: the data file,
DuckDB, pandas and Prophet are loaded by the first tool call that needs them. The process exits with
code 0 on stdin EOF, SIGTERM, SIGHUP and SIGINT, taking any Stan child process with it.
"""

from __future__ import annotations

import os
import sys

# `python -m` puts the working directory first on sys.path, so a stray timeit.py or json.py there
# would shadow the standard library (and crash a fit deep inside matplotlib). Our package is already
# imported and our dependencies live in site-packages: drop that entry before importing anything else.
if (
    __name__ == "__main__"
    and not getattr(sys.flags, "safe_path", False)
    and sys.path
    and os.path.abspath(sys.path[0] or os.curdir) == os.getcwd()
):
    del sys.path[0]

import argparse
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from mcp_sales.server import ServerConfig

log = logging.getLogger("mcp_sales")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = PROJECT_ROOT / "data" / "sample_sales_data.csv"
DATA_ENV = "MCP_SALES_DATA"
COMMANDS = ("serve", "check", "sample", "warm")


def default_data_path() -> Path:
    """``$MCP_SALES_DATA`` if set, else the sample file of this checkout."""
    configured = os.environ.get(DATA_ENV, "").strip()
    return _absolute(configured) if configured else DEFAULT_DATA


def _absolute(value: str | Path) -> Path:
    return Path(value).expanduser().resolve()


def _data_source(value: str) -> Path | str:
    """A --data value: a local path (made absolute), or an ``s3://bucket/key`` URL kept as it is."""
    return value if value.startswith("s3://") else _absolute(value)


def _seconds(value: str) -> float:
    seconds = float(value)
    if not 0 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value} is not a number of seconds between 0 and 3600")
    return seconds


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=_data_source,
        default=None,
        help=f"sales file (CSV or Parquet) or s3://BUCKET/KEY; default: ${DATA_ENV} or "
        f"{DEFAULT_DATA.relative_to(PROJECT_ROOT)}",
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=SOURCE",
        help="use source column SOURCE for FIELD (e.g. operation=CITY); repeatable",
    )
    parser.add_argument("--date-format", default=None, metavar="F", help="strptime format of the date column")
    parser.add_argument(
        "--cache-dir",
        type=_absolute,
        default=None,
        metavar="D",
        help="where prepared data and fits are cached",
    )
    # Accepted by check too, so it can run with exactly the arguments the server is launched with.
    parser.add_argument(
        "--forecast-deadline",
        type=_seconds,
        default=45.0,
        metavar="S",
        help="seconds a forecast call waits for a fit before asking the client to retry (default 45)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="stderr log level (default INFO)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-sales",
        description="Sales analytics MCP server over stdio (serve is the default command).",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,check,sample,warm}")
    serve = commands.add_parser("serve", help="serve MCP over stdin/stdout (default) or HTTP (--transport)")
    _add_data_options(serve)
    from mcp_sales.http.options import add_http_options  # standard library only: start-up stays fast

    add_http_options(serve)
    check = commands.add_parser("check", help="validate the environment and the data; exit 1 on failure")
    _add_data_options(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    sample = commands.add_parser("sample", help="write a deterministic sample sales file")
    sample.add_argument("--out", type=_absolute, required=True, metavar="PATH")
    sample.add_argument("--rows", type=int, default=None, metavar="N")
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument("--format", choices=["csv", "parquet"], default=None, dest="fmt")
    warm = commands.add_parser("warm", help="the warm server that the launch command hands sessions to")
    warm.add_argument(
        "--dir", default=None, metavar="D", help="the socket's directory (default: per user and project)"
    )
    warm.add_argument(
        "--idle-timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="exit after S seconds without a session",
    )
    warm.add_argument("--no-prophet", action="store_true", help="do not import Prophet before forking")
    warm.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args = list(argv)
    if not args or args[0] not in (*COMMANDS, "-h", "--help"):
        args.insert(0, "serve")
    return build_parser().parse_args(args)


def claim_wire() -> BinaryIO:
    """Take the real stdout for ourselves (see :func:`mcp_sales.quiet.claim_stdout`)."""
    from mcp_sales.quiet import claim_stdout

    return claim_stdout()


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def server_config(args: argparse.Namespace) -> ServerConfig:
    """Translate CLI options; column overrides are validated here so a typo fails at start-up."""
    columns: dict[str, str] = {}
    if args.column:  # the data layer costs start-up time: import it only when there is work for it
        from mcp_sales.mapping import parse_column_overrides

        columns = parse_column_overrides(args.column)
    from mcp_sales.server import ServerConfig

    data_url = args.data if isinstance(args.data, str) else None
    if data_url is not None:  # s3://bucket/key: read from its local copy in the cache
        from mcp_sales.s3source import mirror_path

        args.data = mirror_path(data_url, args.cache_dir)
    return ServerConfig(
        data_url=data_url,
        data_path=args.data or default_data_path(),
        columns=columns,
        date_format=args.date_format,
        cache_dir=args.cache_dir,
        forecast_deadline_s=args.forecast_deadline,
    )


# --- serve ----------------------------------------------------------------------------------------


def _child_pids() -> list[int]:
    """Our direct children, from /proc (Linux; empty elsewhere)."""
    me = os.getpid()
    children: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:  # field 4 of proc(5): the parent pid
                children.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not readable
    return children


def _terminate_children() -> None:
    """SIGTERM our direct children (a Stan optimizer mid-fit) so none outlives the server."""
    for pid in _child_pids():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


def _exit_now(code: int) -> NoReturn:
    """Leave without waiting for worker threads (one may block on stdin, one may be mid-fit)."""
    _terminate_children()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    log.info("received %s; exiting", signal.Signals(signum).name)
    _exit_now(0)


async def _serve_stdio(server: MCPServer[Any], wire: BinaryIO) -> None:
    """Run the server on stdin and the private stdout duplicate until stdin reaches EOF."""
    import io

    import anyio
    from mcp.server.stdio import stdio_server

    # An explicit stdout skips the SDK's own claim of fd 1: we claimed it at process start.
    stdout = anyio.wrap_file(io.TextIOWrapper(wire, encoding="utf-8", write_through=True))
    lowlevel = server._lowlevel_server
    async with stdio_server(stdout=stdout) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def _is_broken_pipe(exc: BaseException) -> bool:
    """True for a lost client (alone or in an exception group): not an error worth a traceback."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and inner:
        return all(_is_broken_pipe(e) for e in inner)
    return isinstance(exc, BrokenPipeError | ConnectionResetError)


def _config_or_exit(args: argparse.Namespace) -> ServerConfig:
    """The server's configuration; a bad option is logged and ends the process with exit code 2."""
    try:
        return server_config(args)
    except Exception as exc:
        log.error("%s", exc)
        _exit_now(2)


def serve_http(args: argparse.Namespace) -> NoReturn:
    """Serve MCP over HTTP (``--transport streamable-http|sse``) until SIGINT/SIGTERM; never returns."""
    _configure_logging(args.log_level)
    config = _config_or_exit(args)
    from mcp_sales.http.options import settings_from_args
    from mcp_sales.http.runner import run

    code = run(config, settings_from_args(args))
    _exit_now(code)


def serve(args: argparse.Namespace) -> NoReturn:
    """Serve MCP over stdio; never returns."""
    if getattr(args, "transport", "stdio") != "stdio":
        serve_http(args)
    from mcp_sales.http.options import stdio_misfit

    if (misfit := stdio_misfit(args)) is not None:
        print(f"mcp-sales: {misfit}", file=sys.stderr)
        raise SystemExit(2)
    wire = claim_wire()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _on_signal)
    _configure_logging(args.log_level)
    config = _config_or_exit(args)

    import anyio

    from mcp_sales.server import build_server

    code = 0
    try:
        anyio.run(_serve_stdio, build_server(config), wire)
        log.info("stdin closed; exiting")
    except BaseException as exc:
        if _is_broken_pipe(exc):
            log.info("client went away; exiting")
        else:
            log.exception("server stopped on an unexpected error")
            code = 1
    _exit_now(code)


# --- check ----------------------------------------------------------------------------------------


def _check_python() -> str:
    # Reaching this line already proves the version: the package does not import on older Pythons.
    return f"Python {sys.version.split()[0]} ({sys.executable})"


def _check_imports() -> str:
    from mcp_sales.quiet import quiet_prophet_logger, silence_stan_loggers

    silence_stan_loggers()
    from importlib.metadata import version

    import duckdb
    import mcp.server  # noqa: F401
    import prophet

    quiet_prophet_logger()
    return f"mcp {version('mcp')}, duckdb {duckdb.__version__}, prophet {prophet.__version__}"


def _check_stan() -> str:
    # Building the model object loads the compiled Stan program and the CmdStan install it needs,
    # without fitting anything.
    from prophet import Prophet

    backend = Prophet().stan_backend
    model = getattr(backend, "model", None)
    exe = getattr(model, "exe_file", None)
    if not exe or not Path(str(exe)).is_file():
        raise RuntimeError("Prophet's compiled Stan model is missing; reinstall the server environment")
    return f"Stan model {exe}"


def _check_data(config: ServerConfig, warnings: list[str]) -> str:
    """The data summary line; what the conversion left out or took as given goes to ``warnings``."""
    from mcp_sales.models import GRAIN_ADJECTIVE
    from mcp_sales.server import open_store

    data = open_store(config).current()
    warnings.extend(data.numbers.notes())
    dates = ""
    if data.dates is not None:
        dates = f", {data.dates.describe()}"
        if (hint := data.dates.override_hint()) is not None:
            warnings.append(hint)
    return (
        f"{data.source.name}: {data.rows:,} rows, {len(data.operations)} operations, "
        f"{data.first_period}..{data.last_period} ({GRAIN_ADJECTIVE[data.grain]}){dates}, "
        f"version {data.version}"
    )


def _check_query(config: ServerConfig) -> str:
    from mcp_sales.analytics import top_products
    from mcp_sales.server import open_store

    data = open_store(config).current()
    if not data.operations:
        raise RuntimeError("the data has no operations")
    top = top_products(data, data.operations[0], n=1)
    best = top.products[0].product_name if top.products else "no sales"
    return f"top product in {top.operation}: {best}"


def run_checks(config: ServerConfig) -> dict[str, Any]:
    """Run every check (stdout diverted: imports may print from C) and report them all.

    A check whose prerequisite failed is reported as failed without running ("stan" needs "imports",
    "query" needs "data"); ``error`` is the first failure, the line a caller shows. A check that passed
    may carry ``warnings``: sentences about the data worth knowing (rows left out, negative units).
    """
    import time

    from mcp_sales.quiet import stdout_to_stderr

    warnings: dict[str, list[str]] = {"data": []}
    steps: list[tuple[str, str | None, Callable[[], str]]] = [
        ("python", None, _check_python),
        ("imports", None, _check_imports),
        ("stan", "imports", _check_stan),
        ("data", None, lambda: _check_data(config, warnings["data"])),
        ("query", "data", lambda: _check_query(config)),
    ]
    checks: list[dict[str, Any]] = []
    failed: set[str] = set()
    error: str | None = None
    with stdout_to_stderr():
        for name, needs, step in steps:
            started = time.perf_counter()
            ok = False
            if needs in failed:
                detail = f"skipped: {needs} failed"
            else:
                try:
                    detail, ok = step(), True
                except Exception as exc:
                    detail = str(exc) or type(exc).__name__
            if not ok:
                failed.add(name)
                error = error or f"{name}: {detail}"
            seconds = time.perf_counter() - started
            checks.append(
                {
                    "name": name,
                    "ok": ok,
                    "detail": detail,
                    "seconds": seconds,
                    "warnings": warnings.get(name, []),
                }
            )
    return {"ok": error is None, "error": error, "checks": checks}


def check(args: argparse.Namespace) -> int:
    """Validate the environment and data; print a report; return the exit code."""
    import json

    wire = claim_wire()  # Prophet/Stan may print from C while we import them; the report goes to `wire`
    _configure_logging(args.log_level)
    try:
        config = server_config(args)
    except Exception as exc:
        print(f"mcp-sales check failed: {exc}", file=sys.stderr)
        return 1
    report = run_checks(config)
    if args.json:
        wire.write(json.dumps(report, indent=2).encode() + b"\n")
    else:
        for item in report["checks"]:
            mark = "ok  " if item["ok"] else "FAIL"
            wire.write(f"{mark} {item['name']:<8} {item['detail']}  ({item['seconds']:.2f} s)\n".encode())
            for warning in item["warnings"]:
                wire.write(f"warn {item['name']:<8} {warning}\n".encode())
    wire.flush()
    if not report["ok"]:
        print(f"mcp-sales check failed: {report['error']}", file=sys.stderr)
        return 1
    return 0


# --- sample ---------------------------------------------------------------------------------------


def sample(args: argparse.Namespace) -> int:
    from mcp_sales.sample import generate_sample

    rows = generate_sample(args.out, rows=args.rows, seed=args.seed, fmt=args.fmt)
    print(f"wrote {rows} rows to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        serve(args)
    elif args.command == "check":
        raise SystemExit(check(args))
    elif args.command == "warm":
        from mcp_sales.warm.daemon import run

        raise SystemExit(run(args))
    else:
        raise SystemExit(sample(args))


if __name__ == "__main__":
    main()
