"""Sales analytics over one prepared data version: pure functions, no MCP.

Queries read the version's in-memory pre-aggregates (``agg``: operation x product x period, and
``totals``: operation x product), never the source rows, so their cost does not grow with the source
file; what never changes within a version (the product catalog, per-operation totals and rankings
over the whole history) is computed once and kept. Arguments come from a model or a person:
names are matched forgivingly (case, partial names) and every bad argument raises
:class:`~mcp_sales.errors.InvalidInput` with a sentence saying what to send instead.

Dates: with month-grain data a date selects its whole month (``start=2023-05-17`` includes May).
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import difflib
import heapq
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mcp_sales.data import SalesData
from mcp_sales.errors import InvalidInput, echo
from mcp_sales.models import (
    DatasetSummary,
    Grain,
    Metric,
    OperationInfo,
    OperationsResult,
    ProductInfo,
    ProductSales,
    ProductsResult,
    SalesOverTimeResult,
    SalesPoint,
    TopProductsResult,
)

MAX_N = 1000
RANKED_PRODUCTS_MAX = 10_000
METRICS = ("units", "revenue")
GRAINS = ("month", "quarter", "year")

_DATE_RE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ][0-9:.]*(?:Z|[+-]\d{2}:?\d{2})?)?)?)?")
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------------
# Arguments


def parse_date_arg(value: str | None, field: str) -> dt.date | None:
    """Parse a date argument: ``2023``, ``2023-05``, ``2023-05-17`` or ``2023-05-17T00:00:00``.

    A year or month alone means its first day, or its last day when ``field`` starts with "end" (so
    ``end_date=2023`` includes all of 2023). None or an empty string means "not given".

    Raises:
        InvalidInput: the value is not one of those forms or not a real date.
    """
    if value is None or not value.strip():
        return None
    match = _DATE_RE.fullmatch(value.strip())
    try:
        if match is None:
            raise ValueError(value)
        year, month, day = match.group(1, 2, 3)
        is_end = field.lower().startswith("end")
        m = int(month) if month else (12 if is_end else 1)
        if day:
            d = int(day)
        elif is_end:
            d = calendar.monthrange(int(year), m)[1]  # IllegalMonthError is a ValueError
        else:
            d = 1
        return dt.date(int(year), m, d)
    except ValueError:
        raise InvalidInput(f"{field} {echo(value)} is not a date; use YYYY-MM-DD or YYYY-MM") from None


def resolve_operation(data: SalesData, name: str) -> str:
    """The operation name as stored for a user's spelling of it.

    Exact case-insensitive match first, then a unique partial match.

    Raises:
        InvalidInput: unknown (with the closest names) or ambiguous (with the matches).
    """
    return _pick(
        name,
        data.operations,
        labels=lambda op: (op,),
        show=lambda op: op,
        kind="operation",
        field="operation",
        hint=f"list_operations shows all {len(data.operations)}",
    )


def resolve_product(data: SalesData, name: str, operation: str | None = None) -> tuple[str, str]:
    """(product_id, product_name) for a product given by id or name, optionally within an operation.

    Raises:
        InvalidInput: unknown (with the closest names) or ambiguous (with the matches).
    """
    catalog = _catalog(data)
    products = catalog.products
    where = ""
    if operation is not None:
        operation = resolve_operation(data, operation)
        sold = catalog.by_operation.get(operation, frozenset())
        products = tuple(p for p in products if p[0] in sold)
        where = f" in {operation}"
    try:
        return _pick(
            name,
            products,
            labels=lambda p: p,
            show=lambda p: p[1] if p[0] == p[1] else f"{p[1]} ({p[0]})",
            kind="product",
            field="product",
            hint=f"list_products shows all {len(products)}{where}",
            scope=where,
        )
    except InvalidInput as scoped:
        if operation is None:
            raise
        # Sold elsewhere but not here: say so rather than suggesting look-alikes.
        try:
            product = resolve_product(data, name)
        except InvalidInput:
            raise scoped from None
        raise InvalidInput(
            f"product {product[1]!r} has no sales in {operation}; "
            f"list_products with operation {operation!r} shows what it sells"
        ) from None


def _pick(
    query: str,
    items: Sequence[_T],
    *,
    labels: Callable[[_T], Sequence[str]],
    show: Callable[[_T], str],
    kind: str,
    field: str,
    hint: str,
    scope: str = "",
) -> _T:
    wanted = " ".join(str(query).split()).casefold()
    if not wanted:
        raise InvalidInput(f"{field} is empty; name one ({hint})")
    exact = [item for item in items if any(label.casefold() == wanted for label in labels(item))]
    if len(exact) > 1:  # names that differ only in case ("Reno", "RENO"): the exact spelling picks one
        spelled = " ".join(str(query).split())
        exact = [item for item in exact if spelled in labels(item)] or exact
    matches = exact or [item for item in items if any(wanted in label.casefold() for label in labels(item))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = [show(item) for item in matches]
        listed = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        raise InvalidInput(f"{echo(query)} matches {len(matches)} {kind}s{scope}: {listed}; say which one")
    by_label = {label.casefold(): show(item) for item in items for label in labels(item)}
    close = difflib.get_close_matches(wanted, list(by_label), n=3, cutoff=0.6)
    suggestions = list(dict.fromkeys(by_label[label] for label in close))
    if suggestions:
        options = " or ".join(repr(s) for s in suggestions)
        raise InvalidInput(f"no {kind} named {echo(query)}{scope}; did you mean {options}? ({hint})")
    raise InvalidInput(f"no {kind} named {echo(query)}{scope}; {hint}")


def _check_metric(data: SalesData, metric: str) -> None:
    if metric not in METRICS:
        raise InvalidInput(f"metric must be 'units' or 'revenue', not {echo(metric)}")
    if metric == "revenue" and not data.has_revenue:
        raise InvalidInput(
            "this data has no revenue column, so metric 'revenue' is not available; use metric 'units' "
            "(or map a revenue column with --column revenue=COL)"
        )


def _check_range(start: dt.date | None, end: dt.date | None) -> None:
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"start_date {start} is after end_date {end}; swap them")


def check_within_data(data: SalesData, start: dt.date | None, end: dt.date | None) -> None:
    """Refuse dates that lie wholly after or before the data, naming the one to change.

    Raises:
        InvalidInput: start after the data's last period, or end before its first.
    """
    low, high = _bounds(data, start, end)
    if start is not None and low > data.last_period:
        raise InvalidInput(
            f"start_date {start} is after the data ends; the data covers {_coverage(data)}, "
            "pick an earlier start_date"
        )
    if end is not None and high < data.first_period:
        raise InvalidInput(
            f"end_date {end} is before the data begins; the data covers {_coverage(data)}, "
            "pick a later end_date"
        )


def _share(value: float | None, total: float | None) -> float:
    """``value`` as a fraction of ``total``: 0.0 without a total, or when the ratio is not finite
    (negative units can bring a total close to zero)."""
    if not total:
        return 0.0
    share = (value or 0.0) / total
    return share if math.isfinite(share) else 0.0


def _bounds(data: SalesData, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    """Inclusive period bounds for a query; month-grain periods are first-of-month dates."""
    low = start if start is not None else data.first_period
    high = end if end is not None else data.last_period
    if data.grain == "month":
        low = low.replace(day=1)
    return low, high


def _coverage(data: SalesData) -> str:
    if data.grain == "month":
        return f"{data.first_period:%Y-%m}..{data.last_period:%Y-%m}"
    return f"{data.first_period}..{data.last_period}"


# --------------------------------------------------------------------------------------------------
# Queries


def top_products(
    data: SalesData,
    operation: str,
    n: int = 5,
    metric: Metric = "units",
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> TopProductsResult:
    """The ``n`` best-selling products of an operation by units or revenue, optionally in a period.

    Ties are broken by product id; ``share`` is the product's part of the operation's total.

    Raises:
        InvalidInput: unknown operation, n outside 1..MAX_N, unavailable metric, start after end, or no
            sales in the period.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise InvalidInput(f"n must be a whole number from 1 to {MAX_N}, not {echo(n)}")
    _check_metric(data, metric)
    _check_range(start, end)
    check_within_data(data, start, end)
    op = resolve_operation(data, operation)
    low, high = _bounds(data, start, end)
    if low <= data.first_period and high >= data.last_period:
        # The whole history (the common question): ranked per-product totals, from the catalog.
        catalog = _catalog(data)
        summary = catalog.operations[op]
        total_products, total = summary[0], (summary[3] if metric == "units" else summary[4])
        rows = catalog.ranking(data, op, metric, n)
    else:
        rows, total_products, total = _top_in_period(data, op, metric, n, low, high)
        if not rows:
            raise InvalidInput(
                f"no sales in {op} between {low} and {high}; the data covers {_coverage(data)}, "
                "pick dates in it"
            )
    products = [
        ProductSales(
            rank=rank,
            product_id=row[0],
            product_name=row[1],
            units=row[2],
            revenue=row[3] if data.has_revenue else None,
            share=_share(row[2] if metric == "units" else row[3], total),
        )
        for rank, row in enumerate(rows, start=1)
    ]
    return TopProductsResult(
        operation=op,
        metric=metric,
        n=n,
        start_date=start,
        end_date=end,
        products=products,
        total_products=total_products,
        data_version=data.version,
    )


def _top_in_period(
    data: SalesData, op: str, metric: str, n: int, low: dt.date, high: dt.date
) -> tuple[list[tuple[Any, ...]], int, float | None]:
    """(top n rows, products with sales, metric total) of an operation between two periods."""
    catalog = _catalog(data)
    if catalog.operations[op][0] > RANKED_PRODUCTS_MAX:
        rows = _query(
            data,
            f"""
            WITH g AS (
                SELECT product_id, min(product_name) AS product_name, sum(units) AS units,
                       sum(revenue) AS revenue
                FROM agg WHERE operation = ? AND period >= ? AND period <= ? GROUP BY product_id
            )
            SELECT product_id, product_name, units, revenue, count(*) OVER (), sum({metric}) OVER ()
            FROM g ORDER BY {metric} DESC, product_id LIMIT ?
            """,
            [op, low, high, n],
        )
        return [row[:4] for row in rows], (rows[0][4] if rows else 0), (rows[0][5] if rows else None)
    # Few products: a bare GROUP BY plans and runs in half the time of ranking in SQL; rank here.
    sums = _query(
        data,
        "SELECT product_id, sum(units), sum(revenue) FROM agg "
        "WHERE operation = ? AND period >= ? AND period <= ? GROUP BY product_id",
        [op, low, high],
    )
    column = 1 if metric == "units" else 2
    top = heapq.nsmallest(n, sums, key=lambda r: (r[column] is None, -(r[column] or 0.0), r[0]))
    total = sum(r[column] or 0.0 for r in sums)
    return [(pid, catalog.names[pid], units, revenue) for pid, units, revenue in top], len(sums), total


def list_operations(data: SalesData) -> OperationsResult:
    """Every operation with its product count, period covered and totals."""
    return OperationsResult(
        operations=[
            OperationInfo(
                name=name,
                products=products,
                first_period=first,
                last_period=last,
                units=units,
                revenue=revenue if data.has_revenue else None,
            )
            for name, (products, first, last, units, revenue) in _catalog(data).operations.items()
        ],
        data_version=data.version,
    )


def list_products(data: SalesData, operation: str | None = None) -> ProductsResult:
    """Products (by id) with totals, in one operation or all; ``operations`` counts all that sell it.

    Raises:
        InvalidInput: unknown or ambiguous operation.
    """
    op = resolve_operation(data, operation) if operation is not None else None
    rows = _query(
        data,
        """
        WITH everywhere AS (
            SELECT product_id, min(product_name) AS product_name, count(*) AS operations
            FROM totals GROUP BY product_id
        ), here AS (
            SELECT product_id, sum(units) AS units, sum(revenue) AS revenue
            FROM totals WHERE ? IS NULL OR operation = ? GROUP BY product_id
        )
        SELECT product_id, product_name, operations, units, revenue
        FROM here JOIN everywhere USING (product_id) ORDER BY product_id
        """,
        [op, op],
    )
    return ProductsResult(
        operation=op,
        products=[
            ProductInfo(
                product_id=pid,
                product_name=name,
                operations=operations,
                units=units,
                revenue=revenue if data.has_revenue else None,
            )
            for pid, name, operations, units, revenue in rows
        ],
        data_version=data.version,
    )


def summarize(data: SalesData) -> DatasetSummary:
    """What the data is: size, coverage, columns, mapping and totals."""
    products, units, revenue = _catalog(data).totals
    dates = data.dates
    return DatasetSummary(
        source=data.source.name,
        rows=data.rows,
        operations=len(data.operations),
        products=products,
        first_period=data.first_period,
        last_period=data.last_period,
        grain=data.grain,
        date_format=dates.format if dates else None,
        date_format_source=dates.source if dates else None,
        date_order=dates.order if dates else None,
        date_order_assumed=dates.order_assumed if dates else False,
        date_note=dates.override_hint() if dates else None,
        columns=list(data.columns),
        mapping=data.mapping.as_dict(),
        units_total=units,
        revenue_total=revenue if data.has_revenue else None,
        numbers=data.numbers,
        data_version=data.version,
    )


def sales_over_time(
    data: SalesData,
    operation: str | None = None,
    product: str | None = None,
    grain: Grain = "month",
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> SalesOverTimeResult:
    """Units (and revenue) per month, quarter or year; periods without sales are zeros.

    Points run from the start (or the data's first period) to the end (or its last), each labelled by
    the first day of its period.

    Raises:
        InvalidInput: unknown operation or product, bad grain, start after end, or a range outside the data.
    """
    if grain not in GRAINS:
        raise InvalidInput(f"grain must be 'month', 'quarter' or 'year', not {echo(grain)}")
    _check_range(start, end)
    check_within_data(data, start, end)
    op = resolve_operation(data, operation) if operation is not None else None
    pid, pname = resolve_product(data, product, op) if product is not None else (None, None)
    low, high = _bounds(data, start, end)
    low, high = max(low, data.first_period.replace(day=1)), min(high, data.last_period)
    rows = _query(
        data,
        f"""
        SELECT CAST(date_trunc('{grain}', period) AS DATE) AS p, sum(units), sum(revenue)
        FROM agg
        WHERE period >= ? AND period <= ? AND (? IS NULL OR operation = ?) AND (? IS NULL OR product_id = ?)
        GROUP BY p ORDER BY p
        """,
        [low, high, op, op, pid, pid],
    )
    found = {period: (units, revenue) for period, units, revenue in rows}
    points = []
    for period in _periods(_truncate(low, grain), _truncate(high, grain), grain):
        units, revenue = found.get(period, (0.0, 0.0))
        points.append(
            SalesPoint(period=period, units=units, revenue=(revenue or 0.0) if data.has_revenue else None)
        )
    return SalesOverTimeResult(
        operation=op, product=pname, grain=grain, points=points, data_version=data.version
    )


def monthly_series(
    data: SalesData, operation: str, product: str | None, metric: Metric, start: dt.date | None = None
) -> list[tuple[dt.date, float]]:
    """One value per calendar month, the input of a forecast.

    From the first month with sales (or ``start``'s month, if later) to the data's last month; months
    without sales are 0.0.

    Raises:
        InvalidInput: unknown operation or product, unavailable metric, no sales, or a start after the
            data's last month.
    """
    _check_metric(data, metric)
    op = resolve_operation(data, operation)
    pid, pname = resolve_product(data, product, op) if product is not None else (None, None)
    rows = _query(
        data,
        f"""
        SELECT CAST(date_trunc('month', period) AS DATE) AS m, sum({metric})
        FROM agg WHERE operation = ? AND (? IS NULL OR product_id = ?)
        GROUP BY m ORDER BY m
        """,
        [op, pid, pid],
    )
    if not rows:
        raise InvalidInput(
            f"no sales {f'of {pname} ' if pname else ''}in {op}; "
            f"list_products with operation {op!r} shows what it sells"
        )
    last = data.last_period.replace(day=1)
    begin = rows[0][0] if start is None else max(rows[0][0], start.replace(day=1))
    if begin > last:
        raise InvalidInput(
            f"start_date {start} is after the last month of data ({last:%Y-%m}); pick an earlier start"
        )
    values = {month: value or 0.0 for month, value in rows}
    return [(month, float(values.get(month, 0.0))) for month in _periods(begin, last, "month")]


# --------------------------------------------------------------------------------------------------
# Helpers


def _query(data: SalesData, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(data.cursor()) as cursor:
        return cursor.execute(sql, list(params)).fetchall()


def _truncate(day: dt.date, grain: str) -> dt.date:
    if grain == "year":
        return dt.date(day.year, 1, 1)
    if grain == "quarter":
        return dt.date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    return day.replace(day=1)


def _periods(first: dt.date, last: dt.date, grain: str) -> list[dt.date]:
    """First days of every period from ``first`` to ``last`` (both period starts), inclusive."""
    step = {"month": 1, "quarter": 3, "year": 12}[grain]
    out: list[dt.date] = []
    index = first.year * 12 + first.month - 1
    while True:
        day = dt.date(index // 12, index % 12 + 1, 1)
        if day > last:
            return out
        out.append(day)
        index += step


class _Catalog:
    """What never changes within a version: its products, and per operation what it sells and totals."""

    def __init__(self, data: SalesData) -> None:
        rows = _query(
            data,
            "SELECT product_id, min(product_name), list(operation) FROM totals "
            "GROUP BY product_id ORDER BY product_id",
        )
        self.products: tuple[tuple[str, str], ...] = tuple((pid, name) for pid, name, _ in rows)
        self.names = dict(self.products)
        by_operation: dict[str, set[str]] = {}
        for pid, _, operations in rows:
            for op in operations:
                by_operation.setdefault(op, set()).add(pid)
        self.by_operation = {op: frozenset(pids) for op, pids in by_operation.items()}
        # operation -> (products, first period, last period, units, revenue), in name order
        self.operations: dict[str, tuple[int, dt.date, dt.date, float, float | None]] = {
            op: (products, first, last, units, revenue)
            for op, products, first, last, units, revenue in _query(
                data,
                "SELECT operation, count(*), min(first_period), max(last_period), sum(units), sum(revenue) "
                "FROM totals GROUP BY operation ORDER BY operation",
            )
        }
        ((products, units, revenue),) = _query(
            data, "SELECT count(DISTINCT product_id), sum(units), sum(revenue) FROM totals"
        )
        self.totals: tuple[int, float, float | None] = (products, units, revenue)
        self._rankings: dict[tuple[str, str], list[tuple[Any, ...]]] = {}

    def ranking(self, data: SalesData, operation: str, metric: str, n: int) -> list[tuple[Any, ...]]:
        """The top ``n`` (product_id, product_name, units, revenue) of an operation over all periods.

        Whole rankings are kept for operations of up to RANKED_PRODUCTS_MAX products, so the usual
        question costs no query at all; larger ones are asked of DuckDB each time.
        """
        if self.operations[operation][0] > RANKED_PRODUCTS_MAX:
            return _query(data, _RANKING_SQL.format(metric=metric) + " LIMIT ?", [operation, n])
        ranking = self._rankings.get((operation, metric))
        if ranking is None:  # two threads may both compute it once: same result, no lock needed
            ranking = _query(data, _RANKING_SQL.format(metric=metric), [operation])
            self._rankings[(operation, metric)] = ranking
        return ranking[:n]


_RANKING_SQL = (
    "SELECT product_id, product_name, units, revenue FROM totals WHERE operation = ? "
    "ORDER BY {metric} DESC, product_id"
)


_catalogs: OrderedDict[tuple[str, str], _Catalog] = OrderedDict()
_catalogs_lock = threading.Lock()


def _catalog(data: SalesData) -> _Catalog:
    """The product catalog of a version, built on first use and kept for the last few versions."""
    key = (data.version, str(data.cache_dir))
    with _catalogs_lock:
        found = _catalogs.get(key)
        if found is not None:
            _catalogs.move_to_end(key)
            return found
    catalog = _Catalog(data)
    with _catalogs_lock:
        _catalogs[key] = catalog
        while len(_catalogs) > 4:
            _catalogs.popitem(last=False)
    return catalog
