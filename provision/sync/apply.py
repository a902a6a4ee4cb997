"""Carry out a :class:`~provision.sync.plan.SyncPlan` on the host: send, delete, clean up, record.

Atomic: every file is written to a temp name in its own directory (``.NAME.mcpctl-tmp-XXXXXXXXXXXX``),
given its mode and (whole-second) mtime, then renamed over the old one. The server never reads half a
file, an interrupted sync leaves old or new versions only, and the next sync removes its temp files.
The remote manifest file is written last, atomically.

Parallel: small files go in one stream through the helper (:mod:`provision.sync.stream`), large ones
over up to :data:`SFTP_SESSIONS` SFTP sessions (:mod:`provision.sync.sftp`), all at once. A file that
changed while it was read is sent once more as it is now; one that changed again keeps its old copy,
is left out of the manifest, and fails the apply once everything else is done.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from provision.layout import RemoteLayout
from provision.sync.helper_client import CLEANUP_TIMEOUT, REMOTE_PYTHON, HelperProcess, start_helper
from provision.sync.manifest import recorded_rows
from provision.sync.plan import SyncPlan, Upload
from provision.sync.report import ProgressCallback, ReadHook, SourceChangedError, SyncResult
from provision.sync.sftp import sftp_path_ok, sftp_session
from provision.sync.stream import STREAM_MAX_FILE, send_stream
from provision.sync.transfer import Sent, Tracker

if TYPE_CHECKING:
    from provision.ssh.remote import Remote

SFTP_SESSIONS = 4  # SFTP sessions for large files (each is one of the connection's 8 channels)


async def _all(jobs: Sequence[Awaitable[Sent]]) -> Sent:
    """Run jobs concurrently; the first failure cancels the others (which clean up) and is raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    if not tasks:
        return Sent()
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=CLEANUP_TIMEOUT)
        raise
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=CLEANUP_TIMEOUT)
    errors = [t.exception() for t in tasks if t.done() and not t.cancelled()]
    for error in errors:
        if error is not None:
            raise error
    merged = Sent()
    for task in tasks:
        merged.written.update(task.result().written)
        merged.unsettled += task.result().unsettled
    return merged


def buckets(uploads: Sequence[Upload], count: int) -> list[list[Upload]]:
    """Spread files over ``count`` sessions, largest first onto the least loaded one."""
    spread: list[list[Upload]] = [[] for _ in range(min(count, len(uploads)))]
    loads = [0] * len(spread)
    for upload in sorted(uploads, key=lambda u: -u.size):
        index = loads.index(min(loads))
        spread[index].append(upload)
        loads[index] += upload.size
    return spread


async def apply_with(
    remote: Remote,
    helper: HelperProcess,
    plan: SyncPlan,
    progress: ProgressCallback | None,
    after_read: ReadHook | None = None,
) -> SyncResult:
    """Carry out ``plan`` through a running helper; files that kept changing are in the result's
    ``unsettled`` (raises as :func:`apply`, except :class:`SourceChangedError`).
    """
    started = time.perf_counter()
    root = plan.remote_root
    if plan.up_to_date and not plan.record_stale:
        return SyncResult(root, seconds=time.perf_counter() - started)
    if plan.uploads or plan.cleanup:
        dirs = sorted({posixpath.dirname(u.path) for u in plan.uploads})
        await helper.call(root, {"op": "prepare", "root": root, "dirs": dirs, "remove": list(plan.cleanup)})
    tracker = Tracker(plan, progress, after_read)
    large = [u for u in plan.uploads if u.size > STREAM_MAX_FILE and sftp_path_ok(u.path)]
    small = [u for u in plan.uploads if u not in large]
    jobs = [
        sftp_session(remote, root, bucket, tracker, helper.python) for bucket in buckets(large, SFTP_SESSIONS)
    ]
    if small:
        jobs.append(send_stream(helper, root, small, tracker))
    sent = await _all(jobs)
    written = sent.written
    # A file left out is not claimed: the host keeps its old copy, which the next sync compares anew.
    request = {
        "op": "finalize",
        "root": root,
        "delete": list(plan.deletes),
        "manifest": recorded_rows({**plan.record, **written}),
        "manifest_path": str(RemoteLayout.of(root).manifest),
    }
    await helper.call(root, request)
    return SyncResult(
        root,
        files_sent=len(written),
        bytes_sent=sum(e.size for e in written.values()),
        deleted=len(plan.deletes),
        cleaned=len(plan.cleanup),
        seconds=time.perf_counter() - started,
        written=written,
        unsettled=tuple(sent.unsettled),
    )


async def apply(
    remote: Remote,
    plan: SyncPlan,
    *,
    progress: ProgressCallback | None = None,
    python: str = REMOTE_PYTHON,
    after_read: ReadHook | None = None,
) -> SyncResult:
    """Carry out ``plan``: send, delete, clean up, then record the new remote manifest.

    Each file is replaced atomically; after a failure or cancellation every file is in its old or its
    new version. A file that changed while it was read is sent once more as it is now; one that
    changed again keeps its old copy and fails the apply once the rest is done.

    Args:
        remote: The open connection.
        plan: What to do (from :func:`provision.sync.plan.plan`).
        progress: Called as bytes and files are sent.
        python: The host's python3 (absolute path preferred: nothing depends on PATH then).
        after_read: Test seam (see :data:`~provision.sync.report.ReadHook`).

    Raises:
        SourceChangedError: Local files kept changing while they were sent (everything else is done).
        RemoteError: A directory or file cannot be written (not writable, disk full) or python3 is
            missing on the host.
        ConnectError: The connection dropped.
        McpctlError: A local file cannot be read.
    """
    if plan.up_to_date and not plan.record_stale:
        return SyncResult(plan.remote_root)
    async with start_helper(remote, python) as helper:
        result = await apply_with(remote, helper, plan, progress, after_read)
    if result.unsettled:
        raise SourceChangedError([u.local_path for u in result.unsettled])
    return result
