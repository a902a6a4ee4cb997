"""Result models of the tools: pydantic models become the tools' output schemas.

Every result carries ``data_version`` so an answer can be traced to the exact data file it came from.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

Metric = Literal["units", "revenue"]
Grain = Literal["month", "quarter", "year"]


class ProductSales(BaseModel):
    rank: int = Field(description="1 is the best seller for the chosen metric.")
    product_id: str
    product_name: str
    units: float
    revenue: float | None = Field(description="None when the data has no revenue column.")
    share: float = Field(description="Fraction of the operation's total for the chosen metric (0-1).")


class TopProductsResult(BaseModel):
    operation: str = Field(description="The operation name as stored in the data.")
    metric: Metric
    n: int = Field(description="How many products were asked for.")
    start_date: dt.date | None
    end_date: dt.date | None
    products: list[ProductSales]
    total_products: int = Field(description="Products with sales in the operation and period.")
    data_version: str


class OperationInfo(BaseModel):
    name: str
    products: int
    first_period: dt.date
    last_period: dt.date
    units: float
    revenue: float | None


class OperationsResult(BaseModel):
    operations: list[OperationInfo]
    data_version: str


class ProductInfo(BaseModel):
    product_id: str
    product_name: str
    operations: int = Field(description="Number of operations that sold this product.")
    units: float
    revenue: float | None


class ProductsResult(BaseModel):
    operation: str | None = Field(description="None when listing products across all operations.")
    products: list[ProductInfo]
    data_version: str


class DatasetSummary(BaseModel):
    source: str = Field(description="File name of the data (not the full path).")
    rows: int
    operations: int
    products: int
    first_period: dt.date
    last_period: dt.date
    grain: Literal["month", "day"] = Field(description="Finest time resolution of the data.")
    columns: list[str] = Field(description="Columns of the source file.")
    mapping: dict[str, str] = Field(description="Source column used for each field.")
    units_total: float
    revenue_total: float | None
    data_version: str


class SalesPoint(BaseModel):
    period: dt.date = Field(description="First day of the period.")
    units: float
    revenue: float | None


class SalesOverTimeResult(BaseModel):
    operation: str | None
    product: str | None
    grain: Grain
    points: list[SalesPoint]
    data_version: str


class ForecastPoint(BaseModel):
    period: dt.date = Field(description="First day of the month.")
    actual: float | None = Field(description="Observed value; None for future months.")
    forecast: float | None = Field(description="Model estimate; None for history when not fitted.")
    lower: float | None
    upper: float | None


class ForecastResult(BaseModel):
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
