"""Careful edits of JSON client config files (Claude Desktop, Gemini CLI).

These files belong to the user and to a running app, and they often hold other servers' settings
(sometimes with tokens in them). So an edit here: refuses a file it cannot parse and leaves it alone,
changes only the one server entry it was asked about, keeps every other key and its order, backs the
old file up (keeping the last few), writes a temp file in the same directory and renames it over the
original (never a half-written file), keeps the file's mode, and reads the result back to check it.
Nothing here knows what an entry means; ``claude.py`` builds the entries.
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import difflib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from provision.errors import ClientConfigError

Action = Literal["added", "updated", "unchanged", "removed", "absent"]

SERVERS_KEY = "mcpServers"
KEEP_BACKUPS = 5
# A new file may later hold other servers' tokens: keep it private from the start.
NEW_FILE_MODE = 0o600
_BACKUP_RE = re.compile(r"^(\d{8}T\d{6})(?:-(\d+))?$")
_INDENT_RE = re.compile(r"\s*\{[ \t]*\r?\n([ \t]+)\S")


@dataclass(frozen=True)
class ConfigChange:
    """What an edit did (or, with ``dry_run``, would do) to one client config file.

    Attributes:
        path: The file edited (a symlink's target, when the configured path is a symlink).
        server_name: The key under ``mcpServers``.
        action: ``added``, ``updated``, ``unchanged``, ``removed`` or ``absent`` (nothing to remove).
        entry: The entry written, or the one removed; ``None`` when absent.
        backup: Copy of the previous file, when one was made.
        diff: Unified diff from the old text to the new one; empty when nothing changes.
        text: The complete new text, when the file is (or would be) written.
        dry_run: True when nothing was written.
    """

    path: Path
    server_name: str
    action: Action
    entry: dict[str, Any] | None
    backup: Path | None = None
    diff: str = ""
    text: str | None = None
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        """Whether the file's content is (or would be) different afterwards."""
        return self.action in ("added", "updated", "removed")


@dataclass(frozen=True)
class _Document:
    path: Path
    raw: bytes | None  # None: the file does not exist
    data: dict[str, Any]
    indent: str
    newline: str
    bom: bool
    mode: int | None
    owner: tuple[int, int] | None


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
        hint = " (comments are not supported)" if err.pos < len(text) and text[err.pos] == "/" else ""
        raise ClientConfigError(
            f"{name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}){hint};"
            " fix it or move it away, then re-run"
        ) from None
    except _ConstantError as err:
        raise ClientConfigError(
            f"{name} is not valid JSON ({err.constant} is not a JSON value);"
            " fix it or move it away, then re-run"
        ) from None
    except _DuplicateKeyError as err:
        raise ClientConfigError(
            f'{name} has the key "{err.key}" twice in one object; remove one of them, then re-run'
        ) from None
    if not isinstance(data, dict):
        raise ClientConfigError(
            f"{name} does not hold a JSON object at the top level; fix it or move it away, then re-run"
        )
    if key in data and not isinstance(data[key], dict):
        raise ClientConfigError(
            f'"{key}" in {name} is not a JSON object; fix it or move it away, then re-run'
        )
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


def set_server(
    path: Path,
    name: str,
    entry: Mapping[str, Any],
    *,
    is_ours: Callable[[object], bool],
    force: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
    keep_backups: int = KEEP_BACKUPS,
    key: str = SERVERS_KEY,
) -> ConfigChange:
    """Add or replace one server entry in a client config file (created when missing).

    Args:
        path: The config file.
        name: The server's key under ``key``.
        entry: The entry (JSON-compatible).
        is_ours: Tells whether an existing entry was written by us, so it may be replaced.
        force: Replace an existing entry even when ``is_ours`` says it is someone else's.
        dry_run: Compute the change and the new text, write nothing.
        now: Time stamp for the backup's name (default: now, local time).
        keep_backups: How many backups of this file to keep.
        key: The key holding the servers.

    Returns:
        The change; ``unchanged`` (and no backup) when the same entry is already there.

    Raises:
        ClientConfigError: The file is unreadable or invalid (it is left untouched), the name is
            taken by a foreign entry, or the file cannot be written or does not read back as written.
    """
    doc = _read(_target(path), key)
    servers: dict[str, Any] = doc.data.get(key, {})
    # The JSON round trip turns tuples into lists, so the entry compares equal to what reads back.
    new_entry: dict[str, Any] = json.loads(json.dumps(dict(entry), allow_nan=False))
    if name in servers:
        if ordered_equal(servers[name], new_entry):
            return ConfigChange(doc.path, name, "unchanged", new_entry, dry_run=dry_run)
        if not force and not is_ours(servers[name]):
            raise ClientConfigError(
                f'{doc.path.name} already has a server "{name}" that mcpctl did not write;'
                " choose another server name, or force the replacement"
            )
    action: Action = "updated" if name in servers else "added"
    new_data = with_server(doc.data, name, new_entry, key)
    return _commit(doc, new_data, name, new_entry, action, dry_run, now, keep_backups)


def remove_server(
    path: Path,
    name: str,
    *,
    is_ours: Callable[[object], bool],
    force: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
    keep_backups: int = KEEP_BACKUPS,
    key: str = SERVERS_KEY,
) -> ConfigChange:
    """Take one server entry out of a client config file; everything else stays as it is.

    Args:
        path: The config file (a missing file means there is nothing to remove).
        name: The server's key under ``key``.
        is_ours: Tells whether the entry was written by us.
        force: Remove the entry even when ``is_ours`` says it is someone else's.
        dry_run: Compute the change and the new text, write nothing.
        now: Time stamp for the backup's name (default: now, local time).
        keep_backups: How many backups of this file to keep.
        key: The key holding the servers.

    Returns:
        The change: ``removed`` with the old entry, or ``absent``.

    Raises:
        ClientConfigError: The file is unreadable or invalid (left untouched), the entry is someone
            else's, or the file cannot be written.
    """
    doc = _read(_target(path), key)
    servers: dict[str, Any] = doc.data.get(key, {})
    if name not in servers:
        return ConfigChange(doc.path, name, "absent", None, dry_run=dry_run)
    old_entry = servers[name]
    if not force and not is_ours(old_entry):
        raise ClientConfigError(
            f'the server "{name}" in {doc.path.name} was not written by mcpctl;'
            " leave it, or force the removal"
        )
    new_data = without_server(doc.data, name, key)
    return _commit(doc, new_data, name, old_entry, "removed", dry_run, now, keep_backups)


def _target(path: Path) -> Path:
    # Dotfile managers link these files; renaming over the link would silently unlink it.
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ClientConfigError(
            f"cannot read {path} ({err.strerror or err}); check that it is a readable file, then re-run"
        ) from err


def _read(path: Path, key: str) -> _Document:
    raw = _read_bytes(path)
    if raw is None:
        return _Document(path, None, {}, "  ", "\n", False, None, None)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ClientConfigError(
            f"{path.name} is not UTF-8 text; save it as UTF-8 or move it away, then re-run"
        ) from None
    data = parse_config(text, name=path.name, key=key)
    info = _stat(path)
    match = _INDENT_RE.match(text)
    return _Document(
        path=path,
        raw=raw,
        data=data,
        indent=match.group(1) if match else "  ",
        newline="\r\n" if "\r\n" in text else "\n",
        bom=raw.startswith(codecs.BOM_UTF8),
        mode=stat.S_IMODE(info.st_mode),
        owner=(info.st_uid, info.st_gid),
    )


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except OSError as err:
        raise ClientConfigError(f"cannot read {path} ({err.strerror or err}); check it, then re-run") from err


def _copy_owner(doc: _Document, path: Path) -> None:
    # Run with sudo, a replaced file would become root's and unreadable by the app; best effort only.
    if doc.owner is not None and hasattr(os, "chown"):
        with contextlib.suppress(OSError):
            os.chown(path, *doc.owner)


def _commit(
    doc: _Document,
    new_data: dict[str, Any],
    name: str,
    entry: dict[str, Any],
    action: Action,
    dry_run: bool,
    now: datetime | None,
    keep_backups: int,
) -> ConfigChange:
    new_text = render(new_data, indent=doc.indent, newline=doc.newline)
    old_text = doc.raw.decode("utf-8-sig") if doc.raw is not None else ""
    diff = "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=str(doc.path),
            tofile=f"{doc.path} (new)",
        )
    )
    if dry_run:
        return ConfigChange(doc.path, name, action, entry, None, diff, new_text, dry_run=True)
    payload = (codecs.BOM_UTF8 if doc.bom else b"") + new_text.encode("utf-8")
    try:
        doc.path.parent.mkdir(parents=True, exist_ok=True)
        backup = _backup(doc, now or datetime.now()) if doc.raw else None
        _atomic_replace(doc, payload)
    except OSError as err:
        raise ClientConfigError(
            f"cannot write {doc.path} ({err.strerror or err}); check that its folder is writable"
            " and no other program holds the file open, then re-run"
        ) from err
    _verify(doc, new_data, backup)
    _prune_backups(doc.path, keep_backups)
    return ConfigChange(doc.path, name, action, entry, backup, diff, new_text)


def _backup(doc: _Document, now: datetime) -> Path:
    assert doc.raw is not None
    stamp = now.strftime("%Y%m%dT%H%M%S")
    mode = doc.mode if doc.mode is not None else NEW_FILE_MODE
    for n in range(1000):
        candidate = doc.path.with_name(f"{doc.path.name}.bak-{stamp}" + (f"-{n}" if n else ""))
        try:
            # O_EXCL: two runs within the same second must not overwrite each other's backup.
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(doc.raw)
                out.flush()
                os.fsync(out.fileno())
            # The backup holds the same secrets as the original: same mode, whatever the umask says.
            os.chmod(candidate, mode)
        except BaseException:
            with contextlib.suppress(OSError):
                candidate.unlink()  # a truncated backup would be mistaken for a good one later
            raise
        _copy_owner(doc, candidate)
        return candidate
    raise ClientConfigError(f"too many backups of {doc.path.name} this second; remove some, then re-run")


def _atomic_replace(doc: _Document, payload: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=doc.path.parent, prefix=f".{doc.path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, doc.mode if doc.mode is not None else NEW_FILE_MODE)
        _copy_owner(doc, tmp)
        # The app may rewrite its config while running; never clobber a version we did not read.
        if _read_bytes(doc.path) != doc.raw:
            raise ClientConfigError(
                f"{doc.path.name} changed while mcpctl was updating it;"
                " quit the app that uses it, then re-run"
            )
        os.replace(tmp, doc.path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(doc.path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    # The file is already replaced; a file system that cannot sync a directory is no failure.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _verify(doc: _Document, expected: dict[str, Any], backup: Path | None) -> None:
    raw = _read_bytes(doc.path)
    try:
        data = json.loads(raw.decode("utf-8-sig")) if raw is not None else None
    except ValueError:
        data = None
    if not ordered_equal(data, expected):
        saved = f"; the previous version is in {backup}" if backup else ""
        raise ClientConfigError(
            f"{doc.path} did not read back as written, so another program changed it;"
            f" quit the app that uses it and re-run{saved}"
        )


def _prune_backups(path: Path, keep: int) -> None:
    prefix = f"{path.name}.bak-"
    found: list[tuple[str, int, Path]] = []
    # The write already succeeded; backups we cannot list or delete are no reason to report failure.
    with contextlib.suppress(OSError):
        for item in path.parent.iterdir():
            match = _BACKUP_RE.match(item.name[len(prefix) :]) if item.name.startswith(prefix) else None
            if match:
                found.append((match.group(1), int(match.group(2) or 0), item))
    found.sort()
    for _, _, old in found[: max(len(found) - keep, 0)]:
        with contextlib.suppress(OSError):
            old.unlink()
