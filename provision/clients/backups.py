"""Backups of a client config file before mcpctl edits it: ``NAME.bak-STAMP[-N]``, the last few kept.

A backup holds the same secrets as the file it copies (other servers' tokens), so it gets the file's
mode and owner, whatever the umask says.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import datetime
from pathlib import Path

from provision.clients.document import Document
from provision.errors import ClientConfigError
from provision.files import PRIVATE_MODE

KEEP_BACKUPS = 5
_BACKUP_RE = re.compile(r"^(\d{8}T\d{6})(?:-(\d+))?$")


def make_backup(doc: Document, now: datetime) -> Path:
    """Copy the file as read (``doc.raw``) beside it, under a name no other backup has.

    Raises:
        OSError: The copy cannot be written (the caller names the file and what to do).
        ClientConfigError: A thousand backups were made this second already.
    """
    assert doc.raw is not None
    stamp = now.strftime("%Y%m%dT%H%M%S")
    mode = doc.mode if doc.mode is not None else PRIVATE_MODE
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
            os.chmod(candidate, mode)
        except BaseException:
            with contextlib.suppress(OSError):
                candidate.unlink()  # a truncated backup would be mistaken for a good one later
            raise
        doc.copy_owner_to(candidate)
        return candidate
    raise ClientConfigError(
        f"too many backups of {doc.path.name} this second", hint="remove some, then re-run"
    )


def prune_backups(path: Path, keep: int = KEEP_BACKUPS) -> None:
    """Delete all but the newest ``keep`` backups of ``path``; failures are ignored."""
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
