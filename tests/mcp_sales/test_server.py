"""The MCP server through a real ``mcp.Client`` connected in-memory: tool listing and schemas,
results equal to the analytics functions, bad input as actionable tool errors, broken data files,
and forecasts (deadline, cached retry, progress, chart)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel

from mcp_sales import analytics, forecast
from mcp_sales.data import SalesData, SalesStore
from mcp_sales.models import (
    DatasetSummary,
    ForecastResult,
    OperationsResult,
    ProductsResult,
    SalesOverTimeResult,
    TopProductsResult,
)
from mcp_sales.sample import generate_sample
from mcp_sales.server import ServerConfig, _Backend, _run, build_server

WAIT = 60  # seconds: the bound on any single client interaction (a first fit included)
TOOLS = {
    "top_n_products",
    "forecast_sales",
    "list_operations",
    "list_products",
    "dataset_summary",
    "sales_over_time",
}


@pytest.fixture(scope="module")
def config(sales_csv: Path, cache_root: Path) -> ServerConfig:
    return ServerConfig(data_path=sales_csv, cache_dir=cache_root, progress_interval_s=0.02)


@pytest.fixture(scope="module")
def data(sales_csv: Path, cache_root: Path) -> SalesData:
    return SalesStore(sales_csv, cache_root=cache_root).current()


@pytest.fixture(scope="module")
def no_revenue_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two operations, two products, 24 months, and no revenue column."""
    path = tmp_path_factory.mktemp("no-revenue") / "units_only.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["OPERATION_NAME", "PRODUCT_ID", "PRODUCT_NAME", "UNITS_SOLD", "CALENDAR_YEAR", "CALENDAR_MONTH"]
        )
        for op in ("Dallas", "Austin"):
            for pid, name in (("P1", "Widget"), ("P2", "Gadget")):
                for i in range(24):
                    writer.writerow([op, pid, name, 10 + i, 2023 + i // 12, i % 12 + 1])
    return path


async def call(config: ServerConfig, tool: str, arguments: dict[str, Any], **kwargs: Any) -> CallToolResult:
    with anyio.fail_after(WAIT):
        async with Client(build_server(config)) as client:
            return await client.call_tool(tool, arguments, **kwargs)


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


# --- listing --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_lists_every_tool_with_descriptions_and_schemas(config: ServerConfig) -> None:
    with anyio.fail_after(WAIT):
        async with Client(build_server(config)) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            instructions = client.instructions
    assert set(listed) == TOOLS
    assert instructions is not None and "list_operations" in instructions and "forecast_sales" in instructions
    for tool in listed.values():
        assert tool.description and tool.output_schema, tool.name
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"

    top = listed["top_n_products"]
    assert set(top.input_schema["required"]) == {"n", "operation"}
    assert set(top.input_schema["properties"]) == {"n", "operation", "metric", "start_date", "end_date"}
    fc = listed["forecast_sales"]
    assert fc.input_schema["required"] == ["operation"]
    # The reference arguments keep working, the extras are optional, and the context is not an argument.
    assert set(fc.input_schema["properties"]) == {
        "operation",
        "include_history",
        "start_date",
        "horizon_months",
        "metric",
        "product",
        "interval_width",
        "chart",
    }
    assert set(fc.output_schema["properties"]) >= {"points", "cached", "data_version"}  # type: ignore[index]


# --- results equal the analytics functions --------------------------------------------------------

D = dt.date
CASES: list[tuple[str, dict[str, Any], Callable[[SalesData], BaseModel], type[BaseModel]]] = [
    (
        "top_n_products",
        {
            "n": 5,
            "operation": "dallas",
            "metric": "revenue",
            "start_date": "2023-01-01",
            "end_date": "2023-12-31",
        },
        lambda d: analytics.top_products(d, "dallas", 5, "revenue", D(2023, 1, 1), D(2023, 12, 31)),
        TopProductsResult,
    ),
    (
        "top_n_products",
        {"n": 3, "operation": "Austin"},
        lambda d: analytics.top_products(d, "Austin", 3),
        TopProductsResult,
    ),
    ("list_operations", {}, analytics.list_operations, OperationsResult),
    (
        "list_products",
        {"operation": "denver"},
        lambda d: analytics.list_products(d, "denver"),
        ProductsResult,
    ),
    ("list_products", {}, analytics.list_products, ProductsResult),
    ("dataset_summary", {}, analytics.summarize, DatasetSummary),
    (
        "sales_over_time",
        {"operation": "Dallas", "product": "P-1001", "grain": "quarter", "start_date": "2022-01-01"},
        lambda d: analytics.sales_over_time(d, "Dallas", "P-1001", "quarter", D(2022, 1, 1)),
        SalesOverTimeResult,
    ),
    (
        "sales_over_time",
        {"grain": "year"},
        lambda d: analytics.sales_over_time(d, grain="year"),
        SalesOverTimeResult,
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("tool", "arguments", "expected", "model"), CASES, ids=[c[0] for c in CASES])
async def test_structured_result_equals_the_analytics_function(
    config: ServerConfig,
    data: SalesData,
    tool: str,
    arguments: dict[str, Any],
    expected: Callable[[SalesData], BaseModel],
    model: type[BaseModel],
) -> None:
    result = await call(config, tool, arguments)
    assert not result.is_error, text_of(result)
    assert model.model_validate(result.structured_content) == expected(data)
    assert text_of(result).strip()  # and something readable for the model


@pytest.mark.anyio
async def test_top_products_text_is_a_readable_ranking(config: ServerConfig) -> None:
    result = await call(config, "top_n_products", {"n": 2, "operation": "Dallas"})
    lines = text_of(result).splitlines()
    assert lines[0].startswith("Top 2 of 25 products in Dallas by units")
    assert lines[1].startswith("1. ") and lines[2].startswith("2. ") and len(lines) == 3
    assert result.meta is not None and result.meta["mcp-sales/elapsed_ms"] >= 0  # server-side time


@pytest.mark.anyio
async def test_fractional_units_are_written_as_they_are(tmp_path: Path) -> None:
    """Units sold by weight or volume keep their decimals in the text (1.5 kg is not "2 units")."""
    source = tmp_path / "bulk.csv"
    source.write_text(
        "OPERATION_NAME,PRODUCT_ID,PRODUCT_NAME,UNITS_SOLD,CALENDAR_YEAR,CALENDAR_MONTH\n"
        "Dallas,P1,Flour,1.5,2023,1\nDallas,P2,Rice,0.25,2023,1\nDallas,P3,Salt,-0.125,2023,2\n"
        "Dallas,P4,Oats,1200,2023,2\n"
    )
    bulk = ServerConfig(data_path=source, cache_dir=tmp_path / "cache")
    top = text_of(await call(bulk, "top_n_products", {"n": 4, "operation": "Dallas"}))
    assert "Flour (P1): 1.5 units" in top and "Rice (P2): 0.25 units" in top
    assert "Salt (P3): -0.12 units" in top and "Oats (P4): 1,200 units" in top
    over_time = text_of(await call(bulk, "sales_over_time", {"operation": "Dallas"}))
    assert "2023-01-01: 1.75 units" in over_time and "2023-02-01: 1,199.88 units" in over_time
    products = text_of(await call(bulk, "list_products", {}))
    assert "Flour (P1): 1.5 units" in products


# --- bad input becomes an actionable tool error ---------------------------------------------------

BAD_INPUT = [
    ("top_n_products", {"n": 0, "operation": "Dallas"}, ["1 to 1000"]),
    ("top_n_products", {"n": -3, "operation": "Dallas"}, ["1 to 1000"]),
    ("top_n_products", {"n": 10**9, "operation": "Dallas"}, ["1 to 1000"]),
    ("top_n_products", {"n": 5, "operation": "Dalas"}, ["Dalas", "did you mean 'Dallas'"]),
    (
        "top_n_products",
        {"n": 5, "operation": "Dallas", "start_date": "2023-13-45"},
        ["2023-13-45", "YYYY-MM-DD"],
    ),
    ("top_n_products", {"n": 5, "operation": "Dallas", "start_date": "last spring"}, ["YYYY-MM-DD"]),
    (
        "top_n_products",
        {"n": 5, "operation": "Dallas", "start_date": "2024-05-01", "end_date": "2023-01-01"},
        ["after end_date", "swap"],
    ),
    ("top_n_products", {"n": 5, "operation": "Dallas", "metric": "profit"}, ["units", "revenue"]),
    ("list_products", {"operation": "Nowhere"}, ["Nowhere", "list_operations"]),
    ("sales_over_time", {"product": "Unicorn Milk"}, ["Unicorn Milk"]),
    ("sales_over_time", {"grain": "week"}, ["month", "quarter", "year"]),
    ("forecast_sales", {"operation": "Dallas", "horizon_months": 0}, ["1 to 36"]),
    ("forecast_sales", {"operation": "Dallas", "horizon_months": 37}, ["1 to 36"]),
    ("forecast_sales", {"operation": "Dallas", "interval_width": 0.2}, ["between 0.5 and 0.99"]),
    ("forecast_sales", {"operation": "Dalas"}, ["did you mean 'Dallas'"]),
    (
        "forecast_sales",
        {"operation": "Dallas", "start_date": "2024-06-01"},
        ["only 7 months", "earlier start_date"],
    ),
    (
        "forecast_sales",
        {"operation": "Dallas", "start_date": "2031-01-01"},
        ["start_date 2031-01-01 is after the data ends", "2019-01..2024-12"],
    ),
    # Dates wholly outside the data: the message names the date to change, never a backwards range.
    (
        "top_n_products",
        {"n": 5, "operation": "Dallas", "start_date": "2099-01-01"},
        ["start_date 2099-01-01 is after the data ends", "2019-01..2024-12", "earlier start_date"],
    ),
    (
        "top_n_products",
        {"n": 5, "operation": "Dallas", "end_date": "1999"},
        ["end_date 1999-12-31 is before the data begins", "later end_date"],
    ),
    ("sales_over_time", {"start_date": "2099"}, ["start_date 2099-01-01 is after the data ends"]),
    ("sales_over_time", {"end_date": "2018-12-31"}, ["end_date 2018-12-31 is before the data begins"]),
    # Arguments the input schema rejects: our sentence, not the validator's report.
    (
        "top_n_products",
        {"n": "x", "operation": "Dallas"},
        ["n must be a whole number from 1 to 1000, not 'x'"],
    ),
    (
        "top_n_products",
        {"n": 1.5, "operation": "Dallas"},
        ["n must be a whole number from 1 to 1000, not 1.5"],
    ),
    ("top_n_products", {"operation": "Dallas"}, ["n is missing; pass a whole number from 1 to 1000"]),
    (
        "top_n_products",
        {"n": None, "operation": ["Dallas"], "metric": "profit"},
        [
            "n must be a whole number from 1 to 1000, not null",
            "operation must be an operation name",
            "'profit'",
        ],
    ),
    ("list_products", {"operation": 42}, ["operation must be an operation name (text) from list_operations"]),
    ("sales_over_time", {"grain": "week"}, ["grain must be 'month', 'quarter' or 'year', not 'week'"]),
    ("sales_over_time", {"start_date": 20230101}, ["start_date must be a date as text", "not 20230101"]),
    (
        "forecast_sales",
        {"operation": "Dallas", "horizon_months": 2.5},
        ["horizon_months must be a whole number"],
    ),
    (
        "forecast_sales",
        {"operation": "Dallas", "chart": "maybe"},
        ["chart must be true or false, not 'maybe'"],
    ),
    ("forecast_sales", {"operation": "Dallas", "interval_width": "wide"}, ["between 0.5 and 0.99"]),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("tool", "arguments", "fragments"), BAD_INPUT, ids=[str(c[1]) for c in BAD_INPUT])
async def test_bad_input_is_a_tool_error_that_says_what_to_do(
    config: ServerConfig, tool: str, arguments: dict[str, Any], fragments: list[str]
) -> None:
    result = await call(config, tool, arguments)
    assert result.is_error
    assert result.structured_content is None
    message = text_of(result)
    for fragment in fragments:
        assert fragment in message
    assert_our_style(message)


def assert_our_style(message: str) -> None:
    """One line of our own words: no validator report, URL or SDK prefix."""
    assert "\n" not in message, message
    for foreign in ("pydantic", "http", "validation error", "Error executing tool", "Input should"):
        assert foreign not in message, message


@pytest.mark.anyio
async def test_every_argument_of_every_tool_has_a_sentence(config: ServerConfig) -> None:
    """A value of the wrong type for any argument of any tool is answered in our words, naming it."""
    valid = {"n": 3, "operation": "Dallas"}
    with anyio.fail_after(WAIT):
        async with Client(build_server(config)) as client:
            tools = (await client.list_tools()).tools
            for tool in tools:
                for name in tool.input_schema.get("properties", {}):
                    arguments = {k: v for k, v in valid.items() if k in tool.input_schema["properties"]}
                    result = await client.call_tool(tool.name, {**arguments, name: [1]})
                    assert result.is_error, (tool.name, name)
                    message = text_of(result)
                    assert message.startswith(f"{name} must be "), message
                    assert message.endswith(", not [1]") and "input schema" not in message, message
                    assert_our_style(message)


@pytest.mark.anyio
async def test_unknown_tool_is_named_in_our_words(config: ServerConfig) -> None:
    result = await call(config, "top_products", {"n": 3})
    assert result.is_error
    assert text_of(result).startswith("there is no tool named 'top_products'; the tools are ")
    assert "top_n_products" in text_of(result)
    assert_our_style(text_of(result))


HUGE = "Dallas-" + "x" * 5_000_000  # 5 MB of name


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("top_n_products", {"n": 3, "operation": HUGE}),
        ("top_n_products", {"n": 3, "operation": "Dallas", "start_date": HUGE}),
        ("top_n_products", {"n": 3, "operation": "Dallas", "metric": HUGE}),
        ("top_n_products", {"n": HUGE, "operation": "Dallas"}),
        ("sales_over_time", {"operation": "Dallas", "product": HUGE}),
        ("sales_over_time", {"grain": HUGE}),
        ("forecast_sales", {"operation": HUGE}),
        (HUGE, {}),
    ],
    ids=["operation", "start_date", "metric", "n", "product", "grain", "forecast", "tool"],
)
async def test_echoed_input_is_cut_short(config: ServerConfig, tool: str, arguments: dict[str, Any]) -> None:
    result = await call(config, tool, arguments)
    assert result.is_error
    message = text_of(result)
    assert "'Dallas-xxxx" in message and "x…'" in message, message[:300]
    assert len(message) < 400, message[:300]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "arguments",
    [
        {"operation": "Dallas", "start_date": "2031-01-01"},
        {"operation": "Dalas"},
        {"operation": "Dallas", "horizon_months": "soon"},
    ],
    ids=["after-the-data", "unknown-operation", "bad-argument"],
)
async def test_expected_errors_are_logged_at_info_without_a_traceback(
    config: ServerConfig, caplog: pytest.LogCaptureFixture, arguments: dict[str, Any]
) -> None:
    with caplog.at_level(logging.INFO):
        result = await call(config, "forecast_sales", arguments)
    assert result.is_error
    logged = [r for r in caplog.records if text_of(result) in r.getMessage()]
    assert logged and all(r.levelno == logging.INFO for r in logged)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("top_n_products", {"n": 3, "operation": "Dallas", "metric": "revenue"}),
        ("forecast_sales", {"operation": "Dallas", "metric": "revenue"}),
    ],
)
async def test_revenue_without_a_revenue_column(
    no_revenue_csv: Path, tmp_path: Path, tool: str, arguments: dict[str, Any]
) -> None:
    config = ServerConfig(data_path=no_revenue_csv, cache_dir=tmp_path)
    result = await call(config, tool, arguments)
    assert result.is_error
    assert "no revenue column" in text_of(result) and "metric 'units'" in text_of(result)
    units = await call(config, "top_n_products", {"n": 1, "operation": "Dallas"})
    assert not units.is_error and units.structured_content is not None
    assert units.structured_content["products"][0]["revenue"] is None


@pytest.mark.anyio
async def test_unexpected_exceptions_become_a_tool_error_pointing_at_the_log(
    config: ServerConfig, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: SalesData) -> TopProductsResult:
        raise ZeroDivisionError("a bug")

    with caplog.at_level(logging.ERROR, logger="mcp_sales.server"), anyio.fail_after(WAIT):
        result = await _run("top_n_products", _Backend(config), broken, str)
    assert result.is_error
    assert "server log" in text_of(result) and "a bug" not in text_of(result)
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


# --- broken data files ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_missing_data_file_lists_tools_and_says_how_to_fix_it(tmp_path: Path) -> None:
    missing = tmp_path / "later" / "sales.csv"
    config = ServerConfig(data_path=missing, cache_dir=tmp_path / "cache")
    with anyio.fail_after(WAIT):
        async with Client(build_server(config)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            result = await client.call_tool("top_n_products", {"n": 3, "operation": "Dallas"})
            assert result.is_error
            assert str(missing) in text_of(result) and "--data" in text_of(result)

            # Once the file is there, the same server answers: no restart needed.
            generate_sample(missing)
            result = await client.call_tool("top_n_products", {"n": 3, "operation": "Dallas"})
            assert not result.is_error, text_of(result)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"\x00\x01\x02\x03binary\x00garbage" * 100, ["sales.csv", "CSV"]),
        (b"city,item,qty\nDallas,Widget,3\n", ["not found", "--column"]),
    ],
    ids=["binary", "wrong-columns"],
)
async def test_corrupt_data_file_is_reported_as_a_tool_error(
    tmp_path: Path, content: bytes, fragments: list[str]
) -> None:
    path = tmp_path / "sales.csv"
    path.write_bytes(content)
    config = ServerConfig(data_path=path, cache_dir=tmp_path / "cache")
    with anyio.fail_after(WAIT):
        async with Client(build_server(config)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            for tool, args in (("dataset_summary", {}), ("forecast_sales", {"operation": "Dallas"})):
                result = await client.call_tool(tool, args)
                assert result.is_error, tool
                for fragment in fragments:
                    assert fragment in text_of(result), (tool, text_of(result))


# --- forecasts ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.slow
async def test_forecast_past_the_deadline_then_a_cached_retry(
    sales_csv: Path, cache_root: Path, data: SalesData
) -> None:
    impatient = ServerConfig(data_path=sales_csv, cache_dir=cache_root, forecast_deadline_s=0.0)
    arguments = {"operation": "Denver", "horizon_months": 4, "include_history": False}
    first = await call(impatient, "forecast_sales", arguments)
    assert first.is_error
    assert "ask again in a minute" in text_of(first)

    # The fit went on without the caller; wait for it (bounded) the way a retry a minute later would.
    request = forecast.validate_request(data, "Denver", horizon_months=4)
    running = forecast.pending(data, request)
    if running is not None:
        await anyio.to_thread.run_sync(lambda: running.result(timeout=WAIT))
    retry = await call(impatient, "forecast_sales", arguments)
    assert not retry.is_error, text_of(retry)
    result = ForecastResult.model_validate(retry.structured_content)
    assert result.cached is True
    assert [p.period for p in result.points] == [D(2025, m, 1) for m in (1, 2, 3, 4)]
    assert all(p.actual is None for p in result.points)  # include_history=False
    stored = forecast.load_cached(data, request)
    assert stored is not None and forecast.trim_history(stored, False) == result


@pytest.mark.anyio
@pytest.mark.slow
async def test_forecast_reports_progress_and_returns_the_fitted_result(
    config: ServerConfig, data: SalesData
) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    arguments = {"operation": "Phoenix", "product": "cold brew", "horizon_months": 3, "interval_width": 0.9}
    result = await call(config, "forecast_sales", arguments, progress_callback=on_progress)
    assert not result.is_error, text_of(result)
    fitted = ForecastResult.model_validate(result.structured_content)
    assert (fitted.operation, fitted.product, fitted.interval_width) == ("Phoenix", "Cold Brew Coffee", 0.9)
    assert fitted.cached is False and fitted.history_months == 72 and len(fitted.points) == 75
    request = forecast.validate_request(data, "Phoenix", "cold brew", horizon_months=3, interval_width=0.9)
    stored = forecast.load_cached(data, request)
    assert stored is not None and stored.model_copy(update={"cached": False}) == fitted
    # A fit (a Stan subprocess at least) takes far longer than the 20 ms progress interval used here.
    assert progress and all(total == config.forecast_deadline_s for _, total, _ in progress)
    assert "Cold Brew Coffee in Phoenix" in text_of(result) and "2025-03" in text_of(result)


@pytest.mark.anyio
@pytest.mark.slow
async def test_forecast_chart_is_a_png_image(config: ServerConfig) -> None:
    result = await call(
        config, "forecast_sales", {"operation": "Phoenix", "horizon_months": 3, "chart": True}
    )
    assert not result.is_error, text_of(result)
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    png = base64.b64decode(images[0].data)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    without = await call(config, "forecast_sales", {"operation": "Phoenix", "horizon_months": 3})
    assert not any(isinstance(c, ImageContent) for c in without.content)
