"""Prophet forecasts of monthly sales: request validation, series preparation, fit, on-disk cache.

Every SSH session starts a new server process, so fitted results are cached on disk (never in memory
only), keyed by everything that can change the numbers. A fit runs in a daemon thread shared by every
caller asking the same question; callers wait for it up to a deadline and get a "retry in a minute"
error past it, while the thread finishes and fills the cache so the retry is instant.

Prophet, pandas and numpy are imported inside :func:`fit_prophet` only: importing this module is cheap.
"""

from __future__ import annotations

import calendar
import concurrent.futures
import datetime as dt
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread
from pydantic import ValidationError

from mcp_sales.errors import ForecastError, InvalidInput, SalesError, echo
from mcp_sales.models import ForecastPoint, ForecastResult, Metric
from mcp_sales.quiet import quiet_prophet_logger, silence_stan_loggers, stdout_to_stderr

if TYPE_CHECKING:
    from mcp_sales.data import SalesData

log = logging.getLogger(__name__)

MIN_HISTORY_MONTHS: Final = 12
MIN_HORIZON_MONTHS: Final = 1
MAX_HORIZON_MONTHS: Final = 36
MIN_INTERVAL_WIDTH: Final = 0.5
MAX_INTERVAL_WIDTH: Final = 0.99
DEFAULT_INTERVAL_WIDTH: Final = 0.8
DEFAULT_DEADLINE_S: Final = 45.0

# Monthly data: yearly seasonality only (order 6 is the most 12 points a year can identify); no
# weekly/daily terms, which would be meaningless at monthly resolution.
MODEL_PARAMS: Final[dict[str, Any]] = {
    "yearly_seasonality": 6,
    "weekly_seasonality": False,
    "daily_seasonality": False,
    "seasonality_mode": "additive",
    "uncertainty_samples": 500,
}
# Prophet draws its intervals from numpy's global RNG; a fixed seed makes a refit reproduce the cache.
SEED: Final = 7
# Bump when the stored JSON or the meaning of the numbers changes: old entries are then never read.
CACHE_FORMAT: Final = 1

# One Prophet fit at a time per process: fits are CPU-bound (two cores are common on small hosts) and
# share numpy's global RNG, which is seeded per fit.
_fit_lock = threading.Lock()
_inflight: dict[str, concurrent.futures.Future[ForecastResult]] = {}
_inflight_lock = threading.Lock()


@dataclass(frozen=True)
class ForecastRequest:
    """A validated forecast question, with names resolved to how they are stored in the data."""

    operation: str
    product_id: str | None
    product_name: str | None
    metric: Metric
    start: dt.date | None
    horizon_months: int
    interval_width: float


def validate_request(
    data: SalesData,
    operation: str,
    product: str | None = None,
    metric: Metric = "units",
    start_date: str | None = None,
    horizon_months: int = 6,
    interval_width: float = DEFAULT_INTERVAL_WIDTH,
) -> ForecastRequest:
    """Check bounds and resolve names before any cache lookup or fit.

    Raises:
        ForecastError: horizon or interval width out of bounds.
        InvalidInput: unknown operation/product, malformed start_date, revenue without a revenue column.
    """
    from mcp_sales import analytics

    if not MIN_HORIZON_MONTHS <= horizon_months <= MAX_HORIZON_MONTHS:
        raise ForecastError(
            f"horizon_months={echo(horizon_months)} is out of range; ask for "
            f"{MIN_HORIZON_MONTHS} to {MAX_HORIZON_MONTHS} months ahead"
        )
    if not MIN_INTERVAL_WIDTH <= interval_width <= MAX_INTERVAL_WIDTH:
        raise ForecastError(
            f"interval_width={echo(interval_width)} is out of range; use a value between "
            f"{MIN_INTERVAL_WIDTH} and {MAX_INTERVAL_WIDTH} (0.8 means an 80% interval)"
        )
    if metric == "revenue" and not data.has_revenue:
        raise InvalidInput(
            "this data has no revenue column, so metric 'revenue' is not available; use metric 'units' "
            "(or map a revenue column with --column revenue=COL)"
        )
    start = analytics.parse_date_arg(start_date, "start_date")
    analytics.check_within_data(data, start, None)  # before a fit thread starts, which could only fail
    resolved_operation = analytics.resolve_operation(data, operation)
    product_id = product_name = None
    if product is not None and product.strip():
        product_id, product_name = analytics.resolve_product(data, product, resolved_operation)
    return ForecastRequest(
        operation=resolved_operation,
        product_id=product_id,
        product_name=product_name,
        metric=metric,
        start=start,
        horizon_months=horizon_months,
        interval_width=round(float(interval_width), 4),
    )


# --- series preparation (pure) ------------------------------------------------------------------


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _is_month_end(day: dt.date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]


def prepare_series(
    points: Sequence[tuple[dt.date, float]],
    *,
    last_observed: dt.date | None = None,
    label: str = "this selection",
    start: dt.date | None = None,
) -> list[tuple[dt.date, float]]:
    """Turn monthly totals into a gap-free series Prophet can fit.

    Months without sales inside the range count as zero (a missing row means nothing was sold). When
    the data ends mid-month (daily data; ``last_observed`` is the last day with data), that partial
    month is dropped: its low total would read as a collapse and drag the forecast down.

    Raises:
        ForecastError: fewer than ``MIN_HISTORY_MONTHS`` months remain.
    """
    totals: dict[dt.date, float] = {}
    for period, value in points:
        month = _month_start(period)
        totals[month] = totals.get(month, 0.0) + float(value)
    series: list[tuple[dt.date, float]] = []
    if totals:
        month, last = min(totals), max(totals)
        while month <= last:
            series.append((month, totals.get(month, 0.0)))
            month = _next_month(month)
    if (
        series
        and last_observed is not None
        and not _is_month_end(last_observed)
        and series[-1][0] == _month_start(last_observed)
    ):
        series.pop()
    if len(series) < MIN_HISTORY_MONTHS:
        since = f" since {start.isoformat()}" if start else ""
        fix = "use an earlier start_date or omit it" if start else "choose a broader selection (no product)"
        raise ForecastError(
            f"only {len(series)} months of history for {label}{since}; a forecast needs at least "
            f"{MIN_HISTORY_MONTHS}, so {fix}"
        )
    return series


# --- the fit --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def prophet_version() -> str:
    """Prophet's version without importing it (the cache key needs it on the fast path)."""
    spec = importlib.util.find_spec("prophet")
    if spec is None or not spec.submodule_search_locations:
        return "missing"
    version_file = Path(next(iter(spec.submodule_search_locations))) / "__version__.py"
    try:
        match = re.search(r"""__version__\s*=\s*["']([^"']+)""", version_file.read_text(encoding="utf-8"))
    except OSError:
        return "unknown"
    return match.group(1) if match else "unknown"


def fit_prophet(
    series: Sequence[tuple[dt.date, float]], horizon_months: int, interval_width: float
) -> list[ForecastPoint]:
    """Fit Prophet on a monthly series and predict ``horizon_months`` ahead, stdout diverted throughout.

    Values are clipped at zero (sales are never negative) and rounded to cents.

    Raises:
        ForecastError: Prophet is not importable, or its optimizer failed on this series.
    """
    with stdout_to_stderr():
        silence_stan_loggers()
        try:
            import numpy as np
            import pandas as pd
            from prophet import Prophet
        except ImportError as exc:  # an environment problem the operator can fix
            raise ForecastError(
                f"Prophet cannot be imported on the server ({exc}); reinstall the server environment"
            ) from exc
        quiet_prophet_logger()
        # Fits are serialized, so the process-wide warning filter change is confined to this fit: the
        # pandas deprecation notices Prophet triggers are not ours to fix and only clutter the log.
        with _fit_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            np.random.seed(SEED)
            frame = pd.DataFrame({"ds": pd.to_datetime([d for d, _ in series]), "y": [v for _, v in series]})
            model = Prophet(interval_width=interval_width, **MODEL_PARAMS)
            try:
                model.fit(frame)
            except RuntimeError as exc:  # Stan's optimizer gave up on this series
                log.warning("Prophet fit failed: %s", exc)
                raise ForecastError(
                    "the forecast model could not be fitted to this series; try another start_date, "
                    "the whole operation instead of one product, or the other metric"
                ) from exc
            future = model.make_future_dataframe(periods=horizon_months, freq="MS", include_history=True)
            predicted = model.predict(future)

    actual = {d: v for d, v in series}

    def clip(value: Any) -> float:
        number = float(value)
        if not math.isfinite(number):  # values near the largest double overflow inside the model
            raise ForecastError(
                "the forecast model gave no finite estimate for this series (its values are too large); "
                "forecast the other metric, or fix the data's huge values"
            )
        return round(max(0.0, number), 2)

    points: list[ForecastPoint] = []
    for ds, yhat, lower, upper in zip(
        predicted["ds"], predicted["yhat"], predicted["yhat_lower"], predicted["yhat_upper"], strict=True
    ):
        period = ds.date()
        observed = actual.get(period)
        points.append(
            ForecastPoint(
                period=period,
                actual=None if observed is None else round(observed, 2),
                forecast=clip(yhat),
                lower=clip(lower),
                upper=clip(upper),
            )
        )
    return points


def compute(data: SalesData, request: ForecastRequest) -> ForecastResult:
    """Query the series, fit, store the result in the cache; blocking (seconds).

    Raises:
        ForecastError: too little history, or Prophet unavailable.
    """
    from mcp_sales import analytics

    raw = analytics.monthly_series(data, request.operation, request.product_id, request.metric, request.start)
    label = f"{request.product_name} in {request.operation}" if request.product_name else request.operation
    last_observed = data.last_period if data.grain == "day" else None
    series = prepare_series(raw, last_observed=last_observed, label=label, start=request.start)
    points = fit_prophet(series, request.horizon_months, request.interval_width)
    result = ForecastResult(
        operation=request.operation,
        product=request.product_name,
        metric=request.metric,
        horizon_months=request.horizon_months,
        start_date=request.start,
        history_months=len(series),
        interval_width=request.interval_width,
        points=points,
        cached=False,
        data_version=data.version,
    )
    store_cached(data, request, result)
    return result


# --- on-disk cache ------------------------------------------------------------------------------


def cache_key(data: SalesData, request: ForecastRequest) -> str:
    """Hash of everything that changes the numbers: data, question, model, library version."""
    payload = {
        "format": CACHE_FORMAT,
        "data_version": data.version,
        "operation": request.operation,
        "product": request.product_id,
        "metric": request.metric,
        "start": request.start.isoformat() if request.start else None,
        "horizon": request.horizon_months,
        "interval_width": request.interval_width,
        "model": MODEL_PARAMS,
        "seed": SEED,
        "min_history": MIN_HISTORY_MONTHS,
        "prophet": prophet_version(),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:40]


def cache_path(data: SalesData, request: ForecastRequest) -> Path:
    return data.cache_dir / "forecasts" / f"{cache_key(data, request)}.json"


def load_cached(data: SalesData, request: ForecastRequest) -> ForecastResult | None:
    """The stored result for this request (``cached=True``), or None; an unreadable entry is a miss."""
    path = cache_path(data, request)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("forecast cache entry %s unreadable (%s); refitting", path, exc)
        return None
    try:
        result = ForecastResult.model_validate_json(blob)
    except ValidationError:
        log.warning("forecast cache entry %s is corrupt; refitting", path)
        return None
    return result.model_copy(update={"cached": True})


def store_cached(data: SalesData, request: ForecastRequest, result: ForecastResult) -> None:
    """Write atomically (temp file + rename in the same directory): readers and racing writers
    (Claude Desktop starts each server twice) see a complete entry or none. Failure only logs."""
    path = cache_path(data, request)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(result.model_copy(update={"cached": False}).model_dump_json().encode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("could not store forecast in %s (%s); it will be refitted next time", path, exc)


def trim_history(result: ForecastResult, include_history: bool) -> ForecastResult:
    """Drop past months unless asked for (the cache always holds them, for charts and later calls)."""
    if include_history:
        return result
    return result.model_copy(update={"points": [p for p in result.points if p.actual is None]})


# --- running fits under a deadline ----------------------------------------------------------------


def submit(data: SalesData, request: ForecastRequest) -> concurrent.futures.Future[ForecastResult]:
    """Start the fit in a daemon thread, or join the one already running for the same question.

    Daemon: a fit must never keep a server that was told to exit alive.
    """
    key = cache_key(data, request)
    with _inflight_lock:
        running = _inflight.get(key)
        if running is not None:
            return running
        future: concurrent.futures.Future[ForecastResult] = concurrent.futures.Future()
        _inflight[key] = future

    def work() -> None:
        try:
            future.set_result(compute(data, request))
        except BaseException as exc:
            if isinstance(exc, SalesError):
                # Expected (too little history, no sales): the caller reports it; no traceback.
                log.info("forecast for %s not made: %s", request, exc)
            else:
                # The caller may have given up already; make sure the traceback reaches the log.
                log.exception("forecast for %s failed", request)
            future.set_exception(exc)
        finally:
            with _inflight_lock:
                _inflight.pop(key, None)

    threading.Thread(target=work, name=f"forecast-{key[:8]}", daemon=True).start()
    return future


def _wait_briefly(future: concurrent.futures.Future[ForecastResult], seconds: float) -> None:
    concurrent.futures.wait([future], timeout=seconds)


async def wait_for_result(
    future: concurrent.futures.Future[ForecastResult],
    deadline_s: float,
    on_tick: Callable[[float, float], Awaitable[None]] | None = None,
    tick_s: float = 1.0,
) -> ForecastResult:
    """Wait for a fit at most ``deadline_s`` seconds, calling ``on_tick(elapsed, deadline)`` about once a
    second meanwhile (progress notifications keep the client from timing out).

    Raises:
        ForecastError: the deadline passed; the fit goes on and fills the cache.
        Exception: whatever the fit raised.
    """
    started = anyio.current_time()
    while not future.done():
        remaining = deadline_s - (anyio.current_time() - started)
        if remaining <= 0:
            raise ForecastError(
                f"the forecast is still being computed after {deadline_s:g} s (a first fit on a busy host "
                "can take that long); ask again in a minute, the result will then come from the cache"
            )
        # abandon_on_cancel: a cancelled request must not wait for the tick to end.
        await anyio.to_thread.run_sync(_wait_briefly, future, min(tick_s, remaining), abandon_on_cancel=True)
        if on_tick is not None and not future.done():
            await on_tick(anyio.current_time() - started, deadline_s)
    return future.result()


def pending(data: SalesData, request: ForecastRequest) -> concurrent.futures.Future[ForecastResult] | None:
    """The fit running in this process for this question, if any."""
    with _inflight_lock:
        return _inflight.get(cache_key(data, request))


async def forecast(
    data: SalesData,
    request: ForecastRequest,
    deadline_s: float = DEFAULT_DEADLINE_S,
    on_tick: Callable[[float, float], Awaitable[None]] | None = None,
    tick_s: float = 1.0,
) -> ForecastResult:
    """The cached result, else a fit (shared with concurrent callers) awaited up to ``deadline_s``."""
    cached = load_cached(data, request)
    if cached is not None:
        return cached
    return await wait_for_result(submit(data, request), deadline_s, on_tick, tick_s)
