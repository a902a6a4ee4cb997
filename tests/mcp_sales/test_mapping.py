"""mapping.py: the column mapping from defaults, mapping files and --column options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_sales.errors import DataError, InvalidInput
from mcp_sales.mapping import FIELDS, ColumnMapping, load_mapping, parse_column_overrides


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
