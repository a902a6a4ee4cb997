"""forecast.py and quiet.py: series preparation, bounds, the on-disk cache across processes, deadline
handling, and the fd-level stdout diversion (checked in real subprocesses with captured pipes)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from mcp_sales import forecast
from mcp_sales.data import SalesData, SalesStore
from mcp_sales.errors import ForecastError, InvalidInput
from mcp_sales.models import ForecastPoint, ForecastResult

SUBPROCESS_TIMEOUT = 120


@pytest.fixture(scope="module")
def data(sales_csv: Path, cache_root: Path) -> SalesData:
    return SalesStore(sales_csv, cache_root=cache_root).current()


def months(first: dt.date, count: int, value: float = 10.0) -> list[tuple[dt.date, float]]:
    out = []
    for i in range(count):
        index = first.year * 12 + first.month - 1 + i
        out.append((dt.date(index // 12, index % 12 + 1, 1), value + i))
    return out


def small_result(data_version: str = "v") -> ForecastResult:
    return ForecastResult(
        operation="Dallas",
        product=None,
        metric="units",
        horizon_months=1,
        start_date=None,
        history_months=12,
        interval_width=0.8,
        points=[
            ForecastPoint(period=dt.date(2024, 12, 1), actual=5.0, forecast=5.1, lower=4.0, upper=6.0),
            ForecastPoint(period=dt.date(2025, 1, 1), actual=None, forecast=5.5, lower=4.5, upper=6.5),
        ],
        cached=False,
        data_version=data_version,
    )


# --- series preparation ---------------------------------------------------------------------------


def test_prepare_series_fills_missing_months_with_zero_and_sorts() -> None:
    points = [(dt.date(2023, 3, 1), 3.0), (dt.date(2022, 1, 1), 1.0), (dt.date(2022, 12, 1), 2.0)]
    series = forecast.prepare_series(points)
    assert [d for d, _ in series] == [d for d, _ in months(dt.date(2022, 1, 1), 15)]
    assert series[0] == (dt.date(2022, 1, 1), 1.0)
    assert series[11] == (dt.date(2022, 12, 1), 2.0)
    assert series[14] == (dt.date(2023, 3, 1), 3.0)
    assert sum(v for _, v in series) == 6.0  # the gaps are zeros


def test_prepare_series_drops_a_partial_last_month_of_daily_data() -> None:
    points = months(dt.date(2023, 1, 1), 18)  # through 2024-06
    kept = forecast.prepare_series(points, last_observed=dt.date(2024, 6, 15))
    assert kept[-1][0] == dt.date(2024, 5, 1)
    complete = forecast.prepare_series(points, last_observed=dt.date(2024, 6, 30))
    assert complete[-1][0] == dt.date(2024, 6, 1)


def test_prepare_series_refuses_short_history_naming_the_count() -> None:
    with pytest.raises(
        ForecastError, match=r"only 11 months of history for Dallas since 2024-02-01.*at least 12"
    ):
        forecast.prepare_series(months(dt.date(2024, 2, 1), 11), label="Dallas", start=dt.date(2024, 2, 1))
    assert len(forecast.prepare_series(months(dt.date(2024, 1, 1), 12))) == 12


# --- bounds and name resolution -------------------------------------------------------------------


@pytest.mark.parametrize("horizon", [0, 37, -1])
def test_horizon_out_of_bounds(data: SalesData, horizon: int) -> None:
    with pytest.raises(ForecastError, match="1 to 36 months"):
        forecast.validate_request(data, "Dallas", horizon_months=horizon)


@pytest.mark.parametrize("width", [0.2, 0.49, 0.995, 1.0])
def test_interval_width_out_of_bounds(data: SalesData, width: float) -> None:
    with pytest.raises(ForecastError, match=r"between 0\.5 and 0\.99"):
        forecast.validate_request(data, "Dallas", interval_width=width)


def test_request_resolves_names(data: SalesData) -> None:
    request = forecast.validate_request(
        data, "dallas", product="sourdough", start_date="2020-01", horizon_months=36, interval_width=0.5
    )
    assert request.operation == "Dallas"
    assert (request.product_id, request.product_name) == ("P-1013", "Sourdough Loaf")
    assert request.start == dt.date(2020, 1, 1)
    with pytest.raises(InvalidInput, match="Dallas"):
        forecast.validate_request(data, "Dalas")


def test_too_little_history_is_reported_before_any_fit(data: SalesData) -> None:
    request = forecast.validate_request(data, "Dallas", start_date="2024-03-01")
    with pytest.raises(ForecastError, match="only 10 months of history for Dallas since 2024-03-01"):
        forecast.compute(data, request)


# --- cache ----------------------------------------------------------------------------------------


def test_cache_key_covers_every_parameter(data: SalesData) -> None:
    base = forecast.validate_request(data, "Dallas")
    variants = [
        forecast.validate_request(data, "Austin"),
        forecast.validate_request(data, "Dallas", product="P-1001"),
        forecast.validate_request(data, "Dallas", metric="revenue"),
        forecast.validate_request(data, "Dallas", start_date="2020-01-01"),
        forecast.validate_request(data, "Dallas", horizon_months=7),
        forecast.validate_request(data, "Dallas", interval_width=0.9),
    ]
    keys = {forecast.cache_key(data, r) for r in [base, *variants]}
    assert len(keys) == len(variants) + 1
    assert forecast.cache_key(data, forecast.validate_request(data, "DALLAS")) == forecast.cache_key(
        data, base
    )


def test_corrupt_cache_entry_is_a_miss_and_store_replaces_it(data: SalesData) -> None:
    request = forecast.validate_request(data, "Tampa", horizon_months=1)
    path = forecast.cache_path(data, request)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"operation": "Tam')  # a torn write from some other tool
    assert forecast.load_cached(data, request) is None

    forecast.store_cached(data, request, small_result(data.version))
    loaded = forecast.load_cached(data, request)
    assert loaded is not None and loaded.cached is True
    assert loaded.model_copy(update={"cached": False}) == small_result(data.version)
    assert not list(path.parent.glob(".*.tmp")), "temporary files must not be left behind"


FORECAST_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import anyio

    from mcp_sales import forecast
    from mcp_sales.data import SalesStore

    data = SalesStore(Path(sys.argv[1]), cache_root=Path(sys.argv[2])).current()
    request = forecast.validate_request(data, sys.argv[3], horizon_months=int(sys.argv[4]))
    result = anyio.run(forecast.forecast, data, request)
    sys.stdout.write(result.model_dump_json())
    """
)


def forecast_in_new_process(
    sales_csv: Path, cache_root: Path, operation: str, horizon: int
) -> ForecastResult:
    proc = subprocess.run(
        [sys.executable, "-c", FORECAST_SCRIPT, str(sales_csv), str(cache_root), operation, str(horizon)],
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # stdout must hold exactly the JSON written above: Prophet and Stan printed nothing there.
    return ForecastResult.model_validate_json(proc.stdout)


@pytest.mark.slow
def test_fit_then_cache_hit_in_a_new_process(sales_csv: Path, tmp_path: Path) -> None:
    first = forecast_in_new_process(sales_csv, tmp_path, "Houston", 6)
    second = forecast_in_new_process(sales_csv, tmp_path, "houston", 6)

    assert first.cached is False
    assert second.cached is True
    assert second.points == first.points
    assert second.model_copy(update={"cached": False}) == first

    future = [p for p in first.points if p.actual is None]
    history = [p for p in first.points if p.actual is not None]
    assert len(future) == 6 and first.history_months == len(history) == 72
    assert future[0].period == dt.date(2025, 1, 1)
    # Sanity: the first forecast months sit in the range the last year of history spans (with slack),
    # and every interval contains its estimate.
    recent = [p.actual for p in history[-12:] if p.actual is not None]
    for point in future[:3]:
        assert point.forecast is not None and point.lower is not None and point.upper is not None
        assert 0.5 * min(recent) <= point.forecast <= 1.5 * max(recent)
        assert point.lower <= point.forecast <= point.upper


# --- waiting under a deadline ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_wait_reports_progress_until_the_fit_is_done() -> None:
    future: concurrent.futures.Future[ForecastResult] = concurrent.futures.Future()
    ticks: list[tuple[float, float]] = []

    async def on_tick(elapsed: float, deadline: float) -> None:
        ticks.append((elapsed, deadline))
        if len(ticks) == 3:
            future.set_result(small_result())

    with anyio.fail_after(30):
        result = await forecast.wait_for_result(future, deadline_s=20, on_tick=on_tick, tick_s=0.01)
    assert result == small_result()
    assert len(ticks) == 3
    assert [d for _, d in ticks] == [20, 20, 20]
    assert ticks[0][0] <= ticks[1][0] <= ticks[2][0]  # progress never goes backwards


@pytest.mark.anyio
async def test_wait_gives_up_at_the_deadline_with_a_retry_hint() -> None:
    future: concurrent.futures.Future[ForecastResult] = concurrent.futures.Future()
    with anyio.fail_after(30), pytest.raises(ForecastError, match="ask again in a minute"):
        await forecast.wait_for_result(future, deadline_s=0.05, tick_s=0.01)
    assert not future.done()  # the fit is not cancelled: it goes on to fill the cache


@pytest.mark.anyio
async def test_wait_passes_the_fit_error_through() -> None:
    future: concurrent.futures.Future[ForecastResult] = concurrent.futures.Future()
    future.set_exception(ForecastError("only 3 months of history"))
    with anyio.fail_after(30), pytest.raises(ForecastError, match="only 3 months"):
        await forecast.wait_for_result(future, deadline_s=5)


# --- stdout protection ----------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


def test_stdout_to_stderr_diverts_c_level_writes_and_child_processes() -> None:
    proc = run_python(
        """
        import os, subprocess, sys
        from mcp_sales.quiet import stdout_to_stderr

        os.write(1, b"before|")
        with stdout_to_stderr():
            os.write(1, b"inside-fd|")
            print("inside-print", flush=True)
            subprocess.run([sys.executable, "-c", "import os; os.write(1, b'inside-child|')"], check=True)
        os.write(1, b"after")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"before|after"
    for marker in (b"inside-fd|", b"inside-print", b"inside-child|"):
        assert marker in proc.stderr


def test_stdout_to_stderr_restores_only_when_the_last_thread_leaves() -> None:
    proc = run_python(
        """
        import os, threading
        from mcp_sales.quiet import stdout_to_stderr

        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

        def first():
            with stdout_to_stderr():
                a_in.set()
                assert b_in.wait(10)
            a_out.set()  # leaves while the other thread is still inside

        def second():
            assert a_in.wait(10)
            with stdout_to_stderr():
                b_in.set()
                assert a_out.wait(10)
                os.write(1, b"still-diverted|")

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        os.write(1, b"restored")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"restored"
    assert b"still-diverted|" in proc.stderr


def test_claim_stdout_leaves_only_the_wire_on_stdout() -> None:
    proc = run_python(
        """
        import os, subprocess, sys
        from mcp_sales.quiet import claim_stdout

        wire = claim_stdout()
        os.write(1, b"stray-fd|")
        print("stray-print", flush=True)
        # A child (like Stan's optimizer) inherits fd 1, but not the private duplicate (close-on-exec).
        child = (
            f"import os\\ntry:\\n os.write({wire.fileno()}, b'leak')\\n"
            "except OSError:\\n os.write(1, b'child|')"
        )
        subprocess.run([sys.executable, "-c", child], check=True, close_fds=False)
        wire.write(b'{"jsonrpc": "2.0"}\\n')
        wire.flush()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b'{"jsonrpc": "2.0"}\n'
    for marker in (b"stray-fd|", b"stray-print", b"child|"):
        assert marker in proc.stderr
