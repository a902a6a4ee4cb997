"""Errors the server turns into MCP tool errors.

Every message is one sentence that says what is wrong and what to do; the server passes it to the
model verbatim, so it must be something a model (or a person) can act on.
"""

from __future__ import annotations

import json

# How much of a caller's value an error message repeats: enough to recognise it, never a flood.
ECHO_MAX_CHARS = 80


class SalesError(Exception):
    """Base class: an expected failure with an actionable message."""


class DataError(SalesError):
    """The data file is missing, unreadable, or does not fit the column mapping."""


class InvalidInput(SalesError):
    """A tool argument is out of range or malformed (n=-3, a bad date, an unknown operation)."""


class ForecastError(SalesError):
    """A forecast cannot be made (too little history, horizon out of bounds, deadline passed)."""


def echo(value: object) -> str:
    """A caller's value as an error message quotes it, cut to ``ECHO_MAX_CHARS`` characters plus "…".

    Text is quoted (``'Dalas'``); anything else is written as JSON, the way the caller sent it (``1.5``,
    ``null``, ``true``). Every message that repeats user input goes through here, so a 5 MB name comes
    back as 80 characters.
    """
    if isinstance(value, str):
        return repr(value if len(value) <= ECHO_MAX_CHARS else value[:ECHO_MAX_CHARS] + "…")
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON (a date, a NaN): Python's spelling then
        text = repr(value)
    return text if len(text) <= ECHO_MAX_CHARS else text[:ECHO_MAX_CHARS] + "…"
