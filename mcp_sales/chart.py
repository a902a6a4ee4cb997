"""PNG chart of a forecast: history, forecast line and its interval.

matplotlib is imported only when a chart is asked for (it costs hundreds of milliseconds), and only
its object-oriented API with the Agg canvas is used: no pyplot global state, no GUI backend, safe in a
worker thread.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from mcp_sales.models import ForecastResult
from mcp_sales.quiet import stdout_to_stderr


def _days(periods: Sequence[dt.date]) -> Any:
    import numpy as np

    return np.array(periods, dtype="datetime64[D]")


def _values(values: Sequence[float | None]) -> Any:
    import numpy as np

    return np.array([np.nan if v is None else v for v in values], dtype=float)


def render_forecast_png(result: ForecastResult, *, width_px: int = 900, height_px: int = 450) -> bytes:
    """Render ``result`` (history points included when present) as PNG bytes."""
    # First use may build matplotlib's font cache and say so; keep any of it off the protocol stream.
    with stdout_to_stderr():
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        dpi = 100
        figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()

        history = [p for p in result.points if p.actual is not None]
        future = [p for p in result.points if p.actual is None]
        if history:
            axes.plot(
                _days([p.period for p in history]),
                _values([p.actual for p in history]),
                color="#1f4e79",
                marker="o",
                markersize=3,
                label="actual",
            )
        # Join the forecast to the last observed month so the line reads as a continuation.
        line = ([history[-1]] if history else []) + future
        axes.plot(
            _days([p.period for p in line]),
            _values([p.actual if p.actual is not None else p.forecast for p in line]),
            color="#d9822b",
            linestyle="--",
            label="forecast",
        )
        band = [p for p in future if p.lower is not None and p.upper is not None]
        if band:
            percent = round(result.interval_width * 100)
            axes.fill_between(
                _days([p.period for p in band]),
                _values([p.lower for p in band]),
                _values([p.upper for p in band]),
                color="#d9822b",
                alpha=0.2,
                label=f"{percent}% interval",
            )
        subject = f"{result.product} in {result.operation}" if result.product else result.operation
        axes.set_title(f"{subject}: monthly {result.metric}, {result.horizon_months}-month forecast")
        axes.set_ylabel(result.metric)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left")
        figure.autofmt_xdate()
        figure.tight_layout()

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()
