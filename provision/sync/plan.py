"""The plan of a sync (pure): what to send, delete, clean up and leave, from two manifests.

:func:`plan` compares a local :class:`~provision.sync.manifest.Manifest` (what should be on the host)
with a remote one (what is there) and returns a :class:`SyncPlan`: a value that ``--dry-run`` prints
and tests compare as data. Nothing here reads a file or talks to a host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rich.filesize import decimal as size_text

from provision.sync.manifest import NS, FileEntry, Manifest, Skipped
from provision.sync.rules import is_protected


@dataclass(frozen=True)
class Upload:
    """One file to send. ``reason``: new, size, mode, content (sha256 differs) or mtime (hash unknown)."""

    path: str  # relative to the plan's remote root
    size: int
    reason: str
    local_path: Path
    mtime_ns: int
    mode: int
    sha256: str | None = None


@dataclass(frozen=True)
class SyncPlan:
    """What a sync will do under one remote root; a value (``--dry-run`` prints :meth:`describe`)."""

    remote_root: str
    uploads: tuple[Upload, ...] = ()
    deletes: tuple[str, ...] = ()
    cleanup: tuple[str, ...] = ()  # temp files of an interrupted sync, always removed
    unchanged: tuple[str, ...] = ()
    record: Mapping[str, FileEntry] = field(default_factory=dict, repr=False)  # unchanged files, as recorded
    record_stale: bool = False  # the remote manifest file lacks hashes we now know
    skipped: tuple[Skipped, ...] = ()  # local entries not sent (links out of the tree, FIFOs...)

    @property
    def bytes_to_send(self) -> int:
        """Total size of the uploads."""
        return sum(u.size for u in self.uploads)

    @property
    def up_to_date(self) -> bool:
        """True when no file would be sent, deleted or cleaned up."""
        return not (self.uploads or self.deletes or self.cleanup)

    def describe(self) -> str:
        """Human-readable plan, one line per action (and one per skipped entry, with the reason)."""
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        if self.up_to_date:
            return "\n".join(
                [f"{self.remote_root}: up to date ({len(self.unchanged)} files{skipped})", *skip_lines(self)]
            )
        lines = [
            f"{self.remote_root}: {len(self.uploads)} to send ({size_text(self.bytes_to_send)}), "
            f"{len(self.deletes)} to delete, {len(self.unchanged)} unchanged"
            + (f", {len(self.cleanup)} stale temp files to remove" if self.cleanup else "")
            + skipped
        ]
        lines += [
            f"  {'+' if u.reason == 'new' else '~'} {shown(u.path)} ({u.reason}, {size_text(u.size)})"
            for u in self.uploads
        ]
        lines += [f"  - {shown(path)}" for path in self.deletes]
        lines += skip_lines(self)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def skip_lines(plan: SyncPlan) -> list[str]:
    """One line per local entry the plan leaves out, with the reason."""
    return [f"  ! {shown(s.path)} (skipped: {s.reason})" for s in plan.skipped]


def shown(path: str) -> str:
    """``path`` for a terminal, control characters and undecodable bytes escaped.

    A file name can then neither break a plan line in two nor send escape sequences to the terminal.
    """
    return "".join(_shown_char(char) for char in path)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or 0x7F <= code < 0xA0:
        return _ESCAPES.get(char, f"\\x{code:02x}")
    if 0xD800 <= code < 0xE000:
        return f"\\u{code:04x}"
    return char


def is_safe_path(path: str) -> bool:
    """Return whether ``path`` is a plain relative POSIX path that stays below its root."""
    parts = path.split("/")
    return (
        bool(path)
        and "\0" not in path
        and not path.startswith("/")
        and "" not in parts
        and not ({".", ".."} & set(parts))
    )


def _difference(local: FileEntry, remote: FileEntry) -> str | None:
    if local.size != remote.size:
        return "size"
    if local.mode != remote.mode:
        return "mode"
    if local.sha256 is not None and remote.sha256 is not None:
        return None if local.sha256 == remote.sha256 else "content"
    if remote.sha256 is not None and remote.origin_mtime_ns is not None:
        # The host holds what was sent from the local file at exactly that mtime.
        return None if local.mtime_ns == remote.origin_mtime_ns else "mtime"
    return None if local.mtime_s == remote.mtime_s else "mtime"


def plan(local: Manifest, remote: Manifest, *, delete: bool) -> SyncPlan:
    """Compare what should be on the host with what is there (pure).

    A file is sent when it is new, its size or mode differs, or its sha256 differs (when both are
    known). Without both hashes, its mtime decides: the exact local mtime the host's copy was sent
    from (recorded in the remote manifest file) or, with no record, the host's mtime at second
    granularity (SFTP sets whole seconds). With ``delete``, remote files that a local source manages
    but that no longer exist locally are deleted: never a path outside the root, never anything under
    ``.venv``, ``.mcp_sales_cache`` or ``.mcpctl``, never an ignored file, never a path the local walk
    skipped (it exists locally: a link or FIFO there is left out, not gone).

    Raises:
        ValueError: The manifests have different roots or a local path is not a safe relative path.
    """
    if local.root != remote.root:
        raise ValueError(f"cannot compare manifests of {local.root} and {remote.root}")
    uploads: list[Upload] = []
    unchanged: list[str] = []
    record: dict[str, FileEntry] = {}
    for path, want in local.files.items():
        if not is_safe_path(path) or want.local_path is None:
            raise ValueError(f"local manifest entry {path!r} is not a safe relative path with a local file")
        have = remote.files.get(path)
        reason = "new" if have is None else _difference(want, have)
        if have is None or reason is not None:
            upload = Upload(
                path, want.size, reason or "new", want.local_path, want.mtime_ns, want.mode, want.sha256
            )
            uploads.append(upload)
            continue
        unchanged.append(path)
        # Recorded as it is on the host; a known local hash also records the local mtime it belongs to.
        origin = want.mtime_ns if want.sha256 is not None else have.origin_mtime_ns
        sha = want.sha256 or have.sha256
        record[path] = FileEntry(have.size, have.mtime_s * NS, sha, have.mode, None, origin or want.mtime_ns)
    deletes: tuple[str, ...] = ()
    if delete:
        kept = local.files.keys() | {s.path for s in local.skipped}
        deletes = tuple(
            path
            for path in remote.files
            if path not in kept and is_safe_path(path) and not is_protected(path) and local.manages(path)
        )
    stale = any(e.sha256 is not None and remote.recorded.get(p) != e for p, e in record.items())
    return SyncPlan(
        remote.root,
        tuple(uploads),
        tuple(sorted(deletes)),
        tuple(p for p in remote.temps if is_safe_path(p)),
        tuple(unchanged),
        record,
        stale,
        local.skipped,
    )
