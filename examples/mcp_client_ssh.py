"""A plain MCP client for the sales server: list the tools, ask for top products and a forecast.

It uses nothing but the MCP Python SDK's own client, so it is also the smallest check that a profile
works end to end (local computer -> SSH -> remote ``python -m mcp_sales``)::

    python -m examples.mcp_client_ssh --profile demo --operation Dallas --n 5 --horizon 6
    python -m examples.mcp_client_ssh --profile demo --ssh            # plain OpenSSH instead of mcpctl
    python -m examples.mcp_client_ssh --local --data data/sample_sales_data.csv
    python -m examples.mcp_client_http --url https://sales.example.com/mcp   # over HTTP, key in $MCP_API_KEY

Answers go to stdout; progress and errors go to stderr. Any failure (the server cannot be reached, a
tool reports an error) is one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import anyio
from mcp import Client
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import CallToolResult, Tool
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from examples._transport import (
    Server,
    add_server_options,
    describe_error,
    launch_from_args,
    leaf_exceptions,
    open_client,
    print_error,
    quiet_sdk_logging,
    tool_text,
)

SPARK = "▁▂▃▄▅▆▇█"
SPARK_HISTORY_MONTHS = 36  # history shown in the sparkline: enough for three seasons, fits 80 columns

EXIT_OK = 0
EXIT_TOOL_ERROR = 1
EXIT_UNREACHABLE = 3
EXIT_USAGE = 2


class ToolFailed(Exception):
    """A tool answered with an error (``is_error``); the message is the tool's own text."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"{tool}: {message}")
        self.tool = tool


# --- rendering (pure: data in, rich renderables out) ----------------------------------------------


def first_line(text: str | None) -> str:
    """Return the first non-empty line of a description ('' for none)."""
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def tools_table(tools: Sequence[Tool]) -> Table:
    """A table of tool names and one-line descriptions."""
    table = Table(title=f"{len(tools)} tools", title_justify="left", show_edge=False)
    table.add_column("Tool", style="bold cyan", no_wrap=True)
    table.add_column("What it does")
    for tool in tools:
        table.add_row(tool.name, escape(first_line(tool.description)))
    return table


def _units(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _metric_value(value: float | None, metric: str) -> str:
    return _money(value) if metric == "revenue" else _units(value)


def top_products_table(result: dict[str, Any]) -> Table:
    """A table of a ``top_n_products`` structured result (``TopProductsResult`` as JSON)."""
    period = (
        "all dates"
        if result.get("start_date") is None and result.get("end_date") is None
        else f"{result.get('start_date') or 'start'} to {result.get('end_date') or 'end'}"
    )
    products: list[dict[str, Any]] = result["products"]
    table = Table(
        title=(
            f"Top {len(products)} of {result['total_products']} products in {escape(result['operation'])}"
            f" by {result['metric']} ({period})"
        ),
        title_justify="left",
        show_edge=False,
    )
    table.add_column("#", justify="right")
    table.add_column("Product", style="bold")
    table.add_column("ID", style="dim")
    table.add_column("Units", justify="right")
    has_revenue = any(p.get("revenue") is not None for p in products)
    if has_revenue:
        table.add_column("Revenue", justify="right")
    table.add_column("Share", justify="right")
    for p in products:
        row = [str(p["rank"]), escape(p["product_name"]), escape(p["product_id"]), _units(p["units"])]
        if has_revenue:
            row.append(_money(p.get("revenue")))
        row.append(f"{p['share']:.1%}")
        table.add_row(*row)
    return table


def sparkline(values: Sequence[float], low: float, high: float) -> str:
    """Map values onto eight block characters between ``low`` and ``high`` (a flat series is mid-height)."""
    if high <= low:
        return SPARK[len(SPARK) // 2] * len(values)
    top = len(SPARK) - 1
    return "".join(SPARK[max(0, min(top, round((v - low) / (high - low) * top)))] for v in values)


def forecast_view(result: dict[str, Any]) -> Group:
    """A heading, a sparkline of recent history then forecast, and one row per forecast month."""
    metric = result["metric"]
    points: list[dict[str, Any]] = result["points"]
    history = [p for p in points if p.get("actual") is not None][-SPARK_HISTORY_MONTHS:]
    future = [p for p in points if p.get("actual") is None and p.get("forecast") is not None]
    subject = result["operation"]
    if result.get("product"):
        subject = f"{result['product']} in {subject}"
    heading = Text.assemble(
        ("Forecast", "bold"),
        f" of monthly {metric} for {subject}: {result['horizon_months']} months ahead, "
        f"{round(result['interval_width'] * 100)}% interval, fitted on {result['history_months']} months "
        f"({'from cache' if result.get('cached') else 'freshly fitted'})",
    )
    past = [float(p["actual"]) for p in history]
    ahead = [float(p["forecast"]) for p in future]
    scale = past + ahead
    spark = Text()
    if scale:
        low, high = min(scale), max(scale)
        if history:
            spark.append(f"{history[0]['period'][:7]} ", style="dim")
            spark.append(sparkline(past, low, high), style="dim")
        spark.append(" | " if history and future else "")
        spark.append(sparkline(ahead, low, high), style="bold cyan")
        if future:
            spark.append(f" {future[-1]['period'][:7]}", style="dim")
    table = Table(show_edge=False)
    table.add_column("Month")
    table.add_column("Forecast", justify="right", style="bold cyan")
    table.add_column("Low", justify="right")
    table.add_column("High", justify="right")
    for p in future:
        table.add_row(
            p["period"][:7],
            _metric_value(p["forecast"], metric),
            _metric_value(p.get("lower"), metric),
            _metric_value(p.get("upper"), metric),
        )
    return Group(heading, spark, table)


# --- talking to the server ------------------------------------------------------------------------


async def call(
    client: Client,
    tool: str,
    arguments: dict[str, Any],
    read_timeout: float,
    progress: ProgressFnT | None = None,
) -> dict[str, Any]:
    """Call a tool and return its structured result.

    Raises:
        ToolFailed: The tool reported an error, or returned no structured result.
    """
    result: CallToolResult = await client.call_tool(
        tool, arguments, read_timeout_seconds=read_timeout, progress_callback=progress
    )
    if result.is_error:
        raise ToolFailed(tool, tool_text(result) or "the tool reported an error without a message")
    if not isinstance(result.structured_content, dict):
        raise ToolFailed(tool, "the tool returned no structured result; is this the mcp_sales server?")
    return result.structured_content


async def run(launch: Server, args: argparse.Namespace, out: Console, err: Console) -> None:
    """Connect, list the tools, then ask for top products and (unless skipped) a forecast.

    Raises:
        ToolFailed: A tool reported an error.
        TransportError, MCPError: The server cannot be reached (see ``describe_error``).
    """
    with err.status(f"Connecting to {escape(launch.describe())}..."):
        async with open_client(launch, connect_timeout=args.connect_timeout) as client:
            info = client.server_info
            err.print(f"[green]connected[/] to {escape(info.name if info else 'the server')}")
            tools = (await client.list_tools()).tools
            out.print(tools_table(tools))
            out.print()
            top = await call(
                client, "top_n_products", {"operation": args.operation, "n": args.n}, args.timeout
            )
            out.print(top_products_table(top))
            out.print()
            if args.horizon > 0:
                out.print(forecast_view(await _forecast(client, args, err)))


async def _forecast(client: Client, args: argparse.Namespace, err: Console) -> dict[str, Any]:
    """Ask for the forecast, showing the server's progress reports while the model fits."""
    with err.status("Forecasting (a first fit takes a few seconds)...") as status:

        async def report(progress: float, total: float | None, message: str | None) -> None:
            of = f" of {total:.0f}" if total else ""
            status.update(f"{escape(message or 'Forecasting')}: {progress:.0f} s{of}")

        arguments = {"operation": args.operation, "horizon_months": args.horizon, "include_history": True}
        return await call(client, "forecast_sales", arguments, args.timeout, report)


DESCRIPTION = "List the sales server's tools, then show top products and a forecast for one operation."


def build_parser() -> argparse.ArgumentParser:
    """The command line: server options plus the questions to ask."""
    parser = argparse.ArgumentParser(prog="python -m examples.mcp_client_ssh", description=DESCRIPTION)
    add_server_options(parser)
    add_question_options(parser)
    return parser


def add_question_options(parser: argparse.ArgumentParser) -> None:
    """Add what to ask (``--operation``, ``--n``, ``--horizon``) and ``--verbose``."""
    ask = parser.add_argument_group("questions")
    ask.add_argument(
        "--operation", default="Dallas", help="operation (city/store) to ask about (default Dallas)"
    )
    ask.add_argument("--n", type=int, default=5, help="how many top products (default 5)")
    ask.add_argument("--horizon", type=int, default=6, metavar="MONTHS", help="forecast months; 0 skips it")
    parser.add_argument("--verbose", action="store_true", help="also show the MCP SDK's own log records")


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the example; return the exit code (0 ok, 1 tool error, 2 usage, 3 server unreachable).

    ``parser`` replaces the command line's options (the HTTP client passes its own).
    """
    args = (parser or build_parser()).parse_args(argv)
    quiet_sdk_logging(args.verbose)
    out, err = Console(), Console(stderr=True)
    launch: Server | None = None
    try:
        launch = launch_from_args(args)
        anyio.run(run, launch, args, out, err)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:  # MCPError, timeouts, task-group wrappers...: one line each, no traceback
        # The SDK's task groups may wrap our own errors; look inside before deciding what happened.
        leaves = leaf_exceptions(exc)
        failed = next((e for e in leaves if isinstance(e, ToolFailed)), None)
        if failed is not None:
            print_error(err, str(failed))
            return EXIT_TOOL_ERROR
        print_error(err, describe_error(exc, launch))
        return EXIT_USAGE if launch is None else EXIT_UNREACHABLE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
