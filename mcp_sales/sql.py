"""SQL text helpers shared by the conversion and the query connection (no DuckDB import here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb


def lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The first row of a query that always returns one (an aggregate, a LIMIT 1 known to match)."""
    row = con.execute(sql).fetchone()
    assert row is not None
    return row
