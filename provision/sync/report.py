"""What a sync tells its caller: progress while it runs, a result per root and a report at the end.

:class:`SourceChangedError` is the one failure that still carries a report: local files kept changing
while they were sent, everything else was done, and the report says what.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.filesize import decimal as size_text

from provision.errors import McpctlError
from provision.sync.manifest import FileEntry, Skipped
from provision.sync.plan import SyncPlan, Upload, skip_lines


@dataclass(frozen=True)
class SyncProgress:
    """How far an apply is: what the CLI's progress bar shows."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int


ProgressCallback = Callable[[SyncProgress], None]
# A test seam: called with (local path, bytes of it read so far) after each chunk of a file is read for
# sending and before that chunk is sent, so a test can change the file mid-upload deterministically.
ReadHook = Callable[[Path, int], None]


@dataclass(frozen=True)
class SyncResult:
    """What an apply did under one remote root."""

    remote_root: str
    files_sent: int = 0
    bytes_sent: int = 0
    deleted: int = 0
    cleaned: int = 0
    seconds: float = 0.0
    # path -> what was sent: local mtime_ns and local_path, sha256 computed while reading
    written: Mapping[str, FileEntry] = field(default_factory=dict, repr=False)
    # files that kept changing while they were read: not replaced on the host, not in its manifest
    unsettled: tuple[Upload, ...] = ()


@dataclass(frozen=True)
class SyncReport:
    """The plans of a sync and, unless it was a dry run, what applying them did."""

    plans: tuple[SyncPlan, ...]
    results: tuple[SyncResult, ...]
    dry_run: bool
    seconds: float

    @property
    def up_to_date(self) -> bool:
        """True when there was nothing to send, delete or clean up."""
        return all(p.up_to_date for p in self.plans)

    @property
    def changed(self) -> bool:
        """True when files on the host were written or deleted."""
        return any(r.files_sent or r.deleted for r in self.results)

    @property
    def files_sent(self) -> int:
        """Files sent over all roots."""
        return sum(r.files_sent for r in self.results)

    @property
    def bytes_sent(self) -> int:
        """Bytes sent over all roots."""
        return sum(r.bytes_sent for r in self.results)

    @property
    def deleted(self) -> int:
        """Files deleted over all roots."""
        return sum(r.deleted for r in self.results)

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        """Local entries not sent (links out of the tree, FIFOs...), relative to their plan's root."""
        return tuple(s for p in self.plans for s in p.skipped)

    @property
    def unsettled(self) -> tuple[Upload, ...]:
        """Files not replaced because they kept changing while they were sent."""
        return tuple(u for r in self.results for u in r.unsettled)

    def describe(self) -> str:
        """One summary line and a line per skipped entry (dry run: the plans)."""
        if self.dry_run:
            return "\n".join(p.describe() for p in self.plans)
        unchanged = sum(len(p.unchanged) for p in self.plans)
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        if self.up_to_date:
            summary = f"up to date ({unchanged} files checked in {self.seconds:.2f} s{skipped})"
        else:
            summary = (
                f"sent {self.files_sent} files ({size_text(self.bytes_sent)}), deleted {self.deleted}, "
                f"{unchanged} unchanged{skipped}, in {self.seconds:.2f} s"
            )
        return "\n".join([summary, *(line for p in self.plans for line in skip_lines(p))])


class SourceChangedError(McpctlError):
    """Local files changed while they were being sent: their old copies stay on the host.

    Raised once everything else is done (sent, deleted, manifest written). ``paths`` are the local
    files; ``report`` is the sync's report when :func:`provision.sync.push.sync` raised it (None from
    :func:`provision.sync.apply.apply`).
    """

    def __init__(self, paths: Sequence[Path], report: SyncReport | None = None) -> None:
        if len(paths) == 1:
            message = f"{paths[0]} changed while it was being sent; nothing was replaced for it"
            hint = "run `mcpctl sync` again when it is no longer being written"
        else:
            names = ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
            message = (
                f"{len(paths)} files changed while they were being sent ({names}); nothing was replaced "
                "for them"
            )
            hint = "run `mcpctl sync` again when they are no longer being written"
        super().__init__(message, hint=hint)
        self.paths = tuple(paths)
        self.report = report
