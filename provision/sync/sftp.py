"""Large files over SFTP: pipelined writes to a temporary name, hashed on the way, then renamed.

SFTP is a subsystem (no shell) and takes writes of up to ~255 KiB with many in flight, so a large
file goes at the connection's speed; several sessions run at once (see :mod:`provision.sync.apply`).
OpenSSH's SFTP has no hash request, so the host's check is the temporary file's size before the
rename; what was read locally must hash to the plan's sha256 when the plan knows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import posixpath
import secrets
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import asyncssh
from rich.filesize import decimal as size_text

from provision.errors import McpctlError, RemoteError
from provision.sync.helper import temp_name
from provision.sync.helper_client import (
    CLEANUP_TIMEOUT,
    CONNECTION_LOST,
    dropped,
    start_helper,
    write_error,
)
from provision.sync.manifest import NS, FileEntry, file_mode
from provision.sync.plan import Upload
from provision.sync.transfer import (
    Sent,
    Tracker,
    Unsettled,
    as_planned,
    local_error,
    read_as_planned,
    replanned,
    sent_entry,
)

if TYPE_CHECKING:
    from provision.ssh.remote import Remote

SFTP_REQUESTS = 16  # writes in flight per file: 16 x 255 KiB covers sshd's 2 MiB channel window
SFTP_MIN_BLOCK = 32 * 1024  # every SFTP server accepts writes this large


def sftp_path_ok(path: str) -> bool:
    """asyncssh sends SFTP paths as UTF-8: names that are not valid UTF-8 go in the stream instead."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _discard(sftp: asyncssh.SFTPClient, path: str) -> None:
    """Remove our temp file after a failure (bounded; the next sync removes it if this cannot)."""
    with contextlib.suppress(asyncssh.Error, OSError, asyncio.TimeoutError):
        await asyncio.wait_for(sftp.remove(path), CLEANUP_TIMEOUT)


async def _sftp_error(
    remote: Remote, root: str, path: str, exc: asyncssh.SFTPError, size: int, python: str
) -> McpctlError:
    """Translate an SFTP failure writing ``path`` (``size`` bytes; our temp file is already removed)."""
    if isinstance(exc, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return write_error(remote, root, path, errno.ENOSPC, exc.reason)
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return write_error(remote, root, path, errno.EACCES, exc.reason)
    if isinstance(exc, asyncssh.SFTPFailure):
        # OpenSSH reports a full disk as a bare "Failure": ask the host how much room is left (a helper
        # of its own: the sync's helper may be in the middle of a stream).
        with contextlib.suppress(McpctlError):
            async with start_helper(remote, python) as helper:
                free = await helper.call(root, {"op": "free", "path": posixpath.dirname(path)})
            if isinstance(free, int) and free < max(size, SFTP_MIN_BLOCK):
                return write_error(remote, root, path, errno.ENOSPC, f"{exc.reason}, {size_text(free)} free")
    return write_error(remote, root, path, 0, exc.reason)


async def _settle(pending: set[asyncio.Future[int]], tracker: Tracker) -> set[asyncio.Future[int]]:
    """Wait for at least one write to be acknowledged; count what was; return the rest."""
    done, rest = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    tracker.add(sum(task.result() for task in done))
    return rest


async def _check_received(
    remote: Remote, root: str, handle: asyncssh.SFTPClientFile, dst: str, sent: int
) -> None:
    """Check on the host that the temp file holds every byte sent (OpenSSH's SFTP has no hash request).

    Raises:
        RemoteError: It holds another size.
    """
    received = (await handle.stat()).size
    if received != sent:
        raise write_error(
            remote, root, dst, errno.EIO, f"the temporary copy holds {received} of the {sent} bytes sent"
        )


async def _sftp_put(
    remote: Remote, sftp: asyncssh.SFTPClient, root: str, upload: Upload, tracker: Tracker, python: str
) -> FileEntry:
    """Upload one file to a temp name with pipelined writes, hashing it on the way, then rename it.

    sha256 runs in a worker thread fed in order and never waited for per block (hashlib releases the
    GIL), so the event loop, which encrypts everything sent on the connection, only reads and sends.
    Before the rename, what was read must be the planned file and the temp file must hold every byte.

    Raises:
        Unsettled: The local file is not the one planned (our temp file is removed).
        RemoteError, ConnectError, McpctlError: As :func:`provision.sync.apply.apply` says.
    """
    dst = posixpath.join(root, upload.path)
    tmp = posixpath.join(posixpath.dirname(dst), temp_name(posixpath.basename(dst), secrets.token_hex(6)))
    block = max(sftp.limits.max_write_len, SFTP_MIN_BLOCK)
    try:
        local = upload.local_path.open("rb", buffering=0)
    except OSError as exc:
        raise local_error(upload, exc) from exc
    digest = hashlib.sha256()
    hasher = ThreadPoolExecutor(1, thread_name_prefix="mcpctl-sha256")
    with local:
        st = os.fstat(local.fileno())
        if not as_planned(upload, st):
            raise Unsettled(upload.path)  # changed since the plan: nothing sent yet
        pending: set[asyncio.Future[int]] = set()
        hashed: Future[None] | None = None
        offset = 0
        try:
            handle = await sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=0o600), block_size=0)
            try:
                # At most one byte past the plan: enough to see that the file grew, bounded if it keeps on.
                while offset <= upload.size and (data := local.read(min(block, upload.size + 1 - offset))):
                    hashed = hasher.submit(digest.update, data)
                    pending.add(asyncio.ensure_future(handle.write(data, offset)))
                    offset += len(data)
                    tracker.read(upload.local_path, offset)
                    while len(pending) >= SFTP_REQUESTS:
                        pending = await _settle(pending, tracker)
                while pending:
                    pending = await _settle(pending, tracker)
                after = os.fstat(local.fileno())
                if hashed is not None:
                    await asyncio.wrap_future(hashed)  # one worker: the last update done means all are
                if not read_as_planned(upload, after, offset, digest.hexdigest()):
                    tracker.add(-offset)  # these bytes are thrown away
                    raise Unsettled(upload.path)
                await _check_received(remote, root, handle, dst, offset)
                mtime = st.st_mtime_ns // NS
                await handle.setstat(asyncssh.SFTPAttrs(permissions=file_mode(st), atime=mtime, mtime=mtime))
            except BaseException:
                for task in pending:
                    task.cancel()
                with contextlib.suppress(asyncssh.Error, OSError, asyncio.TimeoutError):
                    await asyncio.wait_for(handle.close(), CLEANUP_TIMEOUT)
                raise
            await handle.close()  # a write error reported only at close must stop the rename
            await sftp.posix_rename(tmp, dst)
        except BaseException as exc:
            if isinstance(exc, CONNECTION_LOST) or (
                isinstance(exc, asyncssh.Error) and remote.conn.is_closed()
            ):
                raise dropped(remote, exc) from exc
            await _discard(sftp, tmp)
            if isinstance(exc, asyncssh.SFTPError):
                raise await _sftp_error(remote, root, dst, exc, st.st_size, python) from exc
            if isinstance(exc, OSError):
                raise local_error(upload, exc) from exc
            raise
        finally:
            hasher.shutdown(wait=False, cancel_futures=True)
    tracker.add(0, 1)
    return sent_entry(upload, st, offset, digest.hexdigest())


async def _sftp_send(
    remote: Remote, sftp: asyncssh.SFTPClient, root: str, upload: Upload, tracker: Tracker, python: str
) -> FileEntry | None:
    """Upload a large file as planned or, if it changed, once more as it is now; None if it changed again."""
    try:
        return await _sftp_put(remote, sftp, root, upload, tracker, python)
    except Unsettled:
        pass
    try:
        return await _sftp_put(remote, sftp, root, replanned(upload), tracker, python)
    except Unsettled:
        return None


async def sftp_session(
    remote: Remote, root: str, uploads: Sequence[Upload], tracker: Tracker, python: str
) -> Sent:
    """Upload large files one after another over an SFTP session of our own.

    Raises:
        RemoteError: The host refused an SFTP session or a write.
        ConnectError: The connection dropped.
        McpctlError: A local file cannot be read.
    """
    async with remote.channel():
        try:
            sftp = await remote.conn.start_sftp_client()
        except (asyncssh.ChannelOpenError, asyncssh.SFTPError) as exc:
            raise RemoteError(
                f"{remote.target.address} refused an SFTP session ({exc.reason})",
                hint="enable SFTP in the host's sshd_config (`Subsystem sftp internal-sftp`) and allow at "
                "least 10 sessions (MaxSessions)",
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise dropped(remote, exc) from exc
        try:
            sent = Sent()
            for upload in uploads:
                entry = await _sftp_send(remote, sftp, root, upload, tracker, python)
                if entry is None:
                    sent.unsettled.append(upload)
                else:
                    sent.written[upload.path] = entry
            return sent
        finally:
            sftp.exit()
            with contextlib.suppress(asyncssh.Error, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(sftp.wait_closed(), CLEANUP_TIMEOUT)
