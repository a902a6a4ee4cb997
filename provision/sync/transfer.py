"""What both ways of sending a file share: reading it checked against its plan, and counting progress.

Checked: what is sent is what was planned. Each file is hashed as it is read for sending; its size,
mtime (before and after the read) and, when the plan knows it, sha256 must match the plan before the
host renames it into place. A file that changed while it was read is planned again from its new
state and sent once more; if it is still changing it is left out (:class:`Sent.unsettled`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from provision.errors import McpctlError
from provision.sync.manifest import FileEntry, file_mode
from provision.sync.plan import SyncPlan, Upload
from provision.sync.report import ProgressCallback, ReadHook, SyncProgress

STREAM_READ = 64 * 1024  # small files are read in chunks of this size (the read hook runs after each)


class Unsettled(Exception):
    """What was read of a local file is not the file its plan describes: it changed meanwhile."""


@dataclass
class Sent:
    """What one upload job did: files written, and files left out because they kept changing."""

    written: dict[str, FileEntry] = field(default_factory=dict)
    unsettled: list[Upload] = field(default_factory=list)


class Tracker:
    """Progress of one apply, and the read hook (see :data:`ReadHook`) its uploads call."""

    def __init__(
        self, plan: SyncPlan, callback: ProgressCallback | None, after_read: ReadHook | None
    ) -> None:
        self.bytes_total = plan.bytes_to_send
        self.files_total = len(plan.uploads)
        self.bytes_done = 0
        self.files_done = 0
        self.callback = callback
        self.after_read = after_read

    def add(self, nbytes: int, files: int = 0) -> None:
        self.bytes_done += nbytes
        self.files_done += files
        if self.callback is not None:
            self.callback(SyncProgress(self.bytes_done, self.bytes_total, self.files_done, self.files_total))

    def read(self, path: Path, nbytes: int) -> None:
        if self.after_read is not None:
            self.after_read(path, nbytes)


def local_error(upload: Upload, exc: OSError) -> McpctlError:
    """The error for a local file that could not be read for sending."""
    return McpctlError(
        f"cannot read {upload.local_path} ({exc.strerror or exc}): it changed during the sync",
        hint="run it again",
    )


def as_planned(upload: Upload, st: os.stat_result) -> bool:
    """Whether the local file still has the size and mtime it was planned with."""
    return (st.st_size, st.st_mtime_ns) == (upload.size, upload.mtime_ns)


def read_as_planned(upload: Upload, after: os.stat_result, nbytes: int, sha256: str) -> bool:
    """Whether a finished read got the planned file: every planned byte, no more, the size and mtime
    unchanged after the last read, and the planned sha256 when the plan knows it.

    mtime has the kernel clock's granularity (a few ms): a same-size rewrite within one tick of the
    plan's stat changes neither size nor mtime, and only a planned sha256 catches it.
    """
    return (
        nbytes == upload.size
        and as_planned(upload, after)
        and (upload.sha256 is None or upload.sha256 == sha256)
    )


def replanned(upload: Upload) -> Upload:
    """Plan ``upload`` again from the local file as it is now (its content hash unknown).

    Raises:
        McpctlError: It cannot be read.
    """
    try:
        st = os.stat(upload.local_path)
    except OSError as exc:
        raise local_error(upload, exc) from exc
    return replace(upload, size=st.st_size, mtime_ns=st.st_mtime_ns, mode=file_mode(st), sha256=None)


def sent_entry(upload: Upload, st: os.stat_result, size: int, sha: str) -> FileEntry:
    """What the host holds once ``upload`` is installed, as the manifest file records it."""
    return FileEntry(size, st.st_mtime_ns, sha, file_mode(st), upload.local_path, st.st_mtime_ns)


def read_local(upload: Upload, tracker: Tracker) -> tuple[bytes, os.stat_result, str]:
    """Read a small file whole, in chunks, and check it against its plan: (data, stat, sha256).

    Raises:
        Unsettled: The file is not the one planned (it changed before or while it was read).
        McpctlError: It cannot be read.
    """
    chunks: list[bytes] = []
    nbytes = 0
    try:
        with upload.local_path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            if not as_planned(upload, st):
                raise Unsettled(upload.path)
            # At most one byte past the plan: enough to see that the file grew, bounded if it keeps on.
            while nbytes <= upload.size and (
                chunk := handle.read(min(STREAM_READ, upload.size + 1 - nbytes))
            ):
                chunks.append(chunk)
                nbytes += len(chunk)
                tracker.read(upload.local_path, nbytes)
            after = os.fstat(handle.fileno())
    except OSError as exc:
        raise local_error(upload, exc) from exc
    data = b"".join(chunks)
    sha256 = hashlib.sha256(data).hexdigest()
    if not read_as_planned(upload, after, len(data), sha256):
        raise Unsettled(upload.path)
    return data, st, sha256


def read_settled(upload: Upload, tracker: Tracker) -> tuple[bytes, FileEntry] | None:
    """Read a small file as planned or, if it changed, once more as it is now; None if it changed again.

    Raises:
        McpctlError: It cannot be read.
    """
    try:
        data, st, sha256 = read_local(upload, tracker)
        return data, sent_entry(upload, st, len(data), sha256)
    except Unsettled:
        pass
    again = replanned(upload)
    try:
        data, st, sha256 = read_local(again, tracker)
    except Unsettled:
        return None
    return data, sent_entry(again, st, len(data), sha256)
