"""``mcpctl sync`` end to end: walk, list, plan and apply every remote root over one helper process.

Fast: the local walk runs while the helper starts and lists the host; local files are hashed only when
a comparison needs it (and then cached); large files go over SFTP, several sessions at a time, hashed
while they are read. A no-op sync is that one listing plus local stats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from provision.errors import McpctlError
from provision.sync.apply import apply_with
from provision.sync.hashing import HashCache
from provision.sync.helper_client import REMOTE_PYTHON, list_root, start_helper
from provision.sync.manifest import Manifest, merge
from provision.sync.plan import SyncPlan, plan
from provision.sync.report import (
    ProgressCallback,
    ReadHook,
    SourceChangedError,
    SyncProgress,
    SyncReport,
    SyncResult,
)
from provision.sync.scan import local_manifest
from provision.sync.sources import SyncSource

if TYPE_CHECKING:
    from provision.ssh.remote import Remote


def _groups(sources: Sequence[SyncSource]) -> list[list[SyncSource]]:
    """Group sources whose remote roots nest, so that each group is one listing and one plan."""
    groups: list[list[SyncSource]] = []
    for source in sorted(sources, key=lambda s: len(s.remote_root)):
        for group in groups:
            top = group[0].remote_root
            if source.remote_root == top or source.remote_root.startswith(top.rstrip("/") + "/"):
                group.append(source)
                break
        else:
            groups.append([source])
    return groups


def _fill_hashes(local: Manifest, remote: Manifest, cache: HashCache) -> Manifest:
    """Hash the local files whose comparison needs it: remote hash known, same size, and a local mtime
    other than the one the remote content was sent from (even within the same second).

    Raises:
        McpctlError: A local file cannot be read.
    """
    files = dict(local.files)
    for path, want in local.files.items():
        have = remote.files.get(path)
        if have is None or want.sha256 is not None or have.sha256 is None or want.local_path is None:
            continue
        if want.size == have.size and want.mtime_ns != have.origin_mtime_ns:
            try:
                sha = cache.hash(want.local_path, want.size, want.mtime_ns)
            except OSError as exc:
                raise McpctlError(
                    f"cannot read {want.local_path} ({exc.strerror or exc})", hint="check it"
                ) from exc
            files[path] = replace(want, sha256=sha)
    return replace(local, files=files)


def _offset(progress: ProgressCallback | None, base: SyncProgress) -> ProgressCallback | None:
    """Report one plan's progress as part of the whole sync."""
    if progress is None:
        return None

    def report(step: SyncProgress) -> None:
        progress(
            replace(
                base,
                bytes_done=base.bytes_done + step.bytes_done,
                files_done=base.files_done + step.files_done,
            )
        )

    return report


async def sync(
    remote: Remote,
    sources: Sequence[SyncSource],
    *,
    delete: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    cache: HashCache | None = None,
    python: str = REMOTE_PYTHON,
    after_read: ReadHook | None = None,
) -> SyncReport:
    """Plan and (unless ``dry_run``) apply the sync of ``sources`` to the host, over one helper process.

    Args:
        remote: The open connection.
        sources: What to send where (see :func:`provision.sync.sources.project_sources`).
        delete: Also delete remote files the sources manage that no longer exist locally.
        dry_run: Only plan; the report's plans say what would happen.
        progress: Called with bytes and files done and total over the whole sync.
        cache: Local sha256 cache (default: the one in mcpctl's state directory).
        python: The host's python3 (absolute path preferred).
        after_read: Test seam (see :data:`~provision.sync.report.ReadHook`).

    Raises:
        SourceChangedError: Local files kept changing while they were sent; everything else is done and
            its ``report`` says what.
        RemoteError, ConnectError, McpctlError: See :func:`provision.sync.apply.apply` and
            :func:`provision.sync.helper_client.remote_manifest`.
        ProfileError: The default hash cache's directory cannot be created.
    """
    started = time.perf_counter()
    cache = HashCache.default() if cache is None else cache
    groups = _groups(sources)
    plans: list[SyncPlan] = []
    results: list[SyncResult] = []

    def walk() -> list[Manifest]:
        return [merge([local_manifest(s, cache=cache, hash_files=False) for s in g]) for g in groups]

    # The local walk (only reads the cache) runs while the helper starts and lists the host.
    walking = asyncio.ensure_future(asyncio.to_thread(walk))
    try:
        async with start_helper(remote, python) as helper:
            listings = [await list_root(helper, group[0].remote_root) for group in groups]
            for local, there in zip(await walking, listings, strict=True):
                local = await asyncio.to_thread(_fill_hashes, local, there, cache)
                plans.append(plan(local, there, delete=delete))
            if not dry_run:
                total = SyncProgress(
                    0, sum(p.bytes_to_send for p in plans), 0, sum(len(p.uploads) for p in plans)
                )
                for each in plans:
                    results.append(
                        await apply_with(remote, helper, each, _offset(progress, total), after_read)
                    )
                    for entry in results[-1].written.values():
                        if entry.local_path is not None and entry.sha256 is not None:
                            cache.put(entry.local_path, entry.size, entry.mtime_ns, entry.sha256)
                    total = replace(
                        total,
                        bytes_done=total.bytes_done + each.bytes_to_send,
                        files_done=total.files_done + len(each.uploads),
                    )
    finally:
        if not walking.done():
            await asyncio.wait([walking])  # never leave the thread running (nor its error unread)
        if not walking.cancelled():
            walking.exception()
        cache.save()
    report = SyncReport(tuple(plans), tuple(results), dry_run, time.perf_counter() - started)
    if report.unsettled:
        raise SourceChangedError([u.local_path for u in report.unsettled], report)
    return report
