"""A client config file's JSON: read strictly, compared strictly, written back in the file's own style.

The apps parse these files with ``JSON.parse``, so what Python would let through and they would not
(``NaN``, a key given twice) is refused rather than carried on. A file read here remembers its
indent, line endings, byte order mark, mode and owner, so that the rewritten file looks and behaves
like the one it replaces. Nothing here writes a file or knows what an entry means.
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import ClientConfigError

SERVERS_KEY = "mcpServers"
_INDENT_RE = re.compile(r"\s*\{[ \t]*\r?\n([ \t]+)\S")
_FIX_OR_MOVE = "fix it or move it away, then re-run"


@dataclass(frozen=True)
class Document:
    """One client config file as read, with what its rewrite must keep.

    Attributes:
        path: The file (a symlink's target).
        raw: Its bytes; ``None`` when the file does not exist.
        data: The parsed top-level object (``{}`` for a missing or blank file).
        indent: The indent of its first nested line (two spaces by default).
        newline: ``\\r\\n`` when the file uses it, else ``\\n``.
        bom: Whether it starts with a UTF-8 byte order mark.
        mode: Its permission bits; ``None`` for a new file.
        owner: Its ``(uid, gid)``; ``None`` for a new file.
    """

    path: Path
    raw: bytes | None
    data: dict[str, Any]
    indent: str = "  "
    newline: str = "\n"
    bom: bool = False
    mode: int | None = None
    owner: tuple[int, int] | None = None

    @property
    def text(self) -> str:
        """The file's text without a byte order mark; empty for a new file."""
        return self.raw.decode("utf-8-sig") if self.raw is not None else ""

    def encode(self, text: str) -> bytes:
        """``text`` as this file's bytes (with its byte order mark, if it had one)."""
        return (codecs.BOM_UTF8 if self.bom else b"") + text.encode("utf-8")

    def copy_owner_to(self, path: Path) -> None:
        """Give ``path`` this file's owner, where possible (best effort)."""
        # Run with sudo, a replaced file would become root's and unreadable by the app.
        if self.owner is not None and hasattr(os, "chown"):
            with contextlib.suppress(OSError):
                os.chown(path, *self.owner)


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _ConstantError(ValueError):
    def __init__(self, constant: str) -> None:
        super().__init__(constant)
        self.constant = constant


def _reject_constant(constant: str) -> Any:
    # Python accepts NaN/Infinity, the apps' JSON.parse does not: such a file is broken for them too.
    raise _ConstantError(constant)


def _pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; writing that back would silently drop data.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def ordered_equal(a: object, b: object) -> bool:
    """Compare two JSON values strictly: same types (``1`` is not ``1.0`` or ``true``) and key order.

    Args:
        a: A value as returned by ``json.loads``.
        b: Another such value.

    Returns:
        True when both would serialize to the same JSON text.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(ordered_equal(a[key], b[key]) for key in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(ordered_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def parse_config(text: str, *, name: str, key: str = SERVERS_KEY) -> dict[str, Any]:
    """Parse a client config's text; blank text is an empty config.

    Args:
        text: The file's text (without a byte order mark).
        name: The file name, for messages.
        key: The key holding the servers, which must be an object when present.

    Returns:
        The top-level object, key order preserved.

    Raises:
        ClientConfigError: The text is not JSON, has a duplicate key, or has the wrong shape.
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text, object_pairs_hook=_pairs_to_dict, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        comments = " (comments are not supported)" if err.pos < len(text) and text[err.pos] == "/" else ""
        raise ClientConfigError(
            f"{name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}){comments}",
            hint=_FIX_OR_MOVE,
        ) from None
    except _ConstantError as err:
        raise ClientConfigError(
            f"{name} is not valid JSON ({err.constant} is not a JSON value)", hint=_FIX_OR_MOVE
        ) from None
    except _DuplicateKeyError as err:
        raise ClientConfigError(
            f'{name} has the key "{err.key}" twice in one object', hint="remove one of them, then re-run"
        ) from None
    if not isinstance(data, dict):
        raise ClientConfigError(f"{name} does not hold a JSON object at the top level", hint=_FIX_OR_MOVE)
    if key in data and not isinstance(data[key], dict):
        raise ClientConfigError(f'"{key}" in {name} is not a JSON object', hint=_FIX_OR_MOVE)
    return data


def with_server(
    config: Mapping[str, Any], name: str, entry: Mapping[str, Any], key: str = SERVERS_KEY
) -> dict[str, Any]:
    """Return a copy of ``config`` whose ``key`` object maps ``name`` to ``entry``.

    An existing entry keeps its position; a new one goes last; a missing ``key`` object is added last.
    """
    result = dict(config)
    servers = dict(result.get(key) or {})
    servers[name] = copy.deepcopy(dict(entry))
    result[key] = servers
    return result


def without_server(config: Mapping[str, Any], name: str, key: str = SERVERS_KEY) -> dict[str, Any]:
    """Return a copy of ``config`` without ``name`` in its ``key`` object (kept, even when empty)."""
    result = dict(config)
    if isinstance(result.get(key), dict):
        result[key] = {k: v for k, v in result[key].items() if k != name}
    return result


def render(data: Mapping[str, Any], *, indent: str = "  ", newline: str = "\n") -> str:
    """Serialize a config the way the apps write it: indented, non-ASCII kept readable, final newline."""
    text = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
    # JSON strings escape their own newlines, so every raw newline here is layout.
    return text.replace("\n", newline) if newline != "\n" else text


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or ``None`` when it does not exist.

    Raises:
        ClientConfigError: It exists but cannot be read.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ClientConfigError(
            f"cannot read {path} ({err.strerror or err})",
            hint="check that it is a readable file, then re-run",
        ) from err


def read_document(path: Path, key: str = SERVERS_KEY) -> Document:
    """Read and parse a client config file (a missing file is an empty, new document).

    Raises:
        ClientConfigError: The file cannot be read, is not UTF-8, or does not parse (see
            :func:`parse_config`).
    """
    raw = read_bytes(path)
    if raw is None:
        return Document(path, None, {})
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ClientConfigError(
            f"{path.name} is not UTF-8 text", hint="save it as UTF-8 or move it away, then re-run"
        ) from None
    data = parse_config(text, name=path.name, key=key)
    try:
        info = path.stat()
    except OSError as err:
        raise ClientConfigError(
            f"cannot read {path} ({err.strerror or err})", hint="check it, then re-run"
        ) from err
    match = _INDENT_RE.match(text)
    return Document(
        path=path,
        raw=raw,
        data=data,
        indent=match.group(1) if match else "  ",
        newline="\r\n" if "\r\n" in text else "\n",
        bom=raw.startswith(codecs.BOM_UTF8),
        mode=stat.S_IMODE(info.st_mode),
        owner=(info.st_uid, info.st_gid),
    )
