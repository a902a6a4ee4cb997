"""The column mapping: which column of a user's export holds each field the server needs.

Layers, later ones win: the defaults (the reference schema), a mapping file beside the data
(``mcp_sales.toml`` or ``mcp_sales.json``), then ``--column FIELD=COLUMN`` options. Once a file's
header is known, :func:`resolve_columns` matches the mapping against it and, when a column is missing,
says which option would fix it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_sales.errors import DataError, InvalidInput

FIELDS = ("operation", "product_id", "product_name", "units", "revenue", "year", "month", "date")
OPTIONS = ("date_format", "encoding")  # mapping keys that are not columns
MAPPING_FILES = ("mcp_sales.toml", "mcp_sales.json")


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each field; defaults are the reference schema.

    When ``date`` is set, ``year`` and ``month`` are ignored (cleared on construction).

    Raises:
        DataError: neither product column, or no complete time column, is mapped.
    """

    operation: str = "OPERATION_NAME"
    product_id: str | None = "PRODUCT_ID"
    product_name: str | None = "PRODUCT_NAME"
    units: str = "UNITS_SOLD"
    revenue: str | None = "REVENUE"
    year: str | None = "CALENDAR_YEAR"
    month: str | None = "CALENDAR_MONTH"
    date: str | None = None
    date_format: str | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        if self.date is not None:
            object.__setattr__(self, "year", None)
            object.__setattr__(self, "month", None)
        if not self.operation or not self.units:
            raise DataError(
                "the column mapping needs operation and units; map them with --column operation=COL"
            )
        if self.product_id is None and self.product_name is None:
            raise DataError(
                "the column mapping needs a product column; map one with --column product_id=COL "
                "or --column product_name=COL"
            )
        if self.date is None and (self.year is None or self.month is None):
            raise DataError(
                "the column mapping needs a time column; map one date column with --column date=COL "
                "or both --column year=COL and --column month=COL"
            )

    def as_dict(self) -> dict[str, str]:
        """Field -> source column, for the fields that are mapped."""
        return {name: value for name in FIELDS if (value := getattr(self, name)) is not None}

    def key(self) -> str:
        """A canonical text of the whole mapping (part of the data version)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _mapping_from(values: Mapping[str, Any]) -> ColumnMapping:
    return ColumnMapping(**values)


def parse_column_overrides(items: Sequence[str]) -> dict[str, str]:
    """Parse ``--column FIELD=COLUMN`` options (later ones win).

    ``date_format=...`` and ``encoding=...`` are accepted too. An empty column (``revenue=``) unmaps
    an optional field.

    Raises:
        InvalidInput: an item is not ``FIELD=COLUMN`` or names an unknown field.
    """
    known = FIELDS + OPTIONS
    result: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise InvalidInput(
                f"--column {item!r} is not FIELD=COLUMN; write it like --column units=QUANTITYORDERED "
                f"(fields: {', '.join(known)})"
            )
        if name not in known:
            raise InvalidInput(
                f"--column {item!r} names an unknown field {name!r}; fields are: {', '.join(known)}"
            )
        if not column.strip() and name in ("operation", "units"):
            raise InvalidInput(f"--column {item!r} needs a column name after '='; {name} is required")
        result[name] = column.strip()
    return result


def load_mapping(data_path: Path, overrides: Mapping[str, str] | None = None) -> ColumnMapping:
    """The column mapping for a data file: defaults <- mapping file beside the data <- overrides.

    The mapping file is ``mcp_sales.toml`` (a ``[columns]`` table) or ``mcp_sales.json``
    (``{"columns": {...}}``) in the data file's directory. In each layer, mapping ``date`` drops
    year/month and mapping year/month drops ``date``; an empty value unmaps an optional field.

    Raises:
        DataError: the mapping file is malformed or names an unknown field, or the result is incomplete.
    """
    values: dict[str, str | None] = dict(dataclasses.asdict(ColumnMapping()))
    defaults = dict(values)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    found = _read_mapping_file(Path(data_path).parent)
    if found is not None:
        layers.append(found)
    if overrides:
        layers.append(("--column", overrides))
    for origin, layer in layers:
        for name, column in layer.items():
            if name not in FIELDS + OPTIONS:
                raise DataError(
                    f"{origin} maps an unknown field {name!r}; fields are: {', '.join(FIELDS + OPTIONS)}"
                )
            if column is not None and not isinstance(column, str):
                raise DataError(f"{origin}: {name} must be a column name in quotes, not {column!r}")
            values[name] = column.strip() if column and column.strip() else None
        if values["date"] and "date" in layer:
            values["year"] = values["month"] = None
        elif "year" in layer or "month" in layer:
            values["date"] = None
            for part in ("year", "month"):
                if part not in layer and values[part] is None:
                    values[part] = defaults[part]
    try:
        return _mapping_from(values)
    except DataError as exc:
        where = " or ".join(origin for origin, _ in layers) or "the default mapping"
        raise DataError(f"{where}: {exc}") from None


def _read_mapping_file(directory: Path) -> tuple[str, Mapping[str, Any]] | None:
    """The ``columns`` table of the mapping file in ``directory`` as (file path, table), if any."""
    present = [directory / name for name in MAPPING_FILES if (directory / name).is_file()]
    if not present:
        return None
    if len(present) > 1:
        raise DataError(
            f"both {present[0]} and {present[1]} exist; keep one mapping file and delete the other"
        )
    path = present[0]
    try:
        raw = path.read_bytes()
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - exercised on 3.10 only
                import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
            document: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            document = json.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read mapping file {path} ({exc.strerror}); fix its permissions") from None
    except ValueError as exc:  # TOMLDecodeError, JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"mapping file {path} is malformed ({exc}); fix it or delete it") from None
    columns = document.get("columns") if isinstance(document, dict) else None
    if not isinstance(columns, dict):
        example = (
            '[columns] operation = "CITY"' if path.suffix == ".toml" else '{"columns": {"operation": "CITY"}}'
        )
        raise DataError(f"mapping file {path} has no columns table; add one, e.g. {example}")
    return str(path), columns


# --------------------------------------------------------------------------------------------------
# Matching a mapping against a file's columns


def resolve_columns(mapping: ColumnMapping, columns: tuple[str, ...], name: str) -> ColumnMapping:
    """The mapping with each column spelled as in the file.

    A column matches exactly, else case-insensitively. Optional fields left at their default
    (product_id, product_name, revenue) are unmapped when the file lacks them.

    Raises:
        DataError: a mapped column is missing, listing the file's columns and the option to fix it.
    """
    by_folded: dict[str, list[str]] = {}
    for column in columns:
        by_folded.setdefault(column.strip().casefold(), []).append(column)
    defaults = ColumnMapping()
    resolved: dict[str, str | None] = {}
    missing: list[str] = []
    for field_name in FIELDS:
        wanted = getattr(mapping, field_name)
        if wanted is None:
            continue
        matches = [wanted] if wanted in columns else by_folded.get(wanted.strip().casefold(), [])
        if len(matches) == 1:
            resolved[field_name] = matches[0]
        elif field_name in ("product_id", "product_name", "revenue") and wanted == getattr(
            defaults, field_name
        ):
            resolved[field_name] = None
        else:
            missing.append(field_name)
    no_product = resolved.get("product_id") is None and resolved.get("product_name") is None
    if no_product and not {"product_id", "product_name"} & set(missing):
        missing.insert(1 if missing[:1] == ["operation"] else 0, "product_id")
    if missing:
        raise DataError(_missing_columns_message(mapping, missing, columns, name))
    return _mapping_from({**dataclasses.asdict(mapping), **resolved})


# Column names often used for each field in exports, for the suggestion in the error message.
_ALIASES = {
    "operation": (
        "city",
        "operation",
        "store",
        "site",
        "location",
        "branch",
        "region",
        "territory",
        "market",
    ),
    "product_id": ("productcode", "product_code", "sku", "productid", "item", "itemcode", "code"),
    "product_name": ("productname", "product", "productline", "item_name", "description", "name"),
    "units": ("quantityordered", "quantity", "qty", "units", "unitssold", "volume"),
    "revenue": ("sales", "revenue", "amount", "total", "net_sales", "value"),
    "year": ("year", "yr", "year_id", "calendar_year"),
    "month": ("month", "month_id", "mon", "calendar_month"),
    "date": ("orderdate", "order_date", "date", "invoice_date", "sale_date", "day"),
}


def _suggest(field_name: str, columns: tuple[str, ...]) -> str:
    """A plausible source column for a field, or ``COL``."""
    import difflib

    folded = {c.casefold().replace(" ", "_"): c for c in columns}
    for alias in _ALIASES[field_name]:
        for key, column in folded.items():
            if key == alias or key.replace("_", "") == alias.replace("_", ""):
                return column
    for alias in _ALIASES[field_name]:
        for key, column in folded.items():
            if len(alias) >= 4 and alias in key:  # short aliases ("qty", "mon") only match whole names
                return column
    close = difflib.get_close_matches(field_name, list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else "COL"


def _missing_columns_message(
    mapping: ColumnMapping, missing: list[str], columns: tuple[str, ...], name: str
) -> str:
    fixes: list[str] = []
    for field_name in missing:
        if field_name in ("year", "month") and mapping.date is None:
            guess = _suggest("date", columns)
            if guess != "COL" and "year" in missing and "month" in missing:
                fixes.append(f"date={guess}")
                continue
        fixes.append(f"{field_name}={_suggest(field_name, columns)}")
    fixes = list(dict.fromkeys(fixes))
    listed = ", ".join(columns)
    if len(missing) == 1:
        wanted = getattr(mapping, missing[0]) or missing[0].upper()
        fix = fixes[0]
        toml = f'{fix.split("=", 1)[0]} = "{fix.split("=", 1)[1]}"'
        return (
            f"column {wanted!r} ({missing[0]}) not found in {name}; columns are: {listed}; "
            f"map it with --column {fix} or in mcp_sales.toml [columns] {toml}"
        )
    wanted = ", ".join(f"{getattr(mapping, m) or m.upper()!r} ({m})" for m in missing)
    options = " ".join(f"--column {fix}" for fix in fixes)
    return (
        f"columns {wanted} not found in {name}; columns are: {listed}; "
        f"map them with {options} or in mcp_sales.toml [columns]"
    )
