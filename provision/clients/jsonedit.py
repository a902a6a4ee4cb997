"""Careful edits of one server entry in a JSON client config file (Claude Desktop, Gemini CLI).

These files belong to the user and to a running app, and they often hold other servers' settings
(sometimes with tokens in them). So an edit here: refuses a file it cannot parse and leaves it alone,
changes only the one server entry it was asked about, keeps every other key and its order, backs the
old file up (keeping the last few), replaces the file atomically (never a half-written file), keeps
its mode and owner, and reads the result back to check it. A file the user made read-only is refused,
not replaced (a rename ignores the file's own mode). Two mcpctl runs take turns on a file; a save by
the app between our read and our rename is noticed, and the edit is redone once on the new version.
Nothing here knows what an entry means: :mod:`provision.clients.entries` builds them.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from provision.clients.backups import KEEP_BACKUPS, make_backup, prune_backups
from provision.clients.document import (
    SERVERS_KEY,
    Document,
    ordered_equal,
    read_bytes,
    read_document,
    render,
    with_server,
    without_server,
)
from provision.clients.lock import writers_lock
from provision.errors import ClientConfigChanged, ClientConfigError
from provision.files import PRIVATE_MODE, atomic_write

Action = Literal["added", "updated", "unchanged", "removed", "absent"]

# Who else may write a client config, for messages; the caller names the actual app.
DEFAULT_APP = "the app that uses it"


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
class _Edit:
    """How to write an edit: the settings shared by :func:`set_server` and :func:`remove_server`."""

    dry_run: bool
    now: datetime | None
    keep_backups: int
    app: str


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
            name is taken by a foreign entry, the file kept changing while it was edited
            (:class:`~provision.errors.ClientConfigChanged`), or it cannot be written.
    """
    # The JSON round trip turns tuples into lists, so the entry compares equal to what reads back.
    new_entry: dict[str, Any] = json.loads(json.dumps(dict(entry), allow_nan=False))
    how = _Edit(dry_run, now, keep_backups, app)

    def edit(doc: Document) -> ConfigChange:
        servers: dict[str, Any] = doc.data.get(key, {})
        if name in servers:
            if ordered_equal(servers[name], new_entry):
                return ConfigChange(doc.path, name, "unchanged", new_entry, dry_run=dry_run)
            if not force and not is_ours(servers[name]):
                raise ClientConfigError(
                    f'{doc.path.name} already has a server "{name}" that mcpctl did not write',
                    hint="pass --server-name with another name, or --force to replace it",
                )
        action: Action = "updated" if name in servers else "added"
        return _commit(doc, with_server(doc.data, name, new_entry, key), name, new_entry, action, how)

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
            is someone else's, the file kept changing while it was edited
            (:class:`~provision.errors.ClientConfigChanged`), or it cannot be written.
    """
    how = _Edit(dry_run, now, keep_backups, app)

    def edit(doc: Document) -> ConfigChange:
        servers: dict[str, Any] = doc.data.get(key, {})
        if name not in servers:
            return ConfigChange(doc.path, name, "absent", None, dry_run=dry_run)
        old_entry = servers[name]
        if not force and not is_ours(old_entry):
            raise ClientConfigError(
                f'the server "{name}" in {doc.path.name} was not written by mcpctl',
                hint="leave it, or pass --force to remove it anyway",
            )
        return _commit(doc, without_server(doc.data, name, key), name, old_entry, "removed", how)

    return _edit(path, key, edit, dry_run=dry_run)


def _edit(path: Path, key: str, edit: Callable[[Document], ConfigChange], *, dry_run: bool) -> ConfigChange:
    """Read the file and apply ``edit`` to it; redo it once on the new version if the file changed."""
    # Dotfile managers link these files; renaming over the link would silently unlink it.
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    with writers_lock(target.parent, enabled=not dry_run):
        try:
            return edit(read_document(target, key))
        except ClientConfigChanged:
            # Someone saved a new version meanwhile: make the same edit to that version instead (a
            # version that no longer parses stops here, untouched). A second change is reported.
            return edit(read_document(target, key))


def _commit(
    doc: Document, new_data: dict[str, Any], name: str, entry: dict[str, Any], action: Action, how: _Edit
) -> ConfigChange:
    _check_writable(doc)
    new_text = render(new_data, indent=doc.indent, newline=doc.newline)
    diff = "".join(
        difflib.unified_diff(
            doc.text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=str(doc.path),
            tofile=f"{doc.path} (new)",
        )
    )
    if how.dry_run:
        return ConfigChange(doc.path, name, action, entry, None, diff, new_text, dry_run=True)
    try:
        doc.path.parent.mkdir(parents=True, exist_ok=True)
        backup = make_backup(doc, how.now or datetime.now()) if doc.raw else None
        _replace(doc, doc.encode(new_text), how.app)
    except OSError as err:
        raise ClientConfigError(
            f"cannot write {doc.path} ({err.strerror or err})",
            hint="check that its folder is writable and no other program holds the file open, then re-run",
        ) from err
    _verify(doc, new_data, backup, how.app)
    prune_backups(doc.path, how.keep_backups)
    return ConfigChange(doc.path, name, action, entry, backup, diff, new_text)


def _check_writable(doc: Document) -> None:
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
            f"{doc.path} is read-only (mode {doc.mode:04o}), so mcpctl leaves it as it is",
            hint=f"make it writable ({fix}) and run the command again, or edit it by hand",
        )
    if not os.access(doc.path, os.W_OK):
        owner = f", owner uid {doc.owner[0]}" if doc.owner is not None else ""
        raise ClientConfigError(
            f"{doc.path} is not writable by this user (mode {doc.mode:04o}{owner}), so mcpctl leaves it"
            " as it is",
            hint="run mcpctl as the user the file belongs to, or edit it by hand",
        )


def _changed_meanwhile(doc: Document, app: str, when: str, saved: str = "") -> ClientConfigChanged:
    return ClientConfigChanged(
        doc.path,
        f"{doc.path.name} changed {when} mcpctl updated it (another mcpctl run or {app} saved it){saved}",
        hint=f"run the command again, after quitting {app} if this keeps happening",
    )


def _replace(doc: Document, payload: bytes, app: str) -> None:
    """Replace the file with ``payload`` unless someone saved it since ``doc`` was read (compare-and-swap).

    Raises:
        ClientConfigChanged: The file is no longer the version read; it is left as they saved it.
        OSError: The file cannot be written.
    """

    def before_replace(tmp: Path) -> None:
        doc.copy_owner_to(tmp)
        # The app may rewrite its config while running; never clobber a version we did not read.
        if read_bytes(doc.path) != doc.raw:
            raise _changed_meanwhile(doc, app, "while", ", so it was left as they saved it")

    # A new file may later hold other servers' tokens: keep it private from the start.
    mode = doc.mode if doc.mode is not None else PRIVATE_MODE
    atomic_write(doc.path, payload, mode=mode, before_replace=before_replace)
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


def _verify(doc: Document, expected: dict[str, Any], backup: Path | None, app: str) -> None:
    raw = read_bytes(doc.path)
    try:
        data = json.loads(raw.decode("utf-8-sig")) if raw is not None else None
    except ValueError:
        data = None
    if not ordered_equal(data, expected):
        saved = f" and the version before ours is in {backup}" if backup else ""
        raise _changed_meanwhile(doc, app, "right after", saved)
