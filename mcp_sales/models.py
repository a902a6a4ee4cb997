"""Result models of the tools: pydantic models become the tools' output schemas.

Every result carries ``data_version`` so an answer can be traced to the exact data file it came from.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Metric = Literal["units", "revenue"]
Grain = Literal["month", "quarter", "year"]
# How the data's grain is printed.
GRAIN_ADJECTIVE = {"day": "daily", "month": "monthly"}


class _Result(BaseModel):
    # JSON has no NaN or infinity (pydantic would write null where the schema wants a number): a result
    # holding one is a bug, refused where the result is built rather than sent broken.
    model_config = ConfigDict(allow_inf_nan=False)


class ProductSales(_Result):
    rank: int = Field(description="1 is the best seller for the chosen metric.")
    product_id: str
    product_name: str
    units: float
    revenue: float | None = Field(description="None when the data has no revenue column.")
    share: float = Field(
        description="Fraction of the operation's total for the chosen metric (0-1 without negative units)."
    )


class TopProductsResult(_Result):
    operation: str = Field(description="The operation name as stored in the data.")
    metric: Metric
    n: int = Field(description="How many products were asked for.")
    start_date: dt.date | None
    end_date: dt.date | None
    products: list[ProductSales]
    total_products: int = Field(description="Products with sales in the operation and period.")
    data_version: str


class OperationInfo(_Result):
    name: str
    products: int
    first_period: dt.date
    last_period: dt.date
    units: float
    revenue: float | None


class OperationsResult(_Result):
    operations: list[OperationInfo]
    data_version: str


class ProductInfo(_Result):
    product_id: str
    product_name: str
    operations: int = Field(description="Number of operations that sold this product.")
    units: float
    revenue: float | None


class ProductsResult(_Result):
    operation: str | None = Field(description="None when listing products across all operations.")
    products: list[ProductInfo]
    data_version: str


class RowsNoted(_Result):
    """Source rows holding one kind of questionable value."""

    rows: int = Field(default=0, description="How many source rows.")
    first_row: int | None = Field(
        default=None,
        description="Data row of the first one (1 = the first row after the header), when known.",
    )


class NumberChecks(_Result):
    """What the conversion found in the units and revenue columns."""

    units_not_finite: RowsNoted = Field(
        default_factory=RowsNoted, description="Rows left out because units is NaN or infinite."
    )
    revenue_not_finite: RowsNoted = Field(
        default_factory=RowsNoted, description="Rows left out because revenue is NaN or infinite."
    )
    negative_units: RowsNoted = Field(
        default_factory=RowsNoted, description="Rows with negative units (returns?), included as given."
    )
    incomplete: RowsNoted = Field(
        default_factory=RowsNoted,
        description="Rows left out because their operation, product, units or date is empty.",
    )

    def notes(self) -> list[str]:
        """One sentence per finding, for people (``mcp-sales check``) and models (dataset_summary)."""
        notes = [
            _rows(found.rows, f"a {field} value that is not a finite number")
            + (f" (first: data row {found.first_row})" if found.first_row is not None else "")
            + f"; {'it is' if found.rows == 1 else 'they are'} left out"
            for field, found in (("units", self.units_not_finite), ("revenue", self.revenue_not_finite))
            if found.rows
        ]
        if self.incomplete.rows:
            rows = self.incomplete.rows
            notes.append(
                _rows(rows, "an empty operation, product, units or date")
                + (f" (first: data row {self.incomplete.first_row})" if self.incomplete.first_row else "")
                + f"; {'it is' if rows == 1 else 'they are'} left out"
            )
        if self.negative_units.rows:
            rows = self.negative_units.rows
            notes.append(
                _rows(rows, "negative units (returns?)") + f"; {'it is' if rows == 1 else 'they are'} "
                "included as given"
            )
        return notes


def _rows(count: int, what: str) -> str:
    return f"{count:,} {'row has' if count == 1 else 'rows have'} {what}"


class DatasetSummary(_Result):
    source: str = Field(description="File name of the data (not the full path).")
    rows: int
    operations: int
    products: int
    first_period: dt.date
    last_period: dt.date
    grain: Literal["month", "day"] = Field(description="Finest time resolution of the data.")
    date_format: str | None = Field(
        None,
        description="strptime format the date column is read with; None for year + month columns or a "
        "DATE/TIMESTAMP column.",
    )
    date_format_source: Literal["detected", "configured", "typed"] | None = Field(
        None,
        description="How the date format was chosen: detected from every value, configured (date_format "
        "in mcp_sales.toml or --date-format), or typed (the column already holds dates).",
    )
    date_order: Literal["day-first", "month-first"] | None = Field(
        None, description="Day/month order of a numeric date format (such as 03/01/19); None otherwise."
    )
    date_order_assumed: bool = Field(
        False,
        description="True when every date reads both day-first and month-first, so date_order is a "
        "convention, not a finding; date_note says how to override it.",
    )
    date_note: str | None = Field(
        None, description="When date_order was assumed: which order, and how to configure the other one."
    )
    columns: list[str] = Field(description="Columns of the source file.")
    mapping: dict[str, str] = Field(description="Source column used for each field.")
    units_total: float
    revenue_total: float | None
    numbers: NumberChecks = Field(
        default_factory=NumberChecks,
        description="Rows left out for a NaN or infinite units/revenue or an empty operation, product, "
        "units or date, and rows with negative units.",
    )
    data_version: str


class SalesPoint(_Result):
    period: dt.date = Field(description="First day of the period.")
    units: float
    revenue: float | None


class SalesOverTimeResult(_Result):
    operation: str | None
    product: str | None
    grain: Grain
    points: list[SalesPoint]
    data_version: str


class ForecastPoint(_Result):
    period: dt.date = Field(description="First day of the month.")
    actual: float | None = Field(description="Observed value; None for future months.")
    forecast: float | None = Field(description="Model estimate; None for history when not fitted.")
    lower: float | None
    upper: float | None


class ForecastResult(_Result):
    operation: str
    product: str | None
    metric: Metric
    horizon_months: int
    start_date: dt.date | None = Field(description="History before this date was not used.")
    history_months: int
    interval_width: float
    points: list[ForecastPoint]
    cached: bool = Field(description="True when the fitted forecast came from the on-disk cache.")
    data_version: str
