"""The manifest: the files under one remote root, as values, and the record sync keeps on the host.

A :class:`Manifest` maps POSIX paths relative to one remote root to :class:`FileEntry` values (size,
mtime, sha256, mode). A local manifest (see :mod:`provision.sync.scan`) says what should be there, a
remote one what is there. The remote side comes from one listing on the host (see
:func:`provision.sync.helper_client.remote_manifest`): live sizes and mtimes, plus the manifest file
sync keeps there (:attr:`provision.layout.RemoteLayout.manifest`), whose sha256 values are trusted
only while the live size and mtime still match what it recorded.

SFTP sets mtimes in whole seconds, so a host's mtime is compared with a local one at second
granularity; the manifest file also records the exact local mtime each file was sent from, so a local
change within the same second is still noticed.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import McpctlError
from provision.sync.rules import Scope

NS = 1_000_000_000
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One regular file: ``sha256`` is None when unknown (not hashed yet, or not trusted)."""

    size: int
    mtime_ns: int
    sha256: str | None = None
    mode: int = 0o644  # permission bits only
    local_path: Path | None = None  # where the content comes from (local manifests only)
    # Remote entries: the exact local mtime of the file this content was sent from (recorded in the
    # manifest file). A local file still at that mtime needs no hashing; one at another mtime, even
    # within the same second, is hashed and compared.
    origin_mtime_ns: int | None = None

    @property
    def mtime_s(self) -> int:
        """The mtime in whole seconds, the granularity SFTP can set."""
        return self.mtime_ns // NS


def file_mode(st: os.stat_result) -> int:
    """The permission bits to give the host's copy of a local file.

    Windows reports every file as 0o666 (or 0o444): that would make the copies world-writable, so
    files from Windows get 0o644.
    """
    return stat.S_IMODE(st.st_mode) if os.name != "nt" else 0o644


@dataclass(frozen=True)
class Skipped:
    """A local entry the walk did not send, and why (one of the ``SKIP_*`` reasons)."""

    path: str  # POSIX, relative to the manifest root
    reason: str


SKIP_OUTSIDE = "link outside the project; --follow-links sends it"
SKIP_IGNORED_TARGET = "link to an ignored file"
SKIP_DIRECTORY_LINK = "link to a directory"
SKIP_DANGLING = "dangling link"
SKIP_SPECIAL_TARGET = "link to a FIFO, socket or device"
SKIP_FIFO = "FIFO"
SKIP_SOCKET = "socket"
SKIP_DEVICE = "device file"


@dataclass(frozen=True)
class Manifest:
    """Files under the remote root ``root``, keyed by POSIX path relative to it."""

    root: str
    files: Mapping[str, FileEntry]
    scopes: tuple[Scope, ...] = ()  # local manifests: what the sources manage
    temps: tuple[str, ...] = ()  # remote manifests: temp files an interrupted sync left behind
    recorded: Mapping[str, FileEntry] = field(default_factory=dict, repr=False)  # remote: manifest file
    skipped: tuple[Skipped, ...] = ()  # local manifests: entries not sent (links, FIFOs...), by path

    def manages(self, path: str) -> bool:
        """Return whether a source of this (local) manifest manages ``path``."""
        return any(scope.manages(path) for scope in self.scopes)


def merge(manifests: Sequence[Manifest]) -> Manifest:
    """Combine local manifests whose roots nest into one keyed relative to the outermost root.

    Raises:
        ValueError: The roots do not nest under one of them.
        McpctlError: Two different local files would land on the same remote path.
    """
    if not manifests:
        raise ValueError("merge() needs at least one manifest")
    root = min((m.root for m in manifests), key=len)
    files: dict[str, FileEntry] = {}
    scopes: list[Scope] = []
    skipped: list[Skipped] = []
    for manifest in manifests:
        rel = posixpath.relpath(manifest.root, root)
        if rel == ".." or rel.startswith("../"):
            raise ValueError(f"{manifest.root} is not below {root}")
        sub = "" if rel == "." else rel
        skipped += [Skipped(f"{sub}/{s.path}" if sub else s.path, s.reason) for s in manifest.skipped]
        for path, entry in manifest.files.items():
            key = f"{sub}/{path}" if sub else path
            old = files.get(key)
            if old is not None and old.local_path != entry.local_path:
                raise McpctlError(
                    f"{old.local_path} and {entry.local_path} would both be sent to {root}/{key}",
                    hint="rename one of them or remove one from the profile's data list",
                )
            files[key] = entry
        for scope in manifest.scopes:
            joined = "/".join(part for part in (sub, scope.prefix) if part)
            scopes.append(Scope(joined, scope.include, scope.ignore))
    return Manifest(
        root,
        dict(sorted(files.items())),
        scopes=tuple(scopes),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
    )


# ------------------------------------------------------------------------------------ remote side


def recorded_rows(files: Mapping[str, FileEntry]) -> dict[str, Any]:
    """The manifest file's content for these files: ``[size, mtime_s, sha256, mode, origin_mtime_ns]``."""
    rows = {p: [e.size, e.mtime_s, e.sha256, e.mode, e.origin_mtime_ns] for p, e in sorted(files.items())}
    return {"version": MANIFEST_VERSION, "files": rows}


def _parse_recorded(text: str) -> dict[str, FileEntry]:
    try:
        raw = json.loads(text) if text.strip() else {}
        if raw.get("version") != MANIFEST_VERSION:
            return {}
        return {
            str(path): FileEntry(
                int(row[0]), int(row[1]) * NS, str(row[2]) if row[2] else None, int(row[3]), None, int(row[4])
            )
            for path, row in raw["files"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return {}  # unreadable: rewritten by the next sync that changes anything


def manifest_from_listing(root: str, listing: Mapping[str, Any]) -> Manifest:
    """Build the remote manifest from the host's listing (files, stale temp files, manifest file text).

    ``listing["files"]`` holds ``[path, size, mtime_ns, mode]`` rows; ``listing["manifest"]`` the text of
    the manifest file sync keeps on the host, or None. That file maps each path to
    ``[size, mtime_s, sha256, mode, origin_mtime_ns]`` as last written (see :func:`recorded_rows`).

    Raises:
        ValueError: A row is malformed.
    """
    recorded = _parse_recorded(listing.get("manifest") or "")
    files: dict[str, FileEntry] = {}
    for path, size, mtime_ns, mode in listing.get("files", []):
        live = FileEntry(int(size), int(mtime_ns), None, int(mode))
        known = recorded.get(path)
        # The recorded hash describes the live file only while size and mtime are what we wrote.
        if known is not None and (known.size, known.mtime_s) == (live.size, live.mtime_s):
            live = FileEntry(live.size, live.mtime_ns, known.sha256, live.mode, None, known.origin_mtime_ns)
        files[str(path)] = live
    temps = tuple(sorted(str(p) for p in listing.get("temps", [])))
    return Manifest(root, dict(sorted(files.items())), temps=temps, recorded=recorded)
