"""The local end of the sync helper: start it on the host, send it requests, read its replies.

A sync starts ONE helper process (:mod:`provision.sync.helper`, sent on its command line) and talks
to it over that one channel: the listing, creating directories, small files as one stream, deletes
and the manifest. The login shell, whose rc files can cost a lot per command, runs once per sync.

Here too the helper's replies and exits become our errors: a write the host refused (by errno), a
helper that stopped, a python that is missing, a connection that dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import inspect
import json
import posixpath
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import asyncssh

from provision.errors import ConnectError, RemoteError
from provision.layout import RemoteLayout
from provision.sync import helper as helper_program
from provision.sync.manifest import Manifest, manifest_from_listing
from provision.sync.rules import PRUNED_DIRS

if TYPE_CHECKING:
    from provision.ssh.remote import Remote

REMOTE_PYTHON = "python3"  # pass the absolute path bootstrap's probe found (HostFacts.python) when known
CLEANUP_TIMEOUT = 5.0  # seconds for removing our temp file or stopping the helper after a failure
KEEP = "every file not yet replaced keeps its previous version"
CONNECTION_LOST = (
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    asyncssh.DisconnectError,
    ConnectionError,
)
_NOT_WRITABLE = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EXDEV}
)


@functools.cache
def helper_source() -> str:
    """The helper program as sent to the host: the source of :mod:`provision.sync.helper`."""
    return inspect.getsource(helper_program)


def write_error(remote: Remote, root: str, path: str, code: int, reason: str) -> RemoteError:
    """The error for a file or directory the host would not write (``code``: its errno, 0 if unknown)."""
    where = remote.target.address
    if code in (errno.ENOSPC, errno.EDQUOT):
        return RemoteError(
            f"the remote disk is full: cannot write {path} on {where} ({reason})",
            hint=f"free space there (`df -h {root}`) and sync again ({KEEP})",
        )
    if code == errno.EISDIR:
        return RemoteError(
            f"{path} on {where} is a directory where the sync puts a file",
            hint=f"move that directory away on the host, then sync again ({KEEP})",
        )
    if code in (errno.EEXIST, errno.ENOTDIR):  # from creating a directory: a file stands in the way
        return RemoteError(
            f"{path} on {where} cannot be made a directory ({reason}): a file stands there or on the way",
            hint=f"move that file away on the host or set another remote_dir in the profile, then sync again "
            f"({KEEP})",
        )
    if code in _NOT_WRITABLE:
        return RemoteError(
            f"cannot write {path} on {where} ({reason})",
            hint=f"make it writable for user '{remote.target.user}' or set another remote_dir in the profile "
            f"({KEEP})",
        )
    return RemoteError(
        f"writing {path} on {where} failed ({reason})", hint=f"check that path on the host ({KEEP})"
    )


def dropped(remote: Remote, exc: BaseException) -> ConnectError:
    """The error for a connection that dropped during the sync."""
    reason = exc or type(exc).__name__
    return ConnectError(
        f"the SSH connection to {remote.target.address} dropped during the sync ({reason})",
        hint=f"run it again: {KEEP}, and the next sync removes the leftovers",
    )


class HelperProcess:
    """The helper process on the host for one sync (see :mod:`provision.sync.helper`)."""

    def __init__(self, remote: Remote, process: asyncssh.SSHClientProcess[bytes], python: str) -> None:
        self.remote = remote
        self.process = process
        self.python = python

    frame = staticmethod(helper_program.frame)

    async def write(self, data: bytes) -> bool:
        """Send bytes; False when the helper is gone (its reply, read next, says why).

        Raises:
            ConnectError: The connection dropped.
        """
        try:
            self.process.stdin.write(data)
            await self.process.stdin.drain()
        except CONNECTION_LOST as exc:
            if self.remote.conn.is_closed():
                raise dropped(self.remote, exc) from exc
            return False
        except (BrokenPipeError, asyncssh.Error):
            return False
        return True

    async def reply(self, root: str) -> Any:
        """Return the next ``ok`` value.

        Raises:
            RemoteError: The helper reported an error or ended without a reply.
            ConnectError: The connection dropped.
        """
        try:
            line = await self.process.stdout.readline()
        except (asyncssh.Error, OSError) as exc:
            raise dropped(self.remote, exc) from exc
        if line:
            try:
                answer = json.loads(line)
            except ValueError:
                answer = None
            if isinstance(answer, dict) and "ok" in answer:
                return answer["ok"]
            if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                err = answer["error"]
                path, code, reason = (
                    str(err.get("path")),
                    int(err.get("errno") or 0),
                    str(err.get("strerror")),
                )
                raise write_error(self.remote, root, path, code, reason)
            raise RemoteError(
                f"the sync helper on {self.remote.target.address} answered {line[:200]!r}", hint="sync again"
            )
        raise await self._stopped()

    async def _stopped(self) -> RemoteError | ConnectError:
        """Why the helper ended without a reply: python missing, the connection, or its own exit."""
        try:
            done = await asyncio.wait_for(self.process.wait(), CLEANUP_TIMEOUT)
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            return dropped(self.remote, exc)
        where = self.remote.target.address
        if done.returncode == 127:
            return RemoteError(
                f"{self.python} was not found on {where}",
                hint="install python3 (3.10 or newer) there and sync again",
            )
        if done.returncode is None and self.remote.conn.is_closed():
            return dropped(self.remote, ConnectionResetError("connection closed"))
        stderr = done.stderr.decode("utf-8", "replace") if isinstance(done.stderr, bytes) else ""
        return RemoteError(
            f"the sync helper ({self.python}) stopped on {where} with exit status {done.returncode} "
            f"({stderr.strip()[-300:] or 'no error output'})",
            hint="check python3 there and sync again",
        )

    async def call(self, root: str, request: Mapping[str, object]) -> Any:
        """Send one request and return its ``ok`` value (raises as :meth:`reply`)."""
        await self.write(self.frame(dict(request)))
        return await self.reply(root)

    async def close(self) -> None:
        """End the helper: at a request boundary it exits quietly, inside one it drops what it was writing.

        Waiting (bounded) for it to exit means no rename of ours can land after this returns.
        """
        with contextlib.suppress(asyncssh.Error, OSError, asyncio.TimeoutError):
            self.process.stdin.write_eof()
            await asyncio.wait_for(self.process.wait_closed(), CLEANUP_TIMEOUT)
        self.process.close()


@contextlib.asynccontextmanager
async def start_helper(remote: Remote, python: str = REMOTE_PYTHON) -> AsyncIterator[HelperProcess]:
    """Run the helper on the host for the duration of the block (``-I -S``: no site, no user paths).

    Raises:
        RemoteError: The host refused a new session or the login shell did not start it.
        ConnectError: The connection dropped.
    """
    process = await remote.create_process([python, "-I", "-S", "-c", helper_source()])
    helper = HelperProcess(remote, process, python)
    try:
        yield helper
    finally:
        await helper.close()


async def list_root(helper: HelperProcess, root: str) -> Manifest:
    """The remote manifest of ``root`` from one listing by a running helper.

    Raises:
        RemoteError: The listing failed or is malformed.
        ConnectError: The connection dropped.
    """
    manifest_path = str(RemoteLayout.of(root).manifest)
    request = {"op": "list", "root": root, "prune": list(PRUNED_DIRS), "manifest_path": manifest_path}
    listing = await helper.call(root, request)
    try:
        return manifest_from_listing(root, listing)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RemoteError(
            f"the listing of {root} on {helper.remote.target.address} is malformed ({exc})", hint="sync again"
        ) from exc


async def remote_manifest(remote: Remote, remote_root: str, *, python: str = REMOTE_PYTHON) -> Manifest:
    """List the files under ``remote_root`` with one remote command (a missing root is empty).

    Sizes, mtimes and modes are live; sha256 values come from the manifest file a previous sync wrote
    and are kept only for files whose size and mtime are still what it recorded.

    Raises:
        RemoteError: The listing failed (unreadable directory, no python3).
        ConnectError: The connection dropped.
    """
    root = posixpath.normpath(remote_root)
    async with start_helper(remote, python) as helper:
        return await list_root(helper, root)
