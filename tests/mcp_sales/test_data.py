"""data.py: column mapping, conversion of awkward files, errors a user can cause, caching and versions."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from mcp_sales.data import (
    FIELDS,
    ColumnMapping,
    SalesData,
    SalesStore,
    load_mapping,
    parse_column_overrides,
)
from mcp_sales.errors import DataError, InvalidInput


def rows_of(data: SalesData, sql: str) -> list[tuple[object, ...]]:
    with data.cursor() as cursor:
        return cursor.execute(sql).fetchall()


def version_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and len(p.name) == 12)


# ----------------------------------------------------------------------------------------------
# Column mapping


def test_parse_column_overrides() -> None:
    parsed = parse_column_overrides(
        ["operation=CITY", " Units = QUANTITYORDERED ", "revenue=", "date_format=%d/%m/%Y"]
    )
    assert parsed == {
        "operation": "CITY",
        "units": "QUANTITYORDERED",
        "revenue": "",
        "date_format": "%d/%m/%Y",
    }


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("CITY", "--column 'CITY' is not FIELD=COLUMN; write it like --column units=QUANTITYORDERED"),
        ("=CITY", "--column '=CITY' is not FIELD=COLUMN"),
        (
            "city=CITY",
            "--column 'city=CITY' names an unknown field 'city'; fields are: operation, product_id",
        ),
        ("units=", "--column 'units=' needs a column name after '='; units is required"),
    ],
)
def test_parse_column_overrides_rejects(item: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_column_overrides([item])
    assert str(info.value).startswith(message)


def test_defaults_are_the_reference_schema(tmp_path: Path) -> None:
    mapping = load_mapping(tmp_path / "sales.csv")
    assert mapping == ColumnMapping()
    assert mapping.as_dict() == {
        "operation": "OPERATION_NAME",
        "product_id": "PRODUCT_ID",
        "product_name": "PRODUCT_NAME",
        "units": "UNITS_SOLD",
        "revenue": "REVENUE",
        "year": "CALENDAR_YEAR",
        "month": "CALENDAR_MONTH",
    }
    assert set(mapping.as_dict()) <= set(FIELDS)


def test_mapping_file_beside_the_data_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "mcp_sales.toml").write_text(
        '[columns]\noperation = "CITY"\nunits = "QTY"\ndate = "ORDERDATE"\nrevenue = ""\n', "utf-8"
    )
    mapping = load_mapping(tmp_path / "sales.csv")
    assert (mapping.operation, mapping.units, mapping.date, mapping.revenue) == (
        "CITY",
        "QTY",
        "ORDERDATE",
        None,
    )
    assert mapping.year is None and mapping.month is None  # a date column replaces year + month
    assert "year" not in mapping.as_dict()
    overridden = load_mapping(tmp_path / "sales.csv", {"units": "QUANTITYORDERED", "year": "YEAR_ID"})
    assert overridden.units == "QUANTITYORDERED"
    # Mapping year in a later layer switches back to year + month (month keeps its default).
    assert (overridden.date, overridden.year, overridden.month) == (None, "YEAR_ID", "CALENDAR_MONTH")


def test_json_mapping_file(tmp_path: Path) -> None:
    (tmp_path / "mcp_sales.json").write_text(
        json.dumps({"columns": {"product_name": None, "units": "Q"}}), "utf-8"
    )
    mapping = load_mapping(tmp_path / "x.csv")
    assert (mapping.product_name, mapping.product_id, mapping.units) == (None, "PRODUCT_ID", "Q")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("mcp_sales.toml", "[columns\nunits = 1", r"mapping file .*mcp_sales.toml is malformed \("),
        (
            "mcp_sales.toml",
            'units = "Q"\n',
            r"mcp_sales.toml has no columns table; add one, e.g. \[columns\]",
        ),
        (
            "mcp_sales.toml",
            '[columns]\nqty = "Q"\n',
            r"mcp_sales.toml maps an unknown field 'qty'; fields are: ",
        ),
        (
            "mcp_sales.toml",
            "[columns]\nunits = 3\n",
            r"mcp_sales.toml: units must be a column name in quotes, not 3",
        ),
        ("mcp_sales.json", '{"columns": ["units"]}', r"mcp_sales.json has no columns table"),
        ("mcp_sales.json", "{not json", r"mapping file .*mcp_sales.json is malformed"),
        ("mcp_sales.toml", '[columns]\nproduct_id = ""\nproduct_name = ""\n', r"needs a product column"),
    ],
)
def test_bad_mapping_file(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content, "utf-8")
    with pytest.raises(DataError, match=message):
        load_mapping(tmp_path / "sales.csv")


def test_two_mapping_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "mcp_sales.toml").write_text("[columns]\n", "utf-8")
    (tmp_path / "mcp_sales.json").write_text('{"columns": {}}', "utf-8")
    with pytest.raises(DataError, match="keep one mapping file"):
        load_mapping(tmp_path / "sales.csv")


def test_unknown_override_field_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--column maps an unknown field 'qty'"):
        load_mapping(tmp_path / "sales.csv", {"qty": "Q"})


def test_column_mapping_invariants() -> None:
    assert ColumnMapping(date="D").as_dict()["date"] == "D"
    assert ColumnMapping(date="D").year is None
    with pytest.raises(DataError, match="needs a product column"):
        ColumnMapping(product_id=None, product_name=None)
    with pytest.raises(DataError, match="needs a time column"):
        ColumnMapping(month=None)


# ----------------------------------------------------------------------------------------------
# Conversion: awkward files


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
    with caplog.at_level(logging.WARNING, logger="mcp_sales.data"):
        data = SalesStore(awkward_csv, awkward_mapping).current()
    assert data.dropped_rows == 1
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


def test_ambiguous_sample_falls_back_to_the_next_date_format(tmp_path: Path) -> None:
    # The first 50,000 dates all have day <= 12, so month-first fits the sample; a later one does not.
    rows = [f"X,P,1,{(i % 12) + 1:02d}/{(i % 7) + 1:02d}/2004" for i in range(50_000)]
    path = write_csv(tmp_path / "late.csv", "OP,PID,UNITS,DATE", [*rows, "X,P,1,25/01/2004"])
    mapping = ColumnMapping(operation="OP", product_id="PID", units="UNITS", revenue=None, date="DATE")
    data = SalesStore(path, mapping).current()
    assert data.mapping.date_format == "%d/%m/%Y"
    assert data.last_period == dt.date(2004, 7, 12)  # read day-first: 12/07/2004


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


# ----------------------------------------------------------------------------------------------
# Caching and versions


def test_second_store_reuses_the_conversion(small_csv: Path) -> None:
    first = SalesStore(small_csv)
    data = first.current()
    assert first.conversions == 1
    assert data.cache_dir == small_csv.parent / ".mcp_sales_cache" / data.version
    stamps = {p.name: p.stat().st_mtime_ns for p in data.cache_dir.iterdir()}
    second = SalesStore(small_csv)
    again = second.current()
    assert second.conversions == 0
    assert again.version == data.version and again.rows == data.rows
    assert {p.name: p.stat().st_mtime_ns for p in again.cache_dir.iterdir()} == stamps
    assert first.current() is data  # unchanged file: the same object, no work


_STORE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import duckdb  # imported up front so that racing children race on the conversion itself
    from mcp_sales.data import SalesStore
    store = SalesStore(Path(sys.argv[1]))
    if sys.argv[2:] == ["--wait"]:
        print("ready", flush=True)
        sys.stdin.readline()
    data = store.current()
    result = {"version": data.version, "conversions": store.conversions, "rows": data.rows}
    print(json.dumps(result), flush=True)
    """
)


def run_store(path: Path) -> dict[str, object]:
    """Open the store in a new Python process (as each SSH session does) and report what it did."""
    done = subprocess.run(
        [sys.executable, "-c", _STORE_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_new_process_reuses_the_conversion(small_csv: Path) -> None:
    data = SalesStore(small_csv).current()
    before = (data.cache_dir / "sales.parquet").stat().st_mtime_ns
    result = run_store(small_csv)
    assert result == {"version": data.version, "conversions": 0, "rows": 2_000}
    assert (data.cache_dir / "sales.parquet").stat().st_mtime_ns == before


def test_two_processes_starting_at_once(small_csv: Path) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _STORE_SCRIPT, str(small_csv), "--wait"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:  # both are imported and waiting: release them together
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert [child.returncode for child in children] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    assert results[0]["version"] == results[1]["version"]
    assert sorted(r["conversions"] for r in results) == [0, 1]  # one converted, the other waited and reused
    root = small_csv.parent / ".mcp_sales_cache"
    assert version_dirs(root) == [results[0]["version"]]
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_changed_file_gives_a_new_version_on_the_next_call(small_csv: Path) -> None:
    store = SalesStore(small_csv)
    old = store.current()
    with small_csv.open("a", encoding="utf-8") as f:
        f.write("Boise,P-9999,Kayak,3,2024,12,900.00\n")
    new = store.current()
    assert new.version != old.version
    assert new.rows == old.rows + 1 and "Boise" in new.operations
    assert store.conversions == 2


def test_touch_keeps_the_version(small_csv: Path) -> None:
    store = SalesStore(small_csv)
    old = store.current()
    st = small_csv.stat()
    os.utime(small_csv, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert store.current() is old
    assert store.conversions == 1
    # The index now knows the new mtime: another process opens without hashing or converting.
    assert run_store(small_csv)["conversions"] == 0


def test_keeps_the_last_two_versions(small_csv: Path) -> None:
    store = SalesStore(small_csv)
    seen = [store.current().version]
    for units in ("1", "2", "3"):
        with small_csv.open("a", encoding="utf-8") as f:
            f.write(f"Boise,P-9999,Kayak,{units},2024,12,900.00\n")
        seen.append(store.current().version)
    assert len(set(seen)) == 4
    assert version_dirs(small_csv.parent / ".mcp_sales_cache") == sorted(seen[-2:])


def test_mapping_file_change_is_picked_up(small_csv: Path) -> None:
    store = SalesStore(small_csv)
    old = store.current()
    assert old.has_revenue
    (small_csv.parent / "mcp_sales.toml").write_text('[columns]\nrevenue = ""\n', "utf-8")
    new = store.current()
    assert new.version != old.version and not new.has_revenue


def test_cache_falls_back_to_the_user_cache(
    small_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (small_csv.parent / ".mcp_sales_cache").write_text("in the way", "utf-8")  # cannot be a directory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = SalesStore(small_csv).current()
    assert data.cache_dir.parent == tmp_path / "xdg" / "mcp_sales"


@pytest.mark.parametrize("damage", ["meta.json", "agg.parquet"])
def test_damaged_version_is_rebuilt(small_csv: Path, damage: str) -> None:
    data = SalesStore(small_csv).current()
    (data.cache_dir / damage).write_bytes(b"PAR1 not really")
    again = SalesStore(small_csv)
    assert again.current().version == data.version
    assert again.conversions == 1
    assert SalesStore(small_csv).current().rows == data.rows


def test_cache_root_override_and_stale_work_dirs(small_csv: Path, tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"
    (root / "0123456789ab.tmp-crashed").mkdir(parents=True)
    data = SalesStore(small_csv, cache_root=root).current()
    assert data.cache_dir.parent == root
    assert not (root / "0123456789ab.tmp-crashed").exists()
    assert not (small_csv.parent / ".mcp_sales_cache").exists()


def test_pre_aggregate_sums_the_rows(sample_data: SalesData) -> None:
    assert rows_of(sample_data, "SELECT count(*), sum(lines), sum(units) FROM agg") == rows_of(
        sample_data, "SELECT count(*), count(*), sum(units) FROM sales"
    )
    assert rows_of(sample_data, "SELECT count(*) FROM totals") == [(20 * 25,)]
