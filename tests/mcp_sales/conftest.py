"""Fixtures for the mcp_sales tests: real data files in temporary directories.

- the reference sample (``generate_sample``), as CSV and as Parquet;
- an "awkward" user export: other column names, one ``2/24/2003 0:00`` order-date column, cp1252
  text with non-ASCII cities, quoted commas, a gap-filled calendar and a row without a quantity.

Session fixtures hand out prepared ``SalesData`` for read-only tests; per-test fixtures copy files into
``tmp_path`` for tests that change them.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path

import pytest

from mcp_sales.data import SalesData, SalesStore
from mcp_sales.mapping import ColumnMapping, load_mapping
from mcp_sales.sample import generate_sample

AWKWARD_OVERRIDES = {
    "operation": "CITY",
    "product_id": "PRODUCTCODE",
    "product_name": "PRODUCTLINE",
    "units": "QUANTITYORDERED",
    "revenue": "SALES",
    "date": "ORDERDATE",
}

_CITIES = ("NYC", "Montréal", "Reims", "São Paulo", "Köln", "San Rafael", "San Francisco")
_PRODUCTS = {  # code -> (line, price)
    "S10_1678": ("Motorcycles", 95.70),
    "S10_1949": ("Classic Cars", 214.30),
    "S12_1099": ("Classic Cars", 194.57),
    "S18_1749": ("Vintage Cars", 170.00),
    "S24_2000": ("Motorcycles", 76.17),
    "S700_1138": ("Ships", 58.00),
    "S72_3212": ("Planes", 54.40),
}
# Sold in Reims only: "no sales in NYC" is a real case.
_ONLY_IN_REIMS = "S72_3212"


def write_awkward_export(path: Path, rows: int = 400, seed: int = 3) -> Path:
    """A cp1252 export shaped like a typical order-line report (one row per order line)."""
    rng = random.Random(seed)
    lines = [
        "ORDERNUMBER,QUANTITYORDERED,PRICEEACH,SALES,ORDERDATE,STATUS,PRODUCTLINE,PRODUCTCODE,CUSTOMERNAME,CITY"
    ]
    start = dt.date(2003, 1, 6)
    for i in range(rows):
        code = rng.choice(sorted(_PRODUCTS))
        city = "Reims" if code == _ONLY_IN_REIMS else rng.choice(_CITIES)
        line, price = _PRODUCTS[code]
        # Skip some stretches so monthly series have gaps to fill.
        day = start + dt.timedelta(days=rng.randrange(0, 880))
        if dt.date(2004, 3, 1) <= day < dt.date(2004, 5, 1) and city == "NYC":
            day = day.replace(year=2003)
        quantity = rng.randint(6, 66)
        each = round(price * rng.uniform(0.9, 1.1), 2)
        customer = rng.choice(('"Land of Toys, Inc."', "Reims Collectables", '"Euro Shopping, Ltd"'))
        qty_text = "" if i == 17 else str(quantity)  # one line without a quantity: dropped and counted
        date_text = f"{day.month}/{day.day}/{day.year} 0:00"
        lines.append(
            f"{10100 + i},{qty_text},{each:.2f},{quantity * each:.2f},{date_text},Shipped,{line},{code},"
            f"{customer},{city}"
        )
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return path


@pytest.fixture(scope="session")
def sample_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference sample, generated once per test session (never modified)."""
    path = tmp_path_factory.mktemp("sample") / "sample_sales_data.csv"
    generate_sample(path)
    return path


@pytest.fixture(scope="module")
def sales_csv(tmp_path_factory: pytest.TempPathFactory, sample_master: Path) -> Path:
    """A copy of the reference sample shared by one test module (its cache stays beside it)."""
    target = tmp_path_factory.mktemp("module-data") / "sales.csv"
    shutil.copyfile(sample_master, target)
    return target


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory shared by one test module."""
    return tmp_path_factory.mktemp("module-cache")


@pytest.fixture
def sample_csv(tmp_path: Path, sample_master: Path) -> Path:
    """A private copy of the reference sample in ``tmp_path/data``."""
    target = tmp_path / "data" / "sales.csv"
    target.parent.mkdir()
    shutil.copyfile(sample_master, target)
    return target


@pytest.fixture(scope="session")
def small_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sample (2,000 transaction lines) for tests that convert many times."""
    path = tmp_path_factory.mktemp("small") / "small.csv"
    generate_sample(path, rows=2_000)
    return path


@pytest.fixture
def small_csv(tmp_path: Path, small_master: Path) -> Path:
    """A private copy of the small sample in ``tmp_path/data``."""
    target = tmp_path / "data" / "sales.csv"
    target.parent.mkdir()
    shutil.copyfile(small_master, target)
    return target


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory, sample_master: Path) -> SalesData:
    """The reference sample, prepared (read-only use)."""
    path = tmp_path_factory.mktemp("sample_prepared") / "sales.csv"
    shutil.copyfile(sample_master, path)
    return SalesStore(path).current()


@pytest.fixture
def awkward_csv(tmp_path: Path) -> Path:
    """A fresh awkward export in ``tmp_path/export``."""
    target = tmp_path / "export" / "sales_export.csv"
    target.parent.mkdir()
    return write_awkward_export(target)


@pytest.fixture
def awkward_mapping() -> ColumnMapping:
    """The mapping that fits the awkward export."""
    return ColumnMapping(**AWKWARD_OVERRIDES)


@pytest.fixture(scope="session")
def awkward_data(tmp_path_factory: pytest.TempPathFactory) -> SalesData:
    """The awkward export, prepared with its mapping (read-only use)."""
    path = write_awkward_export(tmp_path_factory.mktemp("awkward") / "sales_export.csv")
    return SalesStore(path, load_mapping(path, AWKWARD_OVERRIDES)).current()


@pytest.fixture(scope="session")
def parquet_data(tmp_path_factory: pytest.TempPathFactory) -> SalesData:
    """A transaction-level sample (several lines per month) stored as Parquet, prepared."""
    path = tmp_path_factory.mktemp("parquet") / "sales.parquet"
    generate_sample(path, rows=90_000, seed=11)
    return SalesStore(path).current()
