"""Careful edits of JSON client config files (Claude Desktop, Gemini CLI).

These files belong to the user and to a running app, and they often hold other servers' settings
(sometimes with tokens in them). So an edit here: refuses a file it cannot parse and leaves it alone,
changes only the one server entry it was asked about, keeps every other key and its order, backs the
old file up (keeping the last few), writes a temp file in the same directory and renames it over the
original (never a half-written file), keeps the file's mode, and reads the result back to check it.
A file the user made read-only is refused, not replaced (a rename ignores the file's own mode). Two
mcpctl runs take turns on a file; a save by the app between our read and our rename is noticed, and
the edit is redone once on the new version. Nothing here knows what an entry means; ``claude.py``
builds the entries.
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
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from provision.errors import ClientConfigError

try:
    import fcntl
except ImportError:  # Windows: mcpctl runs there take no lock and rely on the change check alone
    fcntl = None  # type: ignore[assignment]

Action = Literal["added", "updated", "unchanged", "removed", "absent"]

SERVERS_KEY = "mcpServers"
KEEP_BACKUPS = 5
# A new file may later hold other servers' tokens: keep it private from the start.
NEW_FILE_MODE = 0o600
_BACKUP_RE = re.compile(r"^(\d{8}T\d{6})(?:-(\d+))?$")
_INDENT_RE = re.compile(r"\s*\{[ \t]*\r?\n([ \t]+)\S")
# Who else may write a client config, for messages; claude.py names the actual app.
DEFAULT_APP = "the app that uses it"
# How long to wait for another mcpctl run editing the same folder (an edit takes milliseconds).
LOCK_TIMEOUT_S = 10.0
_LOCK_POLL_S = 0.01


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
    app: str = DEFAULT_APP,
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
        app: The program that also writes this file, as messages name it (e.g. ``Claude Desktop``).

    Returns:
        The change; ``unchanged`` (and no backup) when the same entry is already there.

    Raises:
        ClientConfigError: The file is unreadable, invalid or read-only (it is left untouched), the
            name is taken by a foreign entry, the file kept changing while it was edited, or it cannot
            be written.
    """
    # The JSON round trip turns tuples into lists, so the entry compares equal to what reads back.
    new_entry: dict[str, Any] = json.loads(json.dumps(dict(entry), allow_nan=False))

    def edit(doc: _Document) -> ConfigChange:
        servers: dict[str, Any] = doc.data.get(key, {})
        if name in servers:
            if ordered_equal(servers[name], new_entry):
                return ConfigChange(doc.path, name, "unchanged", new_entry, dry_run=dry_run)
            if not force and not is_ours(servers[name]):
                raise ClientConfigError(
                    f'{doc.path.name} already has a server "{name}" that mcpctl did not write;'
                    " pass --server-name with another name, or --force to replace it"
                )
        action: Action = "updated" if name in servers else "added"
        new_data = with_server(doc.data, name, new_entry, key)
        return _commit(doc, new_data, name, new_entry, action, dry_run, now, keep_backups, app)

    return _edit(path, key, edit, dry_run=dry_run)


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
    app: str = DEFAULT_APP,
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
        app: The program that also writes this file, as messages name it (e.g. ``Claude Desktop``).

    Returns:
        The change: ``removed`` with the old entry, or ``absent``.

    Raises:
        ClientConfigError: The file is unreadable, invalid or read-only (left untouched), the entry
            is someone else's, the file kept changing while it was edited, or it cannot be written.
    """

    def edit(doc: _Document) -> ConfigChange:
        servers: dict[str, Any] = doc.data.get(key, {})
        if name not in servers:
            return ConfigChange(doc.path, name, "absent", None, dry_run=dry_run)
        old_entry = servers[name]
        if not force and not is_ours(old_entry):
            raise ClientConfigError(
                f'the server "{name}" in {doc.path.name} was not written by mcpctl;'
                " leave it, or pass --force to remove it anyway"
            )
        new_data = without_server(doc.data, name, key)
        return _commit(doc, new_data, name, old_entry, "removed", dry_run, now, keep_backups, app)

    return _edit(path, key, edit, dry_run=dry_run)


class _ChangedMeanwhile(ClientConfigError):
    """Another program saved the file between our read and our rename (or right after it)."""


def _edit(path: Path, key: str, edit: Callable[[_Document], ConfigChange], *, dry_run: bool) -> ConfigChange:
    """Read the file and apply ``edit`` to it; redo it once on the new version if the file changed."""
    target = _target(path)
    with _writers_lock(target.parent, enabled=not dry_run):
        try:
            return edit(_read(target, key))
        except _ChangedMeanwhile:
            # Someone saved a new version meanwhile: make the same edit to that version instead (a
            # version that no longer parses stops here, untouched). A second change is reported.
            return edit(_read(target, key))


@contextlib.contextmanager
def _writers_lock(directory: Path, *, enabled: bool) -> Iterator[None]:
    """Let one mcpctl run at a time edit the files in ``directory`` (an advisory lock on the folder).

    A lock file would leave litter in the app's folder, and the file itself is replaced by the
    rename, so the folder is what is locked. The apps take no such lock: the change check covers them.
    Where the folder cannot be locked (no such folder yet, Windows, a file system without locks)
    the edit goes ahead without it.

    Raises:
        ClientConfigError: Another mcpctl run held the lock for ``LOCK_TIMEOUT_S``.
    """
    fd: int | None = None
    if enabled and fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
    try:
        if fd is not None:
            _lock_folder(fd, directory)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def _lock_folder(fd: int, directory: Path) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ClientConfigError(
                    f"another mcpctl run has been editing the files in {directory} for "
                    f"{LOCK_TIMEOUT_S:g} s; let it finish (or end it), then re-run"
                ) from None
            time.sleep(_LOCK_POLL_S)
        except OSError:
            return  # this file system cannot lock: go ahead without it


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
    app: str,
) -> ConfigChange:
    _check_writable(doc)
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
        _atomic_replace(doc, payload, app)
    except OSError as err:
        raise ClientConfigError(
            f"cannot write {doc.path} ({err.strerror or err}); check that its folder is writable"
            " and no other program holds the file open, then re-run"
        ) from err
    _verify(doc, new_data, backup, app)
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


def _check_writable(doc: _Document) -> None:
    """Refuse a file its owner made read-only, or one this user may not write.

    The rename would replace it all the same (it needs only the folder to be writable), so the
    file's own mode is checked here; root passes ``os.access``, hence the mode bits are checked too.

    Raises:
        ClientConfigError: The file is read-only or not writable by this user.
    """
    if doc.raw is None or doc.mode is None:
        return  # a new file
    fix = f"`chmod u+w {doc.path}`" if os.name == "posix" else "clear its read-only attribute"
    if not doc.mode & stat.S_IWUSR:
        raise ClientConfigError(
            f"{doc.path} is read-only (mode {doc.mode:04o}), so mcpctl leaves it as it is;"
            f" make it writable ({fix}) and run the command again, or edit it by hand"
        )
    if not os.access(doc.path, os.W_OK):
        owner = f", owner uid {doc.owner[0]}" if doc.owner is not None else ""
        raise ClientConfigError(
            f"{doc.path} is not writable by this user (mode {doc.mode:04o}{owner}), so mcpctl leaves it"
            " as it is; run mcpctl as the user the file belongs to, or edit it by hand"
        )


def _changed_meanwhile(doc: _Document, app: str, when: str, saved: str = "") -> _ChangedMeanwhile:
    return _ChangedMeanwhile(
        f"{doc.path.name} changed {when} mcpctl updated it (another mcpctl run or {app} saved it){saved};"
        f" run the command again, after quitting {app} if this keeps happening"
    )


def _atomic_replace(doc: _Document, payload: bytes, app: str) -> None:
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
            raise _changed_meanwhile(doc, app, "while", ", so it was left as they saved it")
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


def _verify(doc: _Document, expected: dict[str, Any], backup: Path | None, app: str) -> None:
    raw = _read_bytes(doc.path)
    try:
        data = json.loads(raw.decode("utf-8-sig")) if raw is not None else None
    except ValueError:
        data = None
    if not ordered_equal(data, expected):
        saved = f" and the version before ours is in {backup}" if backup else ""
        raise _changed_meanwhile(doc, app, "right after", saved)


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
