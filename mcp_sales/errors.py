"""Errors the server turns into MCP tool errors.

Every message is one sentence that says what is wrong and what to do; the server passes it to the
model verbatim, so it must be something a model (or a person) can act on.
"""

from __future__ import annotations


class SalesError(Exception):
    """Base class: an expected failure with an actionable message."""


class DataError(SalesError):
    """The data file is missing, unreadable, or does not fit the column mapping."""


class InvalidInput(SalesError):
    """A tool argument is out of range or malformed (n=-3, a bad date, an unknown operation)."""


class ForecastError(SalesError):
    """A forecast cannot be made (too little history, horizon out of bounds, deadline passed)."""
