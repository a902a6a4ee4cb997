"""MCP wiring: thin typed tools over ``analytics`` and ``forecast``.

Every tool returns the pydantic model from ``models.py`` as structured content (it is also the tool's
output schema) plus a short text the model can read. Expected failures (``SalesError``) become tool
errors carrying their one-sentence message; anything else becomes a tool error pointing at the server
log, where the traceback goes.

Only ``mcp`` and our light modules are imported here: the data file, DuckDB, pandas and Prophet are
loaded by the first tool call that needs them, so ``initialize`` is answered as fast as the SDK allows
and a missing or broken data file never stops the server from starting.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import (
    CallToolResult,
    ContentBlock,
    ImageContent,
    InputRequiredResult,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, Field, ValidationError

from mcp_sales import __version__, forecast
from mcp_sales.errors import SalesError, echo
from mcp_sales.models import (
    GRAIN_ADJECTIVE,
    DatasetSummary,
    ForecastResult,
    Grain,
    Metric,
    OperationsResult,
    ProductsResult,
    SalesOverTimeResult,
    TopProductsResult,
)

if TYPE_CHECKING:
    from mcp_sales.data import SalesData, SalesStore

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)

INSTRUCTIONS = """\
Sales analytics over one table of sales: operations (cities/stores) x products x time, in units and,
when the data has it, revenue. Start with dataset_summary (date range, columns) or list_operations
(the exact operation names); list_products shows what is sold. Then use top_n_products for best
sellers, sales_over_time for trends, and forecast_sales for a Prophet forecast of monthly sales.
Operation and product names are matched case-insensitively and by unique partial name. Dates are
YYYY-MM-DD (YYYY-MM or YYYY select a whole month or year). A first forecast can take up to a minute
(progress is reported); repeated forecasts are served from a cache. Every error message says what to
change: read it and call again."""

# Server-side duration of each tool call, in the result's _meta (prefixed as the spec asks): lets
# clients and benchmarks tell server time from transport time.
ELAPSED_META = "mcp-sales/elapsed_ms"

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)

OperationArg = Annotated[
    str,
    Field(description="Operation (city/store) name from list_operations; case-insensitive, partial ok."),
]
MetricArg = Annotated[
    Metric, Field(description="'units' (default) or 'revenue' (only when the data has a revenue column).")
]
StartArg = Annotated[
    str | None,
    Field(description="First day to include: YYYY-MM-DD, YYYY-MM or YYYY; omit for the data's start."),
]
EndArg = Annotated[
    str | None,
    Field(description="Last day to include: YYYY-MM-DD, or YYYY-MM / YYYY for a whole month / year."),
]


@dataclass(frozen=True)
class ServerConfig:
    """What the server needs to know at start-up; nothing here is read until the first tool call."""

    data_path: Path
    columns: Mapping[str, str] = field(default_factory=dict)
    date_format: str | None = None
    cache_dir: Path | None = None
    forecast_deadline_s: float = forecast.DEFAULT_DEADLINE_S
    # Progress notifications while a fit runs; clients reset their request timeout on each one.
    progress_interval_s: float = 1.0
    # Open the data in the background once the handshake is done, so the first tool call is fast.
    prefetch: bool = True
    # `--data s3://bucket/key`: data_path is then the object's local copy (mcp_sales.s3source).
    data_url: str | None = None


def open_store(config: ServerConfig) -> SalesStore:
    """Build the data store for ``config`` (imports the data layer).

    Raises:
        DataError: the file is missing or its columns cannot be mapped.
    """
    if config.data_url is not None:  # an S3 object, mirrored into the cache and then read as a file
        from mcp_sales.s3source import open_s3_store

        return open_s3_store(config)
    from mcp_sales.data import SalesStore
    from mcp_sales.mapping import load_mapping

    overrides = dict(config.columns)
    if config.date_format:
        overrides["date_format"] = config.date_format
    # Without overrides the store infers the mapping itself, again whenever the file changes.
    mapping = load_mapping(config.data_path, overrides) if overrides else None
    return SalesStore(config.data_path, mapping, config.cache_dir)


class _Backend:
    """The lazily opened data store, shared by all tools of one server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._store: SalesStore | None = None
        self._lock = threading.Lock()

    def data(self) -> SalesData:
        """The current data, opening the store on first use (blocking: call from a worker thread).

        A failed open is not remembered: once the user fixes the file, the next call succeeds.
        """
        with self._lock:
            if self._store is None:
                self._store = open_store(self.config)
            store = self._store
        return store.current()

    def prefetch(self) -> None:
        """Open the data and import the query layer ahead of the first call; failures only log (the
        first tool call reports them to the model)."""
        try:
            self.data()
            from mcp_sales import analytics  # noqa: F401
        except SalesError as exc:
            log.warning("data not ready: %s", exc)
        except Exception:
            log.exception("preparing the data failed")

    def prefetch_middleware(self) -> ServerMiddleware[Any]:
        """Middleware starting :meth:`prefetch` in a daemon thread on the first message that is not
        ``initialize``: the handshake has been answered by then, so start-up never waits for it."""
        started = False

        async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
            nonlocal started
            if not started and ctx.method != "initialize":
                started = True
                threading.Thread(target=self.prefetch, name="prefetch", daemon=True).start()
            return await call_next(ctx)

        return middleware


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def _ok(model: BaseModel, text: str, extra: list[ContentBlock] | None = None) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=text), *(extra or [])]
    return CallToolResult(content=content, structured_content=model.model_dump(mode="json"))


def _unexpected(tool: str) -> CallToolResult:
    log.exception("tool %s failed unexpectedly", tool)
    return _error(
        f"{tool} failed with an unexpected server error; the traceback is in the server log (stderr). "
        "Retrying the same call will not help until the server is fixed."
    )


async def _guard(tool: str, work: Callable[[], Awaitable[CallToolResult]]) -> CallToolResult:
    """Run a tool body: failures become tool errors; the server-side time goes into ``_meta``."""
    started = time.perf_counter()
    try:
        result = await work()
    except SalesError as exc:
        log.info("tool %s: %s", tool, exc)
        result = _error(str(exc))
    except Exception:
        result = _unexpected(tool)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    log.debug("tool %s answered in %.1f ms", tool, elapsed_ms)
    result.meta = {**(result.meta or {}), ELAPSED_META: elapsed_ms}
    return result


async def _run(
    tool: str, backend: _Backend, compute: Callable[[SalesData], ModelT], render: Callable[[ModelT], str]
) -> CallToolResult:
    """Compute in a worker thread (DuckDB queries block) and render the result."""

    async def work() -> CallToolResult:
        model = await anyio.to_thread.run_sync(lambda: compute(backend.data()))
        return _ok(model, render(model))

    return await _guard(tool, work)


def _date_range(start_date: str | None, end_date: str | None) -> tuple[dt.date | None, dt.date | None]:
    """The tools' ``start_date``/``end_date`` arguments as dates (validated where the tool computes, so
    a bad date becomes that tool's error)."""
    from mcp_sales import analytics

    return analytics.parse_date_arg(start_date, "start_date"), analytics.parse_date_arg(end_date, "end_date")


# --- text renderings: short, for the model to read next to the structured result -------------------


def _num(value: float | None, metric: str = "units") -> str:
    if value is None:
        return "-"
    if metric == "revenue":
        return f"${value:,.2f}"
    # Units may be fractional (kilograms, litres): 1.5 is "1.5", not rounded to "2".
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _revenue(value: float | None) -> str:
    """The ", revenue $x" suffix of a line, empty when the data has no revenue."""
    return f", revenue {_num(value, 'revenue')}" if value is not None else ""


def _period(start: Any, end: Any) -> str:
    if start is None and end is None:
        return "all dates"
    return f"{start or 'start'} to {end or 'end'}"


def render_top(r: TopProductsResult) -> str:
    lines = [
        f"Top {len(r.products)} of {r.total_products} products in {r.operation} by {r.metric} "
        f"({_period(r.start_date, r.end_date)}):"
    ]
    for p in r.products:
        lines.append(
            f"{p.rank}. {p.product_name} ({p.product_id}): {_num(p.units)} units{_revenue(p.revenue)}, "
            f"{p.share:.1%} of {r.metric}"
        )
    return "\n".join(lines)


def render_operations(r: OperationsResult) -> str:
    lines = [f"{len(r.operations)} operations:"]
    for o in r.operations:
        lines.append(
            f"- {o.name}: {o.products} products, {_num(o.units)} units{_revenue(o.revenue)}, "
            f"{o.first_period} to {o.last_period}"
        )
    return "\n".join(lines)


def render_products(r: ProductsResult) -> str:
    where = f"in {r.operation}" if r.operation else "across all operations"
    lines = [f"{len(r.products)} products {where}:"]
    for p in r.products:
        lines.append(f"- {p.product_name} ({p.product_id}): {_num(p.units)} units{_revenue(p.revenue)}")
    return "\n".join(lines)


def render_summary(r: DatasetSummary) -> str:
    revenue = (
        f", revenue {_num(r.revenue_total, 'revenue')}" if r.revenue_total is not None else " (no revenue)"
    )
    notes = "".join(f"\nNote: {note}." for note in r.numbers.notes())
    return (
        f"{r.source}: {r.rows:,} rows, {r.operations} operations, {r.products} products, "
        f"{r.first_period} to {r.last_period} ({GRAIN_ADJECTIVE[r.grain]} data); "
        f"{_num(r.units_total)} units{revenue}.\n"
        f"Columns: {', '.join(r.columns)}. Mapping: "
        + ", ".join(f"{k}={v}" for k, v in r.mapping.items())
        + _render_dates(r)
        + notes
    )


def _render_dates(r: DatasetSummary) -> str:
    """How the date column was read; empty for year + month columns."""
    if r.date_format_source is None:
        return ""
    if r.date_format is None:
        return "\nDates: a DATE/TIMESTAMP column."
    how = "detected from every value" if r.date_format_source == "detected" else "set by date_format"
    order = f", {r.date_order}" if r.date_order else ""
    note = f"; {r.date_note}" if r.date_note else ""
    return f"\nDates: read as {r.date_format!r} ({how}{order}){note}."


def render_over_time(r: SalesOverTimeResult) -> str:
    subject = " / ".join(x for x in (r.operation, r.product) if x) or "all operations"
    lines = [f"{subject}, per {r.grain} ({len(r.points)} periods):"]
    for p in r.points:
        lines.append(f"{p.period}: {_num(p.units)} units{_revenue(p.revenue)}")
    return "\n".join(lines)


def render_forecast(r: ForecastResult) -> str:
    subject = f"{r.product} in {r.operation}" if r.product else r.operation
    since = f" since {r.start_date}" if r.start_date else ""
    source = "from cache" if r.cached else "freshly fitted"
    lines = [
        f"Forecast of monthly {r.metric} for {subject}: {r.horizon_months} months ahead, "
        f"{round(r.interval_width * 100)}% interval, fitted on {r.history_months} months{since} ({source})."
    ]
    future = [p for p in r.points if p.actual is None]
    for p in future:
        lines.append(
            f"{p.period:%Y-%m}: {_num(p.forecast, r.metric)} "
            f"[{_num(p.lower, r.metric)} - {_num(p.upper, r.metric)}]"
        )
    history = [p for p in r.points if p.actual is not None]
    if history:
        recent = ", ".join(f"{p.period:%Y-%m} {_num(p.actual, r.metric)}" for p in history[-3:])
        lines.append(f"Last actuals: {recent} ({len(history)} history months in the structured result).")
    return "\n".join(lines)


# --- arguments the SDK rejects, in our words ------------------------------------------------------


def _argument_rules() -> dict[str, str]:
    """What each tool argument takes, as the phrase ending "<argument> must be ..."."""
    from mcp_sales.analytics import MAX_N  # only on the error path: keeps start-up light

    date = "a date as text, YYYY-MM-DD (or YYYY-MM, YYYY)"
    return {
        "n": f"a whole number from 1 to {MAX_N}",
        "operation": "an operation name (text) from list_operations",
        "product": "a product id or name (text) from list_products",
        "metric": "'units' or 'revenue'",
        "grain": "'month', 'quarter' or 'year'",
        "start_date": date,
        "end_date": date,
        "horizon_months": (
            f"a whole number from {forecast.MIN_HORIZON_MONTHS} to {forecast.MAX_HORIZON_MONTHS}"
        ),
        "interval_width": (
            f"a number between {forecast.MIN_INTERVAL_WIDTH} and {forecast.MAX_INTERVAL_WIDTH} "
            "(0.8 means an 80% interval)"
        ),
        "include_history": "true or false",
        "chart": "true or false",
    }


def argument_error(error: ValidationError) -> str:
    """One sentence for arguments that do not fit a tool's input schema, e.g. "n must be a whole number
    from 1 to 1000, not 1.5" (instead of pydantic's report with its URLs)."""
    rules = _argument_rules()
    problems: list[str] = []
    for detail in error.errors(include_url=False):
        name = str(detail["loc"][0]) if detail["loc"] else "the arguments"
        rule = rules.get(name, "what the tool's input schema describes")
        if detail["type"] == "missing":
            problems.append(f"{name} is missing; pass {rule}")
        else:
            problems.append(f"{name} must be {rule}, not {echo(detail['input'])}")
    return "; ".join(dict.fromkeys(problems))  # a union type reports one miss per member


class SalesServer(MCPServer[Any]):
    """The SDK's server, with tool-call errors the SDK raises itself (arguments that do not fit a tool's
    input schema, an unknown tool) rewritten into our one-sentence style and logged without a traceback."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # a crash: the SDK logs the traceback and answers with a generic message
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):  # the SDK's validation of the arguments
                message = argument_error(exc.__cause__)
            elif exc.__cause__ is None and name not in {tool.name for tool in await self.list_tools()}:
                tools = ", ".join(sorted(tool.name for tool in await self.list_tools()))
                message = f"there is no tool named {echo(name)}; the tools are {tools}"
            else:
                raise
            log.info("tool %s: %s", echo(name), message)
            return _error(message)


# --- the server ------------------------------------------------------------------------------------


def build_server(config: ServerConfig) -> MCPServer[Any]:
    """Create the MCP server; cheap (no data access until a tool is called)."""
    backend = _Backend(config)
    middleware = [backend.prefetch_middleware()] if config.prefetch else []
    server = SalesServer(
        name="mcp-sales",
        title="Sales analytics",
        version=__version__,
        instructions=INSTRUCTIONS,
        middleware=middleware,
    )

    @server.tool(title="Top products", annotations=READ_ONLY)
    async def top_n_products(
        n: Annotated[int, Field(description="How many products, 1 to 1000 (5 is a good default).")],
        operation: OperationArg,
        metric: MetricArg = "units",
        start_date: StartArg = None,
        end_date: EndArg = None,
    ) -> Annotated[CallToolResult, TopProductsResult]:
        """Best-selling products of one operation, ranked by units or revenue, optionally in a date range."""
        from mcp_sales import analytics

        def compute(data: SalesData) -> TopProductsResult:
            return analytics.top_products(data, operation, n, metric, *_date_range(start_date, end_date))

        return await _run("top_n_products", backend, compute, render_top)

    @server.tool(title="List operations", annotations=READ_ONLY)
    async def list_operations() -> Annotated[CallToolResult, OperationsResult]:
        """All operations (cities/stores) with their exact names, product counts, totals and date ranges."""
        from mcp_sales import analytics

        return await _run("list_operations", backend, analytics.list_operations, render_operations)

    @server.tool(title="List products", annotations=READ_ONLY)
    async def list_products(
        operation: Annotated[
            str | None, Field(description="Only products sold by this operation; omit for all operations.")
        ] = None,
    ) -> Annotated[CallToolResult, ProductsResult]:
        """Products with ids, names and total sales, for one operation or across all of them."""
        from mcp_sales import analytics

        return await _run(
            "list_products", backend, lambda data: analytics.list_products(data, operation), render_products
        )

    @server.tool(title="Dataset summary", annotations=READ_ONLY)
    async def dataset_summary() -> Annotated[CallToolResult, DatasetSummary]:
        """What the data contains: rows, operations, products, date range, time grain, columns, totals."""
        from mcp_sales import analytics

        return await _run("dataset_summary", backend, analytics.summarize, render_summary)

    @server.tool(title="Sales over time", annotations=READ_ONLY)
    async def sales_over_time(
        operation: Annotated[
            str | None, Field(description="Operation name; omit to add up all operations.")
        ] = None,
        product: Annotated[
            str | None, Field(description="Product id or name; omit to add up all products.")
        ] = None,
        grain: Annotated[Grain, Field(description="'month' (default), 'quarter' or 'year'.")] = "month",
        start_date: StartArg = None,
        end_date: EndArg = None,
    ) -> Annotated[CallToolResult, SalesOverTimeResult]:
        """Units (and revenue) per month, quarter or year: for an operation, a product, both, or all sales."""
        from mcp_sales import analytics

        def compute(data: SalesData) -> SalesOverTimeResult:
            return analytics.sales_over_time(
                data, operation, product, grain, *_date_range(start_date, end_date)
            )

        return await _run("sales_over_time", backend, compute, render_over_time)

    @server.tool(title="Forecast sales", annotations=READ_ONLY)
    async def forecast_sales(
        operation: OperationArg,
        ctx: Context[Any, Any],
        include_history: Annotated[
            bool, Field(description="Also return past months with actuals and fitted values (default true).")
        ] = True,
        start_date: Annotated[
            str | None, Field(description="Fit only on history from this day on (YYYY-MM-DD); omit for all.")
        ] = None,
        horizon_months: Annotated[
            int,
            Field(
                description=f"Months ahead, {forecast.MIN_HORIZON_MONTHS} to {forecast.MAX_HORIZON_MONTHS}."
            ),
        ] = 6,
        metric: MetricArg = "units",
        product: Annotated[
            str | None, Field(description="Forecast one product (id or name); omit for the whole operation.")
        ] = None,
        interval_width: Annotated[
            float,
            Field(
                description=f"Uncertainty interval, {forecast.MIN_INTERVAL_WIDTH} to "
                f"{forecast.MAX_INTERVAL_WIDTH} (0.8 = 80%)."
            ),
        ] = forecast.DEFAULT_INTERVAL_WIDTH,
        chart: Annotated[
            bool, Field(description="Also return a PNG chart of history, forecast and interval.")
        ] = False,
    ) -> Annotated[CallToolResult, ForecastResult]:
        """Prophet forecast of monthly sales for an operation (optionally one product), with an interval.

        Needs at least 12 months of history. The first forecast for a question takes seconds to a minute
        (progress is reported); the same question is then answered from a cache.
        """

        async def tick(elapsed: float, deadline: float) -> None:
            await ctx.report_progress(elapsed, deadline, "Fitting the forecast model")

        async def work() -> CallToolResult:
            data = await anyio.to_thread.run_sync(backend.data)
            request = await anyio.to_thread.run_sync(
                lambda: forecast.validate_request(
                    data, operation, product, metric, start_date, horizon_months, interval_width
                )
            )
            full = await forecast.forecast(
                data, request, config.forecast_deadline_s, tick, config.progress_interval_s
            )
            result = forecast.trim_history(full, include_history)
            images: list[ContentBlock] = []
            if chart:
                from mcp_sales.chart import render_forecast_png

                png = await anyio.to_thread.run_sync(render_forecast_png, full)
                images.append(
                    ImageContent(
                        type="image", data=base64.b64encode(png).decode("ascii"), mime_type="image/png"
                    )
                )
            return _ok(result, render_forecast(result), images)

        return await _guard("forecast_sales", work)

    return server
