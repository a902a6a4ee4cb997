"""A baseline that behaves like the reference server (benchmark only, never shipped).

It reproduces the reference server's costs on purpose: pandas and Prophet imported eagerly at start,
the CSV re-read with pandas on every call, and a fresh Prophet fit on every forecast (no cache). The
two tools keep the reference names and arguments.

Run as a script: ``python bench/_reference_server.py DATA.csv``.
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
from mcp.server import MCPServer
from prophet import Prophet

DATA = sys.argv[1] if len(sys.argv) > 1 else "data/sample_sales_data.csv"

server: MCPServer[Any] = MCPServer("reference-sales")


def _load() -> pd.DataFrame:
    frame = pd.read_csv(DATA)
    frame["ds"] = pd.to_datetime({"year": frame["CALENDAR_YEAR"], "month": frame["CALENDAR_MONTH"], "day": 1})
    return frame


@server.tool()
def top_n_products(n: int, operation: str) -> list[dict[str, Any]]:
    """Top n products of an operation by units sold."""
    frame = _load()
    rows = frame[frame["OPERATION_NAME"] == operation]
    top = rows.groupby(["PRODUCT_ID", "PRODUCT_NAME"])["UNITS_SOLD"].sum().nlargest(n).reset_index()
    return list(top.to_dict(orient="records"))


@server.tool()
def forecast_sales(
    operation: str, include_history: bool = True, start_date: str | None = None, horizon_months: int = 6
) -> list[dict[str, Any]]:
    """Prophet forecast of an operation's monthly units."""
    frame = _load()
    rows = frame[frame["OPERATION_NAME"] == operation]
    if start_date:
        rows = rows[rows["ds"] >= pd.Timestamp(start_date)]
    series = rows.groupby("ds")["UNITS_SOLD"].sum().reset_index().rename(columns={"UNITS_SOLD": "y"})
    model = Prophet(yearly_seasonality=True, weekly_seasonality=False, daily_seasonality=False)
    model.fit(series)
    future = model.make_future_dataframe(periods=horizon_months, freq="MS", include_history=include_history)
    out = model.predict(future)[["ds", "yhat", "yhat_lower", "yhat_upper"]]
    out["ds"] = out["ds"].dt.strftime("%Y-%m-%d")
    return list(out.to_dict(orient="records"))


if __name__ == "__main__":
    server.run()
