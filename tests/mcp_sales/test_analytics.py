"""Analytics results against an independent pandas computation on the same files, and argument errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_sales import analytics
from mcp_sales.analytics import (
    MAX_N,
    list_operations,
    list_products,
    monthly_series,
    parse_date_arg,
    resolve_operation,
    resolve_product,
    sales_over_time,
    summarize,
    top_products,
)
from mcp_sales.data import SalesData, SalesStore
from mcp_sales.errors import InvalidInput
from mcp_sales.mapping import ColumnMapping

DATASETS = ("sample_data", "awkward_data", "parquet_data")


def reference_frame(data: SalesData) -> pd.DataFrame:
    """The source file read with plain pandas into operation/product_id/product_name/period/units/revenue."""
    if data.source.suffix == ".parquet":
        raw = pd.read_parquet(data.source)
    elif data.grain == "day":
        raw = pd.read_csv(data.source, encoding="cp1252", dtype=str)
    else:
        raw = pd.read_csv(data.source, dtype={"PRODUCT_ID": str})
    if data.grain == "day":
        frame = pd.DataFrame(
            {
                "operation": raw["CITY"],
                "product_id": raw["PRODUCTCODE"],
                "product_name": raw["PRODUCTLINE"],
                "period": pd.to_datetime(raw["ORDERDATE"], format="%m/%d/%Y %H:%M").dt.date,
                "units": pd.to_numeric(raw["QUANTITYORDERED"]),
                "revenue": pd.to_numeric(raw["SALES"]),
            }
        )
    else:
        frame = pd.DataFrame(
            {
                "operation": raw["OPERATION_NAME"],
                "product_id": raw["PRODUCT_ID"],
                "product_name": raw["PRODUCT_NAME"],
                "period": [
                    dt.date(int(y), int(m), 1)
                    for y, m in zip(raw["CALENDAR_YEAR"], raw["CALENDAR_MONTH"], strict=True)
                ],
                "units": raw["UNITS_SOLD"].astype(float),
                "revenue": raw["REVENUE"].astype(float),
            }
        )
    return frame.dropna(subset=["operation", "product_id", "units"]).reset_index(drop=True)


@pytest.fixture(scope="module", params=DATASETS)
def dataset(request: pytest.FixtureRequest) -> tuple[SalesData, pd.DataFrame]:
    data: SalesData = request.getfixturevalue(request.param)
    return data, reference_frame(data)


def expected_top(
    frame: pd.DataFrame, op: str, n: int, metric: str, start: dt.date | None, end: dt.date | None
) -> list[dict[str, Any]]:
    rows = frame[frame["operation"] == op]
    if start is not None:
        rows = rows[rows["period"] >= start]
    if end is not None:
        rows = rows[rows["period"] <= end]
    grouped = rows.groupby("product_id").agg(
        product_name=("product_name", "first"), units=("units", "sum"), revenue=("revenue", "sum")
    )
    total = grouped[metric].sum()
    ordered = grouped.reset_index().sort_values([metric, "product_id"], ascending=[False, True]).head(n)
    return [
        {
            "product_id": r.product_id,
            "product_name": r.product_name,
            "units": r.units,
            "revenue": r.revenue,
            "share": getattr(r, metric) / total,
            "total_products": len(grouped),
        }
        for r in ordered.itertuples()
    ]


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-9, abs=1e-6)


# ----------------------------------------------------------------------------------------------
# Numbers equal pandas


@pytest.mark.parametrize(
    ("n", "metric", "start", "end"),
    [
        (5, "units", None, None),
        (3, "revenue", None, None),
        (MAX_N, "units", None, None),
        (4, "units", dt.date(2003, 6, 1), dt.date(2004, 5, 31)),
        (2, "revenue", dt.date(2021, 1, 1), dt.date(2021, 12, 31)),
        (6, "units", dt.date(2022, 7, 1), None),
    ],
)
def test_top_products_matches_pandas(
    dataset: tuple[SalesData, pd.DataFrame], n: int, metric: str, start: dt.date | None, end: dt.date | None
) -> None:
    data, frame = dataset
    for op in data.operations[::4] if len(data.operations) > 10 else data.operations:
        expected = expected_top(frame, op, n, metric, start, end)
        if not expected:
            with pytest.raises(InvalidInput, match="the data covers"):
                top_products(data, op, n, metric, start, end)  # type: ignore[arg-type]
            continue
        result = top_products(data, op, n, metric, start, end)  # type: ignore[arg-type]
        assert result.operation == op
        assert result.total_products == expected[0]["total_products"]
        got = [(p.product_id, p.product_name) for p in result.products]
        assert got == [(e["product_id"], e["product_name"]) for e in expected]
        for product, want in zip(result.products, expected, strict=True):
            assert product.units == approx(want["units"])
            assert product.revenue == approx(want["revenue"])
            assert product.share == approx(want["share"])
        assert [p.rank for p in result.products] == list(range(1, len(expected) + 1))
        assert result.data_version == data.version


@pytest.mark.parametrize(("start", "end"), [(None, None), (dt.date(2020, 4, 1), dt.date(2021, 3, 31))])
def test_large_operations_rank_in_duckdb(
    sample_data: SalesData, monkeypatch: pytest.MonkeyPatch, start: dt.date | None, end: dt.date | None
) -> None:
    ranked_here = top_products(sample_data, "Austin", 7, "revenue", start, end)
    monkeypatch.setattr(analytics, "RANKED_PRODUCTS_MAX", 0)  # as if Austin sold too many products to keep
    in_sql = top_products(sample_data, "Austin", 7, "revenue", start, end)
    assert in_sql.products == ranked_here.products
    assert in_sql.total_products == ranked_here.total_products == 25


def test_list_operations_matches_pandas(dataset: tuple[SalesData, pd.DataFrame]) -> None:
    data, frame = dataset
    result = list_operations(data)
    grouped = frame.groupby("operation").agg(
        products=("product_id", "nunique"),
        first=("period", "min"),
        last=("period", "max"),
        units=("units", "sum"),
        revenue=("revenue", "sum"),
    )
    assert [o.name for o in result.operations] == sorted(grouped.index)
    for info in result.operations:
        want = grouped.loc[info.name]
        assert (info.products, info.first_period, info.last_period) == (
            want.products,
            want["first"],
            want["last"],
        )
        assert info.units == approx(want.units)
        assert info.revenue == approx(want.revenue)


@pytest.mark.parametrize("scope", ["all", "first", "last"])
def test_list_products_matches_pandas(dataset: tuple[SalesData, pd.DataFrame], scope: str) -> None:
    data, frame = dataset
    op = None if scope == "all" else data.operations[0 if scope == "first" else -1]
    result = list_products(data, op.upper() if op else None)
    assert result.operation == op
    here = frame if op is None else frame[frame["operation"] == op]
    grouped = here.groupby("product_id").agg(
        name=("product_name", "first"), units=("units", "sum"), revenue=("revenue", "sum")
    )
    operations = frame.groupby("product_id")["operation"].nunique()
    assert [p.product_id for p in result.products] == sorted(grouped.index)
    for info in result.products:
        assert info.product_name == grouped.loc[info.product_id, "name"]
        assert info.operations == operations[info.product_id]
        assert info.units == approx(grouped.loc[info.product_id, "units"])
        assert info.revenue == approx(grouped.loc[info.product_id, "revenue"])


def test_summarize_matches_pandas(dataset: tuple[SalesData, pd.DataFrame]) -> None:
    data, frame = dataset
    summary = summarize(data)
    assert summary.source == data.source.name
    assert summary.rows == len(frame) + data.dropped_rows
    assert (summary.operations, summary.products) == (
        frame["operation"].nunique(),
        frame["product_id"].nunique(),
    )
    assert (summary.first_period, summary.last_period) == (frame["period"].min(), frame["period"].max())
    assert summary.units_total == approx(frame["units"].sum())
    assert summary.revenue_total == approx(frame["revenue"].sum())
    assert summary.columns == list(data.columns)
    assert summary.mapping["units"] in data.columns


def _period_start(day: dt.date, grain: str) -> dt.date:
    month = {"month": day.month, "quarter": (day.month - 1) // 3 * 3 + 1, "year": 1}[grain]
    return dt.date(day.year, month, 1)


@pytest.mark.parametrize("grain", ["month", "quarter", "year"])
@pytest.mark.parametrize("filtered", [False, True])
def test_sales_over_time_matches_pandas(
    dataset: tuple[SalesData, pd.DataFrame], grain: str, filtered: bool
) -> None:
    data, frame = dataset
    op = data.operations[1] if filtered else None
    product = None
    rows = frame
    if filtered:
        rows = frame[frame["operation"] == op]
        product = sorted(rows["product_id"])[0]
        rows = rows[rows["product_id"] == product]
    result = sales_over_time(data, op, product, grain)  # type: ignore[arg-type]
    expected = (
        rows.assign(p=[_period_start(d, grain) for d in rows["period"]])
        .groupby("p")[["units", "revenue"]]
        .sum()
    )
    got = {point.period: point for point in result.points}
    # Every period from the data's first to its last appears once; missing ones are zero.
    first, last = _period_start(data.first_period, grain), _period_start(data.last_period, grain)
    assert min(got) == first and max(got) == last
    assert len(got) == len(result.points)
    for period, point in got.items():
        want_units = expected.units.get(period, 0.0)
        assert point.units == approx(want_units), period
        assert point.revenue == approx(expected.revenue.get(period, 0.0))
    assert result.operation == op
    if filtered:
        assert result.product == frame.loc[frame["product_id"] == product, "product_name"].iloc[0]


def test_sales_over_time_range_is_clipped_to_dates(sample_data: SalesData) -> None:
    result = sales_over_time(
        sample_data, "dallas", None, "quarter", dt.date(2021, 2, 1), dt.date(2021, 8, 31)
    )
    assert [p.period for p in result.points] == [
        dt.date(2021, 1, 1),
        dt.date(2021, 4, 1),
        dt.date(2021, 7, 1),
    ]
    monthly = sales_over_time(sample_data, "dallas", None, "month", dt.date(2021, 2, 1), dt.date(2021, 8, 31))
    assert result.points[0].units == approx(sum(p.units for p in monthly.points[:2]))  # Feb + Mar only


@pytest.mark.parametrize("metric", ["units", "revenue"])
def test_monthly_series_matches_pandas_with_zero_filled_gaps(awkward_data: SalesData, metric: str) -> None:
    frame = reference_frame(awkward_data)
    rows = frame[frame["operation"] == "NYC"]
    months = rows.assign(m=[d.replace(day=1) for d in rows["period"]]).groupby("m")[metric].sum()
    series = monthly_series(awkward_data, "nyc", None, metric)  # type: ignore[arg-type]
    assert series[0][0] == min(months.index)
    assert series[-1][0] == awkward_data.last_period.replace(day=1)
    assert [m for m, _ in series] == list(pd.date_range(series[0][0], series[-1][0], freq="MS").date)
    assert dt.date(2004, 3, 1) not in months.index  # the fixture leaves a gap here
    values = dict(series)
    assert values[dt.date(2004, 3, 1)] == 0.0
    for month, value in values.items():
        assert value == approx(months.get(month, 0.0))


def test_monthly_series_starts_at_start_or_first_sale(sample_data: SalesData) -> None:
    full = monthly_series(sample_data, "Tampa", "P-1007", "units")
    assert full[0][0] == dt.date(2019, 1, 1) and len(full) == 72
    later = monthly_series(sample_data, "Tampa", "Trail Mix", "units", start=dt.date(2024, 6, 17))
    assert later == full[-7:]
    earlier = monthly_series(sample_data, "Tampa", "P-1007", "units", start=dt.date(2010, 1, 1))
    assert earlier == full


def test_monthly_series_errors(sample_data: SalesData) -> None:
    with pytest.raises(InvalidInput, match=r"after the last month of data \(2024-12\)"):
        monthly_series(sample_data, "Tampa", None, "units", start=dt.date(2025, 1, 1))
    with pytest.raises(InvalidInput, match="metric must be"):
        monthly_series(sample_data, "Tampa", None, "profit")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Arguments and their errors


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("2023", "start_date", dt.date(2023, 1, 1)),
        ("2023", "end_date", dt.date(2023, 12, 31)),
        ("2023-05", "start_date", dt.date(2023, 5, 1)),
        ("2024-02", "end_date", dt.date(2024, 2, 29)),
        ("2023-05-17", "end_date", dt.date(2023, 5, 17)),
        (" 2023-05-17T00:00:00 ", "start_date", dt.date(2023, 5, 17)),
        ("2023-05-17 13:45:00Z", "start_date", dt.date(2023, 5, 17)),
        (None, "start_date", None),
        ("", "end_date", None),
    ],
)
def test_parse_date_arg_forms(text: str | None, field: str, expected: dt.date | None) -> None:
    assert parse_date_arg(text, field) == expected


@pytest.mark.parametrize(
    "text", ["2023-13", "2023-02-30", "yesterday", "05/17/2023", "2023-5-17x", "20230517"]
)
def test_parse_date_arg_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_date_arg(text, "start_date")
    assert str(info.value) == f"start_date {text!r} is not a date; use YYYY-MM-DD or YYYY-MM"


@given(st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_parse_date_arg_round_trips_iso_dates(day: dt.date) -> None:
    assert parse_date_arg(day.isoformat(), "end_date") == day
    assert parse_date_arg(f"{day:%Y-%m}", "start_date") == day.replace(day=1)


@pytest.mark.parametrize("n", [0, -3, 10**9, MAX_N + 1])
def test_top_products_n_out_of_range(sample_data: SalesData, n: int) -> None:
    with pytest.raises(InvalidInput, match=f"n must be a whole number from 1 to {MAX_N}, not {n}"):
        top_products(sample_data, "Dallas", n)


def test_top_products_period_checks(sample_data: SalesData) -> None:
    with pytest.raises(InvalidInput, match="start_date 2023-05-01 is after end_date 2023-01-01; swap them"):
        top_products(sample_data, "Dallas", 5, "units", dt.date(2023, 5, 1), dt.date(2023, 1, 1))
    # Dates beyond the data name the date to change (the range was once printed backwards).
    with pytest.raises(
        InvalidInput,
        match=r"^start_date 2030-01-01 is after the data ends; the data covers 2019-01\.\.2024-12",
    ):
        top_products(sample_data, "Dallas", 5, "units", dt.date(2030, 1, 1))
    with pytest.raises(
        InvalidInput, match=r"^end_date 2018-12-31 is before the data begins; .*later end_date"
    ):
        top_products(sample_data, "Dallas", 5, "units", None, dt.date(2018, 12, 31))
    with pytest.raises(InvalidInput, match="metric must be 'units' or 'revenue'"):
        top_products(sample_data, "Dallas", 5, "margin")  # type: ignore[arg-type]


def test_month_grain_dates_select_whole_months(sample_data: SalesData) -> None:
    mid = top_products(sample_data, "Dallas", 3, "units", dt.date(2022, 3, 15), dt.date(2022, 3, 15))
    whole = top_products(sample_data, "Dallas", 3, "units", dt.date(2022, 3, 1), dt.date(2022, 3, 31))
    assert mid.products == whole.products
    assert (mid.start_date, mid.end_date) == (dt.date(2022, 3, 15), dt.date(2022, 3, 15))


def test_revenue_metric_needs_a_revenue_column(tmp_path: Path, sample_master: Path) -> None:
    data = SalesStore(sample_master, ColumnMapping(revenue=None), cache_root=tmp_path / "cache").current()
    assert not data.has_revenue
    with pytest.raises(InvalidInput, match="no revenue column, so metric 'revenue' is not available"):
        top_products(data, "Dallas", 5, "revenue")
    result = top_products(data, "Dallas", 2)
    assert all(p.revenue is None for p in result.products)
    assert summarize(data).revenue_total is None
    assert all(p.revenue is None for p in sales_over_time(data, "Dallas").points)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("Dallas", "Dallas"),
        ("  dallas ", "Dallas"),
        ("DALLAS", "Dallas"),
        ("dall", "Dallas"),
        ("lake", "Salt Lake City"),
    ],
)
def test_resolve_operation_forgiving(sample_data: SalesData, spelling: str, expected: str) -> None:
    assert resolve_operation(sample_data, spelling) == expected


def test_resolve_operation_unknown_suggests(sample_data: SalesData) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_operation(sample_data, "Dalas")
    assert (
        str(info.value) == "no operation named 'Dalas'; did you mean 'Dallas'? (list_operations shows all 20)"
    )
    with pytest.raises(InvalidInput, match=r"^no operation named 'Gotham'; list_operations shows all 20$"):
        top_products(sample_data, "Gotham")


def test_resolve_operation_ambiguous(sample_data: SalesData) -> None:
    with pytest.raises(InvalidInput) as info:
        top_products(sample_data, "San", 5)
    assert str(info.value) == "'San' matches 2 operations: San Antonio, San Diego; say which one"


def test_resolve_operation_non_ascii(awkward_data: SalesData) -> None:
    assert resolve_operation(awkward_data, "montréal") == "Montréal"
    with pytest.raises(InvalidInput, match="did you mean 'Montréal'"):
        resolve_operation(awkward_data, "Montreal")


def test_resolve_product_by_id_name_and_part(sample_data: SalesData, awkward_data: SalesData) -> None:
    assert resolve_product(sample_data, "p-1019") == ("P-1019", "Coffee Beans 1kg")
    assert resolve_product(sample_data, "coffee beans", "Dallas") == ("P-1019", "Coffee Beans 1kg")
    with pytest.raises(InvalidInput, match=r"'co' matches 3 products: Cold Brew Coffee \(P-1002\)"):
        resolve_product(sample_data, "co")
    with pytest.raises(InvalidInput, match=r"did you mean 'Coffee Beans 1kg \(P-1019\)'"):
        resolve_product(sample_data, "Cofee Beans")
    assert resolve_product(awkward_data, "s72_3212") == ("S72_3212", "Planes")
    with pytest.raises(InvalidInput, match="product 'Planes' has no sales in NYC"):
        resolve_product(awkward_data, "S72_3212", "nyc")
    with pytest.raises(InvalidInput, match="'Motorcycles' matches 2 products"):
        resolve_product(awkward_data, "Motorcycles")


def test_names_differing_only_in_case_are_picked_by_their_exact_spelling(tmp_path: Path) -> None:
    source = tmp_path / "twins.csv"
    source.write_text(
        "store,sku,name,qty,date\n"
        "Reno,ab1,Soap,3,2019-01-01\nRENO,AB1,Soda,4,2019-01-01\nRENO,ab1,Soap,5,2019-02-01\n"
    )
    mapping = ColumnMapping(
        operation="store", product_id="sku", product_name="name", units="qty", date="date"
    )
    data = SalesStore(source, mapping, cache_root=tmp_path / "cache").current()
    assert resolve_operation(data, "RENO") == "RENO"
    assert resolve_operation(data, " Reno ") == "Reno"
    assert top_products(data, data.operations[0], 1).operation == data.operations[0]
    assert resolve_product(data, "AB1") == ("AB1", "Soda")
    assert resolve_product(data, "ab1", "RENO") == ("ab1", "Soap")
    with pytest.raises(InvalidInput, match="'reno' matches 2 operations: RENO, Reno; say which one"):
        resolve_operation(data, "reno")
