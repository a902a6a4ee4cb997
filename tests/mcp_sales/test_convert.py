"""convert.py (through SalesStore): awkward files normalized, and errors a user can cause."""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import random
from pathlib import Path

import duckdb
import pytest

from mcp_sales.data import SalesData, SalesStore
from mcp_sales.errors import DataError
from mcp_sales.mapping import ColumnMapping, load_mapping, parse_column_overrides
from mcp_sales.models import RowsNoted


def rows_of(data: SalesData, sql: str) -> list[tuple[object, ...]]:
    with data.cursor() as cursor:
        return cursor.execute(sql).fetchall()


def test_awkward_export_is_normalized(awkward_data: SalesData) -> None:
    assert awkward_data.grain == "day"
    assert awkward_data.rows == 400 and awkward_data.dropped_rows == 1
    assert "Montréal" in awkward_data.operations and "São Paulo" in awkward_data.operations
    assert awkward_data.mapping.date_format == "%m/%d/%Y %H:%M"
    assert awkward_data.mapping.encoding == "cp1252"
    assert awkward_data.columns[:3] == ("ORDERNUMBER", "QUANTITYORDERED", "PRICEEACH")
    types = rows_of(awkward_data, "SELECT column_name, column_type FROM (DESCRIBE sales)")
    assert types == [
        ("operation", "VARCHAR"),
        ("product_id", "VARCHAR"),
        ("product_name", "VARCHAR"),
        ("period", "DATE"),
        ("units", "DOUBLE"),
        ("revenue", "DOUBLE"),
    ]
    operations = [r[0] for r in rows_of(awkward_data, "SELECT operation FROM sales")]
    assert operations == sorted(operations)  # sorted, so row groups prune on operation
    first = rows_of(awkward_data, "SELECT min(period) FROM sales")[0][0]
    assert first == awkward_data.first_period and isinstance(first, dt.date)


def test_dropped_rows_are_counted_and_logged(
    awkward_csv: Path, awkward_mapping: ColumnMapping, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mcp_sales.convert"):
        data = SalesStore(awkward_csv, awkward_mapping).current()
    assert data.dropped_rows == 1
    assert data.numbers.incomplete == RowsNoted(rows=1, first_row=18)  # the line without a quantity
    assert data.numbers.notes() == [
        "1 row has an empty operation, product, units or date (first: data row 18); it is left out"
    ]
    assert "dropped 1 of 400 rows of sales_export.csv" in caplog.text
    assert rows_of(data, "SELECT count(*) FROM sales")[0][0] == 399


def test_only_product_id_is_used_for_both(awkward_csv: Path) -> None:
    mapping = ColumnMapping(
        operation="CITY",
        product_id="PRODUCTCODE",
        product_name=None,
        units="QUANTITYORDERED",
        date="ORDERDATE",
    )
    data = SalesStore(awkward_csv, mapping).current()
    assert not data.has_revenue
    assert rows_of(
        data, "SELECT count(*) FROM sales WHERE product_name <> product_id OR revenue IS NOT NULL"
    ) == [(0,)]


def write_csv(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))
    return path


def test_day_first_dates_and_currency_numbers(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "eu.csv",
        "Store;Item;Qty;Amount;Day",
        ["Lyon;A-1;3;$1,234.50;24/02/2003", "Lyon;A-1;2;€99;03/02/2003", "Nice;B-2;1;-$5.00;31/12/2004"],
    )
    mapping = ColumnMapping(operation="Store", product_id="Item", units="Qty", revenue="Amount", date="Day")
    data = SalesStore(path, mapping).current()
    assert data.mapping.date_format == "%d/%m/%Y"
    assert rows_of(data, "SELECT period, revenue FROM sales ORDER BY period") == [
        (dt.date(2003, 2, 3), 99.0),
        (dt.date(2003, 2, 24), 1234.5),
        (dt.date(2004, 12, 31), -5.0),
    ]


def test_encodings(tmp_path: Path) -> None:
    header = "OPERATION_NAME,PRODUCT_ID,PRODUCT_NAME,UNITS_SOLD,CALENDAR_YEAR,CALENDAR_MONTH,REVENUE"
    rows = ["Zürich,P1,Crème brûlée,2,2020,1,3.5", "Montréal,P2,Café €,1,2020,2,1.25"]
    expected = ("Montréal", "Zürich")
    for encoding in ("utf-16", "utf-8-sig", "cp1252", "latin-1"):
        text_rows = rows if encoding != "latin-1" else [r.replace("€", "E") for r in rows]
        directory = tmp_path / encoding
        directory.mkdir()
        data = SalesStore(write_csv(directory / "s.csv", header, text_rows, encoding)).current()
        assert data.operations == expected, encoding
        names = {r[0] for r in rows_of(data, "SELECT product_name FROM sales")}
        assert "Crème brûlée" in names, encoding


def test_non_utf8_bytes_after_the_sampled_part(tmp_path: Path) -> None:
    filler = [f"Austin,P{i % 10},Widget,1,2021,{i % 12 + 1},2.0" for i in range(40_000)]  # > 1 MB of ASCII
    path = tmp_path / "late.csv"
    write_csv(
        path, "OPERATION_NAME,PRODUCT_ID,PRODUCT_NAME,UNITS_SOLD,CALENDAR_YEAR,CALENDAR_MONTH,REVENUE", filler
    )
    with path.open("ab") as f:
        f.write("Montréal,P1,Widget,1,2021,1,2.0\n".encode("cp1252"))
    data = SalesStore(path).current()
    assert data.operations == ("Austin", "Montréal")
    assert data.mapping.encoding == "cp1252"


def test_explicit_encoding_and_unknown_encoding(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "s.csv",
        "OPERATION_NAME,PRODUCT_ID,UNITS_SOLD,CALENDAR_YEAR,CALENDAR_MONTH",
        ["Kraków,P1,1,2020,1"],
        "cp1250",
    )
    data = SalesStore(path, ColumnMapping(encoding="cp1250")).current()
    assert data.operations == ("Kraków",)
    with pytest.raises(DataError, match=r"unknown encoding 'klingon' for s\.csv; use one like utf-8"):
        SalesStore(path, ColumnMapping(encoding="klingon"), cache_root=tmp_path / "c2").current()


def test_typed_parquet_with_a_date_column(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT 'Ops ' || (i % 3) AS site, (1000 + i % 4)::INTEGER AS sku, (i % 5 + 1)::BIGINT AS qty, "
        "DATE '2022-01-01' + INTERVAL (i) DAY AS sold_on FROM range(100) t(i)) "
        f"TO '{path}' (FORMAT parquet)"
    )
    mapping = ColumnMapping(
        operation="site", product_id="sku", product_name=None, units="qty", revenue=None, date="sold_on"
    )
    data = SalesStore(path, mapping).current()
    assert (data.grain, data.rows, data.first_period, data.last_period) == (
        "day",
        100,
        dt.date(2022, 1, 1),
        dt.date(2022, 4, 10),
    )
    assert rows_of(data, "SELECT sum(units), min(product_id) FROM sales") == [(300.0, "1000")]


# ----------------------------------------------------------------------------------------------
# Errors a user can cause


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "sales.csv"
    with pytest.raises(DataError) as info:
        SalesStore(path).current()
    assert (
        str(info.value)
        == f"data file {path} not found; pass --data PATH or copy the file there (mcpctl sync)"
    )


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a file; pass a CSV or Parquet file with --data PATH"):
        SalesStore(tmp_path).current()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "data file empty.csv is empty; export the sales data again"),
        (
            "header.csv",
            b"OPERATION_NAME,PRODUCT_ID,UNITS_SOLD,CALENDAR_YEAR,CALENDAR_MONTH\n",
            "has a header but no rows",
        ),
        ("junk.csv", random.Random(1).randbytes(4096), "is not a CSV or Parquet file (it looks binary)"),
        ("book.csv", b"PK\x03\x04" + bytes(200), "looks like an Excel or zip file; save it as CSV"),
        ("sales.csv.gz", gzip.compress(b"a,b\n1,2\n"), "is gzip-compressed; decompress it (gunzip)"),
        (
            "broken.parquet",
            b"PAR1" + random.Random(2).randbytes(300),
            "cannot read broken.parquet as Parquet (",
        ),
        (
            "text.parquet",
            b"a,b\n1,2\n",
            "data file text.parquet is not a valid Parquet file; export it again",
        ),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as info:
        SalesStore(tmp_path / name).current()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_csv(tmp_path: Path, sample_csv: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text(
        "OPERATION_NAME,PRODUCT_ID,UNITS_SOLD,CALENDAR_YEAR,CALENDAR_MONTH\n"
        'Dallas,P1,3,2020,1\nDallas,"P2,4,2020,2\nDallas,P3,1,2020,3,9,9\n',
        "utf-8",
    )
    with pytest.raises(DataError) as info:
        SalesStore(broken).current()
    assert str(info.value) == (
        "cannot read broken.csv as CSV: line 3 has an unbalanced quote; fix the file or export it again"
    )
    set_field(sample_csv, 20_000, 6, "1.00,extra")  # one line deep in the file has an extra field
    with pytest.raises(DataError) as info:
        SalesStore(sample_csv).current()
    assert str(info.value) == (
        "cannot read sales.csv as CSV: line 20001 has 8 fields but the header has 7; "
        "fix the file or export it again"
    )


def test_missing_column_names_it_and_the_fix(awkward_csv: Path) -> None:
    mapping = ColumnMapping(operation="CITY", product_id="PRODUCTCODE", units="QTY", date="ORDERDATE")
    with pytest.raises(DataError) as info:
        SalesStore(awkward_csv, mapping).current()
    assert str(info.value) == (
        "column 'QTY' (units) not found in sales_export.csv; columns are: ORDERNUMBER, QUANTITYORDERED, "
        "PRICEEACH, SALES, ORDERDATE, STATUS, PRODUCTLINE, PRODUCTCODE, CUSTOMERNAME, CITY; map it with "
        '--column units=QUANTITYORDERED or in mcp_sales.toml [columns] units = "QUANTITYORDERED"'
    )


def test_default_mapping_on_a_foreign_export_suggests_every_fix(awkward_csv: Path) -> None:
    with pytest.raises(DataError) as info:
        SalesStore(awkward_csv).current()
    message = str(info.value)
    assert message.startswith(
        "columns 'OPERATION_NAME' (operation), 'PRODUCT_ID' (product_id), 'UNITS_SOLD' (units)"
    )
    assert (
        "map them with --column operation=CITY --column product_id=PRODUCTCODE "
        "--column units=QUANTITYORDERED --column date=ORDERDATE or in mcp_sales.toml [columns]"
    ) in message
    # Following the advice works.
    overrides = parse_column_overrides(
        ["operation=CITY", "product_id=PRODUCTCODE", "units=QUANTITYORDERED", "date=ORDERDATE"]
    )
    assert SalesStore(awkward_csv, load_mapping(awkward_csv, overrides)).current().rows == 400


def test_column_names_match_case_insensitively(awkward_csv: Path) -> None:
    mapping = ColumnMapping(
        operation="city", product_id="productCode", units="quantityordered", date="OrderDate"
    )
    data = SalesStore(awkward_csv, mapping).current()
    assert data.mapping.operation == "CITY" and data.mapping.date == "ORDERDATE"


def set_field(path: Path, line: int, column: int, value: str, encoding: str = "utf-8") -> None:
    """Overwrite one field of one line (fields before ``column`` must not contain quoted commas)."""
    lines = path.read_bytes().decode(encoding).splitlines()
    parts = lines[line].split(",", column + 1)
    parts[column] = value
    lines[line] = ",".join(parts)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


def test_month_13(sample_csv: Path) -> None:
    set_field(sample_csv, 30_000, 5, "13")
    with pytest.raises(DataError) as info:
        SalesStore(sample_csv).current()
    assert str(info.value) == (
        "column 'CALENDAR_MONTH' (month) has the value 13 but months are whole numbers 1..12; "
        "fix those rows or map another column with --column month=COL"
    )


def test_units_not_a_number(sample_csv: Path) -> None:
    set_field(sample_csv, 500, 3, "lots")
    with pytest.raises(
        DataError, match=r"^column 'UNITS_SOLD' \(units\) has a value that is not a number: 'lots'"
    ):
        SalesStore(sample_csv).current()


def test_unparseable_dates(awkward_csv: Path, awkward_mapping: ColumnMapping) -> None:
    set_field(awkward_csv, 250, 4, "sometime in May", encoding="cp1252")
    with pytest.raises(DataError) as info:
        SalesStore(awkward_csv, awkward_mapping).current()
    assert str(info.value) == (
        "column 'ORDERDATE' (date) has values like 'sometime in May' that no known date format parses; "
        "pass the format with --date-format (strptime, e.g. '%d.%m.%Y') or date_format in mcp_sales.toml"
    )


def test_wrong_explicit_date_format(awkward_csv: Path) -> None:
    mapping = ColumnMapping(
        operation="CITY",
        product_id="PRODUCTCODE",
        units="QUANTITYORDERED",
        date="ORDERDATE",
        date_format="%Y-%m-%d",
    )
    with pytest.raises(DataError) as info:
        SalesStore(awkward_csv, mapping).current()
    assert str(info.value).startswith("column 'ORDERDATE' (date) has the value '")
    assert "does not match the date format '%Y-%m-%d'; pass the right one with --date-format" in str(
        info.value
    )
