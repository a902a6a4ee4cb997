"""Push code and data to the host: plan (pure: local manifest vs remote manifest), then apply.

Plan, then apply: :func:`plan` compares two :class:`~provision.sync.manifest.Manifest` values and returns a
:class:`SyncPlan` that ``--dry-run`` prints and tests compare as data; :func:`apply` carries it out.

Atomic: every file is written to a temp name in its own directory (``.NAME.mcpctl-tmp-XXXXXXXXXXXX``),
given its mode and (whole-second) mtime, then renamed over the old one. The server never reads half a
file, an interrupted sync leaves old or new versions only, and the next sync removes its temp files.
The remote manifest file is written last, atomically.

Checked: what is sent is what was planned. Each file is hashed as it is read for sending; its size,
mtime (before and after the read) and, when the plan knows it, sha256 must match the plan before the
rename. A file that changed while it was read is not renamed into place: it is planned again from its
new state and sent once more, and if it is still changing it is left out (its old copy stays, the
manifest does not claim it) and the sync fails naming it, after every other file is done. The host
checks too: the helper hashes what it received, and an SFTP temp file's size is checked before it is
renamed.

Fast: a sync starts ONE helper process on the host (a python3 program sent on its command line) and
talks to it over that one channel: the listing, creating directories, small files as one stream (no
round trip per file), deletes and the manifest. The login shell, whose rc files can cost a lot per
command, runs once per sync. Large files go over SFTP (a subsystem: no shell) with pipelined writes,
several sessions at a time, hashed while they are read. A no-op sync is that one listing plus local
stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import posixpath
import secrets
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from provision.errors import ConnectError, McpctlError, RemoteError
from provision.sync.manifest import (
    MANIFEST_PATH,
    MANIFEST_VERSION,
    NS,
    PROTECTED_DIRS,
    PRUNED_DIRS,
    FileEntry,
    HashCache,
    Manifest,
    Skipped,
    SyncSource,
    file_mode,
    local_manifest,
    manifest_from_listing,
    merge,
    project_sources,
    temp_name,
)

if TYPE_CHECKING:
    from provision.ssh.remote import Remote

REMOTE_PYTHON = "python3"  # pass the absolute path bootstrap's probe found (HostFacts.python) when known
STREAM_MAX_FILE = 256 * 1024  # files up to this size go in the stream, larger ones over SFTP
STREAM_CHUNK = 1024 * 1024  # bytes buffered before each write to the stream (and progress report)
SFTP_SESSIONS = 4  # SFTP sessions for large files (each is one of the connection's 8 channels)
SFTP_REQUESTS = 16  # writes in flight per file: 16 x 255 KiB covers sshd's 2 MiB channel window
SFTP_MIN_BLOCK = 32 * 1024  # every SFTP server accepts writes this large
STREAM_READ = 64 * 1024  # small files are read in chunks of this size (the read hook runs after each)
CLEANUP_TIMEOUT = 5.0  # seconds for removing our temp file or stopping the helper after a failure

# The helper run on the host by `python3 -I -S -c` (stdlib only, Python >= 3.8 syntax). Requests
# arrive on stdin as (u32 length, JSON); a "file" request is followed by its bytes. Replies are JSON
# lines {"ok": value} or {"error": {errno, strerror, path}} (then it exits 1). End of input between
# requests ends it; end of input inside a request means the client gave up: it removes the temp file
# it was writing and exits 3, so a cut stream never renames a partial file into place. A file whose
# received bytes do not hash to the sha256 its request names is removed, never renamed (EIO).
_HELPER = r"""
import errno, fnmatch, json, os, re, struct, sys
TEMP = re.compile(r"\..*\.mcpctl-tmp-[0-9a-f]{12}\Z", re.S)
IN = sys.stdin.buffer
written = 0
def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
def fail(exc, path):
    reply({"error": {"errno": exc.errno or 0, "strerror": exc.strerror or str(exc), "path": path}})
    sys.exit(1)
def unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
SEQ = [int.from_bytes(os.urandom(6), "big")]
def temp_for(dst):
    d, name = os.path.split(dst)
    short = name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")
    SEQ[0] += 1  # a random start and a counter: unique names without a getrandom() per file
    return os.path.join(d, "." + short + ".mcpctl-tmp-%012x" % (SEQ[0] & 0xFFFFFFFFFFFF))
def check_inside(real_root, path):
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise OSError(errno.EXDEV, "it leads outside the remote directory through a symlink")
def target(root, rel):
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        fail(OSError(errno.EINVAL, "not a safe relative path"), rel)
    return os.path.join(root, rel)
def remove_inside(real_root, path):
    try:
        check_inside(real_root, os.path.dirname(path))
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        fail(exc, path)
def op_list(req):
    root, prune, files, temps, manifest = req["root"], req["prune"], [], [], None
    todo = [""] if os.path.isdir(root) else []
    while todo:
        rel = todo.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel)))
        except OSError as exc:
            fail(exc, os.path.join(root, rel))
        for e in entries:
            path = rel + e.name
            if e.is_dir(follow_symlinks=False):
                if not any(fnmatch.fnmatchcase(e.name, p) for p in prune):
                    todo.append(path + "/")
            elif e.is_file(follow_symlinks=False):
                if TEMP.match(e.name):
                    temps.append(path)
                else:
                    st = e.stat(follow_symlinks=False)
                    files.append([path, st.st_size, st.st_mtime_ns, st.st_mode & 0o7777])
    try:
        with open(os.path.join(root, req["manifest_path"]), encoding="utf-8") as f:
            manifest = f.read()
    except (OSError, ValueError):
        pass
    reply({"ok": {"files": files, "temps": temps, "manifest": manifest}})
def op_prepare(req):
    root = req["root"]
    try:
        os.makedirs(root, exist_ok=True)
        real_root = os.path.realpath(root)
    except OSError as exc:
        fail(exc, root)
    for rel in req["dirs"]:
        path = target(root, rel) if rel else root
        try:
            os.makedirs(path, exist_ok=True)
            check_inside(real_root, path)
            probe = temp_for(os.path.join(path, "probe"))  # proves we can create files there
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            fail(exc, path)
    for rel in req["remove"]:
        path = target(root, rel)
        if TEMP.match(os.path.basename(path)):
            remove_inside(real_root, path)
    reply({"ok": True})
def op_file(req):
    global written
    dst = target(req["root"], req["p"])
    tmp = temp_for(dst)
    import hashlib  # here, not at the top: a sync that sends nothing does not pay its ~5 ms import
    digest = hashlib.sha256()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            left = req["s"]
            while left:
                data = IN.read(min(left, 1 << 20))
                if not data:
                    unlink_quietly(tmp)
                    sys.exit(3)
                digest.update(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                left -= len(data)
            if digest.hexdigest() != req["h"]:
                raise OSError(errno.EIO, "the bytes received differ from the bytes sent")
            os.fchmod(fd, req["x"])
            os.utime(fd, (req["m"], req["m"]))
        finally:
            os.close(fd)
        os.replace(tmp, dst)
    except OSError as exc:
        unlink_quietly(tmp)
        fail(exc, dst)
    written += 1
def op_barrier(req):
    global written
    reply({"ok": written})
    written = 0
def op_finalize(req):
    root = req["root"]
    real_root = os.path.realpath(root)
    for rel in req["delete"]:
        path = target(root, rel)
        remove_inside(real_root, path)
        parent = os.path.dirname(path)
        while parent.startswith(root.rstrip("/") + "/"):
            try:
                os.rmdir(parent)  # succeeds only for a directory the deletes left empty
            except OSError:
                break
            parent = os.path.dirname(parent)
    if req["manifest"] is not None:
        dst = os.path.join(root, req["manifest_path"])
        tmp = temp_for(dst)
        try:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            for name in os.listdir(os.path.dirname(dst)):
                if TEMP.match(name):
                    unlink_quietly(os.path.join(os.path.dirname(dst), name))
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(req["manifest"], f, separators=(",", ":"))
            os.replace(tmp, dst)
        except OSError as exc:
            unlink_quietly(tmp)
            fail(exc, dst)
    reply({"ok": True})
def op_free(req):
    path = req["path"]
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    reply({"ok": st.f_bavail * st.f_frsize})
OPS = {"list": op_list, "prepare": op_prepare, "file": op_file, "barrier": op_barrier,
       "finalize": op_finalize, "free": op_free}
while True:
    head = IN.read(4)
    if not head:
        break
    body = IN.read(struct.unpack(">I", head)[0]) if len(head) == 4 else b""
    try:
        req = json.loads(body)
    except ValueError:
        sys.exit(3)
    OPS[req["op"]](req)
"""


# ------------------------------------------------------------------------------------------- plan


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
                [f"{self.remote_root}: up to date ({len(self.unchanged)} files{skipped})", *_skip_lines(self)]
            )
        lines = [
            f"{self.remote_root}: {len(self.uploads)} to send ({_size(self.bytes_to_send)}), "
            f"{len(self.deletes)} to delete, {len(self.unchanged)} unchanged"
            + (f", {len(self.cleanup)} stale temp files to remove" if self.cleanup else "")
            + skipped
        ]
        lines += [
            f"  {'+' if u.reason == 'new' else '~'} {u.path} ({u.reason}, {_size(u.size)})"
            for u in self.uploads
        ]
        lines += [f"  - {path}" for path in self.deletes]
        lines += _skip_lines(self)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _skip_lines(plan: SyncPlan) -> list[str]:
    return [f"  ! {s.path} (skipped: {s.reason})" for s in plan.skipped]


def _size(n: int) -> str:
    """Format a byte count for people (decimal units, as rich's progress bars show them)."""
    if n < 1000:
        return f"{n} B"
    value, unit = n / 1000, "kB"
    for bigger in ("MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.1f} {unit}"


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


def _protected(path: str) -> bool:
    return bool(PROTECTED_DIRS & set(path.split("/")[:-1]))


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
            if path not in kept and is_safe_path(path) and not _protected(path) and local.manages(path)
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


# ------------------------------------------------------------------------------------------ apply


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


class SourceChangedError(McpctlError):
    """Local files changed while they were being sent: their old copies stay on the host.

    Raised once everything else is done (sent, deleted, manifest written). ``paths`` are the local
    files; ``report`` is the sync's report when :func:`sync` raised it (None from :func:`apply`).
    """

    def __init__(self, paths: Sequence[Path], report: SyncReport | None = None) -> None:
        if len(paths) == 1:
            message = (
                f"{paths[0]} changed while it was being sent; nothing was replaced for it - run "
                "`mcpctl sync` again when it is no longer being written."
            )
        else:
            names = ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
            message = (
                f"{len(paths)} files changed while they were being sent ({names}); nothing was replaced "
                "for them - run `mcpctl sync` again when they are no longer being written."
            )
        super().__init__(message)
        self.paths = tuple(paths)
        self.report = report


class _Unsettled(Exception):
    """What was read of a local file is not the file its plan describes: it changed meanwhile."""


@dataclass
class _Sent:
    """What one upload job did: files written, and files left out because they kept changing."""

    written: dict[str, FileEntry] = field(default_factory=dict)
    unsettled: list[Upload] = field(default_factory=list)


class _Tracker:
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


_KEEP = "every file not yet replaced keeps its previous version"


def _write_error(remote: Remote, root: str, path: str, code: int, reason: str) -> RemoteError:
    where = remote.target.address
    if code in (errno.ENOSPC, errno.EDQUOT):
        return RemoteError(
            f"the remote disk is full: cannot write {path} on {where} ({reason}); free space there "
            f"(`df -h {root}`) and sync again ({_KEEP})."
        )
    if code in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.EISDIR,
        errno.EXDEV,
    ):
        return RemoteError(
            f"cannot write {path} on {where} ({reason}); make it writable for user '{remote.target.user}' "
            f"or set another remote_dir in the profile ({_KEEP})."
        )
    return RemoteError(f"writing {path} on {where} failed ({reason}); check that path on the host ({_KEEP}).")


def _dropped(remote: Remote, exc: BaseException) -> ConnectError:
    return ConnectError(
        f"the SSH connection to {remote.target.address} dropped during the sync "
        f"({exc or type(exc).__name__}); run it again: {_KEEP}, and the next sync removes the leftovers."
    )


_CONNECTION_LOST = (
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    asyncssh.DisconnectError,
    ConnectionError,
)


class _Helper:
    """The helper process on the host for one sync (see ``_HELPER``)."""

    def __init__(self, remote: Remote, process: asyncssh.SSHClientProcess[bytes], python: str) -> None:
        self.remote = remote
        self.process = process
        self.python = python

    @staticmethod
    def frame(request: Mapping[str, object], data: bytes = b"") -> bytes:
        """Encode one request (JSON is ASCII: paths that are not UTF-8 travel as escapes)."""
        body = json.dumps(request).encode("ascii")
        return struct.pack(">I", len(body)) + body + data

    async def write(self, data: bytes) -> bool:
        """Send bytes; False when the helper is gone (its reply, read next, says why).

        Raises:
            ConnectError: The connection dropped.
        """
        try:
            self.process.stdin.write(data)
            await self.process.stdin.drain()
        except _CONNECTION_LOST as exc:
            if self.remote.conn.is_closed():
                raise _dropped(self.remote, exc) from exc
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
            raise _dropped(self.remote, exc) from exc
        if line:
            try:
                answer = json.loads(line)
            except ValueError:
                answer = None
            if isinstance(answer, dict) and "ok" in answer:
                return answer["ok"]
            if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                err = answer["error"]
                raise _write_error(
                    self.remote,
                    root,
                    str(err.get("path")),
                    int(err.get("errno") or 0),
                    str(err.get("strerror")),
                )
            raise RemoteError(
                f"the sync helper on {self.remote.target.address} answered {line[:200]!r}; sync again."
            )
        try:
            done = await asyncio.wait_for(self.process.wait(), CLEANUP_TIMEOUT)
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            raise _dropped(self.remote, exc) from exc
        where = self.remote.target.address
        if done.returncode == 127:
            raise RemoteError(
                f"{self.python} was not found on {where}; install python3 (3.10 or newer) there and "
                "sync again."
            )
        if done.returncode is None and self.remote.conn.is_closed():
            raise _dropped(self.remote, ConnectionResetError("connection closed"))
        stderr = done.stderr.decode("utf-8", "replace") if isinstance(done.stderr, bytes) else ""
        raise RemoteError(
            f"the sync helper ({self.python}) stopped on {where} with exit status {done.returncode} "
            f"({stderr.strip()[-300:] or 'no error output'}); check python3 there and sync again."
        )

    async def call(self, root: str, request: Mapping[str, object]) -> Any:
        """Send one request and return its ``ok`` value (raises as :meth:`reply`)."""
        await self.write(self.frame(request))
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
async def _helper(remote: Remote, python: str) -> AsyncIterator[_Helper]:
    process = await remote.create_process([python, "-I", "-S", "-c", _HELPER])
    helper = _Helper(remote, process, python)
    try:
        yield helper
    finally:
        await helper.close()


async def _list(helper: _Helper, root: str) -> Manifest:
    request = {"op": "list", "root": root, "prune": list(PRUNED_DIRS), "manifest_path": MANIFEST_PATH}
    listing = await helper.call(root, request)
    try:
        return manifest_from_listing(root, listing)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RemoteError(
            f"the listing of {root} on {helper.remote.target.address} is malformed ({exc}); sync again."
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
    async with _helper(remote, python) as helper:
        return await _list(helper, root)


def _as_planned(upload: Upload, st: os.stat_result) -> bool:
    """Whether the local file still has the size and mtime it was planned with."""
    return (st.st_size, st.st_mtime_ns) == (upload.size, upload.mtime_ns)


def _read_as_planned(upload: Upload, after: os.stat_result, nbytes: int, sha256: str) -> bool:
    """Whether a finished read got the planned file: every planned byte, no more, the size and mtime
    unchanged after the last read, and the planned sha256 when the plan knows it.

    mtime has the kernel clock's granularity (a few ms): a same-size rewrite within one tick of the
    plan's stat changes neither size nor mtime, and only a planned sha256 catches it.
    """
    return (
        nbytes == upload.size
        and _as_planned(upload, after)
        and (upload.sha256 is None or upload.sha256 == sha256)
    )


def _replanned(upload: Upload) -> Upload:
    """Plan ``upload`` again from the local file as it is now (its content hash unknown)."""
    try:
        st = os.stat(upload.local_path)
    except OSError as exc:
        raise _local_error(upload, exc) from exc
    return replace(upload, size=st.st_size, mtime_ns=st.st_mtime_ns, mode=file_mode(st), sha256=None)


def _read_local(upload: Upload, tracker: _Tracker) -> tuple[bytes, os.stat_result, str]:
    """Read a small file whole, in chunks, and check it against its plan: (data, stat, sha256).

    Raises:
        _Unsettled: The file is not the one planned (it changed before or while it was read).
        McpctlError: It cannot be read.
    """
    chunks: list[bytes] = []
    nbytes = 0
    try:
        with upload.local_path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            if not _as_planned(upload, st):
                raise _Unsettled(upload.path)
            # At most one byte past the plan: enough to see that the file grew, bounded if it keeps on.
            while nbytes <= upload.size and (
                chunk := handle.read(min(STREAM_READ, upload.size + 1 - nbytes))
            ):
                chunks.append(chunk)
                nbytes += len(chunk)
                tracker.read(upload.local_path, nbytes)
            after = os.fstat(handle.fileno())
    except OSError as exc:
        raise _local_error(upload, exc) from exc
    data = b"".join(chunks)
    sha256 = hashlib.sha256(data).hexdigest()
    if not _read_as_planned(upload, after, len(data), sha256):
        raise _Unsettled(upload.path)
    return data, st, sha256


def _read_settled(upload: Upload, tracker: _Tracker) -> tuple[bytes, FileEntry] | None:
    """Read a small file as planned or, if it changed, once more as it is now; None if it changed again."""
    try:
        data, st, sha256 = _read_local(upload, tracker)
        return data, _sent(upload, st, len(data), sha256)
    except _Unsettled:
        pass
    again = _replanned(upload)
    try:
        data, st, sha256 = _read_local(again, tracker)
    except _Unsettled:
        return None
    return data, _sent(again, st, len(data), sha256)


def _local_error(upload: Upload, exc: OSError) -> McpctlError:
    return McpctlError(
        f"cannot read {upload.local_path} ({exc.strerror or exc}); it changed during the sync: run it again."
    )


def _sent(upload: Upload, st: os.stat_result, size: int, sha: str) -> FileEntry:
    return FileEntry(size, st.st_mtime_ns, sha, file_mode(st), upload.local_path, st.st_mtime_ns)


async def _stream(helper: _Helper, root: str, uploads: Sequence[Upload], tracker: _Tracker) -> _Sent:
    """Send small files to the helper in one stream: no round trip per file, one barrier at the end.

    Each file is read and checked whole before it is framed, so one that keeps changing is never sent.
    """
    sent = _Sent()
    buffer = bytearray()
    waiting = [0, 0]  # bytes and files in the buffer, reported once they are handed to SSH
    alive = True
    for upload in uploads:
        settled = _read_settled(upload, tracker)
        if settled is None:
            sent.unsettled.append(upload)
            continue
        data, entry = settled
        request = {
            "op": "file",
            "root": root,
            "p": upload.path,
            "s": entry.size,
            "m": entry.mtime_s,
            "x": entry.mode,
            "h": entry.sha256,
        }
        buffer += helper.frame(request, data)
        sent.written[upload.path] = entry
        waiting = [waiting[0] + entry.size, waiting[1] + 1]
        if len(buffer) >= STREAM_CHUNK:
            alive = await helper.write(bytes(buffer))
            buffer.clear()
            if not alive:
                break  # the helper stopped: the barrier's reply says why
            tracker.add(*waiting)
            waiting = [0, 0]
    if alive and await helper.write(bytes(buffer) + helper.frame({"op": "barrier"})):
        tracker.add(*waiting)
    count = await helper.reply(root)
    if count != len(sent.written):
        raise RemoteError(
            f"the sync helper on {helper.remote.target.address} wrote {count} of {len(sent.written)} files; "
            "sync again."
        )
    return sent


async def _discard(sftp: asyncssh.SFTPClient, path: str) -> None:
    """Remove our temp file after a failure (bounded; the next sync removes it if this cannot)."""
    with contextlib.suppress(asyncssh.Error, OSError, asyncio.TimeoutError):
        await asyncio.wait_for(sftp.remove(path), CLEANUP_TIMEOUT)


async def _sftp_error(
    remote: Remote, root: str, path: str, exc: asyncssh.SFTPError, size: int, python: str
) -> McpctlError:
    """Translate an SFTP failure writing ``path`` (``size`` bytes; our temp file is already removed)."""
    if isinstance(exc, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return _write_error(remote, root, path, errno.ENOSPC, exc.reason)
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return _write_error(remote, root, path, errno.EACCES, exc.reason)
    if isinstance(exc, asyncssh.SFTPFailure):
        # OpenSSH reports a full disk as a bare "Failure": ask the host how much room is left (a helper
        # of its own: the sync's helper may be in the middle of a stream).
        with contextlib.suppress(McpctlError):
            async with _helper(remote, python) as helper:
                free = await helper.call(root, {"op": "free", "path": posixpath.dirname(path)})
            if isinstance(free, int) and free < max(size, SFTP_MIN_BLOCK):
                return _write_error(remote, root, path, errno.ENOSPC, f"{exc.reason}, {_size(free)} free")
    return _write_error(remote, root, path, 0, exc.reason)


async def _settle(pending: set[asyncio.Future[int]], tracker: _Tracker) -> set[asyncio.Future[int]]:
    """Wait for at least one write to be acknowledged; count what was; return the rest."""
    done, rest = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    tracker.add(sum(task.result() for task in done))
    return rest


async def _sftp_put(
    remote: Remote, sftp: asyncssh.SFTPClient, root: str, upload: Upload, tracker: _Tracker, python: str
) -> FileEntry:
    """Upload one file to a temp name with pipelined writes, hashing it on the way, then rename it.

    sha256 runs in a worker thread fed in order and never waited for per block (hashlib releases the
    GIL), so the event loop, which encrypts everything sent on the connection, only reads and sends.
    Before the rename, what was read must be the planned file and the temp file must hold every byte.

    Raises:
        _Unsettled: The local file is not the one planned (our temp file is removed).
        RemoteError, ConnectError, McpctlError: As :func:`apply` says.
    """
    dst = posixpath.join(root, upload.path)
    tmp = posixpath.join(posixpath.dirname(dst), temp_name(posixpath.basename(dst), secrets.token_hex(6)))
    block = max(sftp.limits.max_write_len, SFTP_MIN_BLOCK)
    try:
        local = upload.local_path.open("rb", buffering=0)
    except OSError as exc:
        raise _local_error(upload, exc) from exc
    digest = hashlib.sha256()
    hasher = ThreadPoolExecutor(1, thread_name_prefix="mcpctl-sha256")
    with local:
        st = os.fstat(local.fileno())
        if not _as_planned(upload, st):
            raise _Unsettled(upload.path)  # changed since the plan: nothing sent yet
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
                if not _read_as_planned(upload, after, offset, digest.hexdigest()):
                    tracker.add(-offset)  # these bytes are thrown away
                    raise _Unsettled(upload.path)
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
            if isinstance(exc, _CONNECTION_LOST) or (
                isinstance(exc, asyncssh.Error) and remote.conn.is_closed()
            ):
                raise _dropped(remote, exc) from exc
            await _discard(sftp, tmp)
            if isinstance(exc, asyncssh.SFTPError):
                raise await _sftp_error(remote, root, dst, exc, st.st_size, python) from exc
            if isinstance(exc, OSError):
                raise _local_error(upload, exc) from exc
            raise
        finally:
            hasher.shutdown(wait=False, cancel_futures=True)
    tracker.add(0, 1)
    return _sent(upload, st, offset, digest.hexdigest())


async def _check_received(
    remote: Remote, root: str, handle: asyncssh.SFTPClientFile, dst: str, sent: int
) -> None:
    """Check on the host that the temp file holds every byte sent (OpenSSH's SFTP has no hash request).

    Raises:
        RemoteError: It holds another size.
    """
    received = (await handle.stat()).size
    if received != sent:
        raise _write_error(
            remote, root, dst, errno.EIO, f"the temporary copy holds {received} of the {sent} bytes sent"
        )


async def _sftp_send(
    remote: Remote, sftp: asyncssh.SFTPClient, root: str, upload: Upload, tracker: _Tracker, python: str
) -> FileEntry | None:
    """Upload a large file as planned or, if it changed, once more as it is now; None if it changed again."""
    try:
        return await _sftp_put(remote, sftp, root, upload, tracker, python)
    except _Unsettled:
        pass
    try:
        return await _sftp_put(remote, sftp, root, _replanned(upload), tracker, python)
    except _Unsettled:
        return None


async def _sftp_session(
    remote: Remote, root: str, uploads: Sequence[Upload], tracker: _Tracker, python: str
) -> _Sent:
    """Upload large files one after another over an SFTP session of our own."""
    async with remote.channel():
        try:
            sftp = await remote.conn.start_sftp_client()
        except (asyncssh.ChannelOpenError, asyncssh.SFTPError) as exc:
            raise RemoteError(
                f"{remote.target.address} refused an SFTP session ({exc.reason}); enable SFTP in the host's "
                "sshd_config (`Subsystem sftp internal-sftp`) and allow at least 10 sessions (MaxSessions)."
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise _dropped(remote, exc) from exc
        try:
            sent = _Sent()
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


async def _all(jobs: Sequence[Awaitable[_Sent]]) -> _Sent:
    """Run jobs concurrently; the first failure cancels the others (which clean up) and is raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    if not tasks:
        return _Sent()
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
    merged = _Sent()
    for task in tasks:
        merged.written.update(task.result().written)
        merged.unsettled += task.result().unsettled
    return merged


def _buckets(uploads: Sequence[Upload], count: int) -> list[list[Upload]]:
    """Spread files over ``count`` sessions, largest first onto the least loaded one."""
    buckets: list[list[Upload]] = [[] for _ in range(min(count, len(uploads)))]
    loads = [0] * len(buckets)
    for upload in sorted(uploads, key=lambda u: -u.size):
        index = loads.index(min(loads))
        buckets[index].append(upload)
        loads[index] += upload.size
    return buckets


def _sftp_path_ok(path: str) -> bool:
    """asyncssh sends SFTP paths as UTF-8: names that are not valid UTF-8 go in the stream instead."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _apply(
    remote: Remote,
    helper: _Helper,
    plan: SyncPlan,
    progress: ProgressCallback | None,
    after_read: ReadHook | None = None,
) -> SyncResult:
    started = time.perf_counter()
    root = plan.remote_root
    if plan.up_to_date and not plan.record_stale:
        return SyncResult(root, seconds=time.perf_counter() - started)
    if plan.uploads or plan.cleanup:
        dirs = sorted({posixpath.dirname(u.path) for u in plan.uploads})
        await helper.call(root, {"op": "prepare", "root": root, "dirs": dirs, "remove": list(plan.cleanup)})
    tracker = _Tracker(plan, progress, after_read)
    large = [u for u in plan.uploads if u.size > STREAM_MAX_FILE and _sftp_path_ok(u.path)]
    small = [u for u in plan.uploads if u not in large]
    jobs = [
        _sftp_session(remote, root, bucket, tracker, helper.python)
        for bucket in _buckets(large, SFTP_SESSIONS)
    ]
    if small:
        jobs.append(_stream(helper, root, small, tracker))
    sent = await _all(jobs)
    written = sent.written
    # A file left out is not claimed: the host keeps its old copy, which the next sync compares anew.
    manifest = {
        p: [e.size, e.mtime_s, e.sha256, e.mode, e.origin_mtime_ns]
        for p, e in sorted({**plan.record, **written}.items())
    }
    request = {
        "op": "finalize",
        "root": root,
        "delete": list(plan.deletes),
        "manifest": {"version": MANIFEST_VERSION, "files": manifest},
        "manifest_path": MANIFEST_PATH,
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

    Small files go in one stream through the helper, large ones over up to :data:`SFTP_SESSIONS` SFTP
    sessions, all at once. Each file is replaced atomically; after a failure or cancellation every
    file is in its old or its new version. A file that changed while it was read is sent once more as
    it is now; one that changed again keeps its old copy and fails the apply once the rest is done.

    Args:
        remote: The open connection.
        plan: What to do (from :func:`plan`).
        progress: Called as bytes and files are sent.
        python: The host's python3 (absolute path preferred: nothing depends on PATH then).
        after_read: Test seam (see :data:`ReadHook`).

    Raises:
        SourceChangedError: Local files kept changing while they were sent (everything else is done).
        RemoteError: A directory or file cannot be written (not writable, disk full) or python3 is
            missing on the host.
        ConnectError: The connection dropped.
        McpctlError: A local file cannot be read.
    """
    if plan.up_to_date and not plan.record_stale:
        return SyncResult(plan.remote_root)
    async with _helper(remote, python) as helper:
        result = await _apply(remote, helper, plan, progress, after_read)
    if result.unsettled:
        raise SourceChangedError([u.local_path for u in result.unsettled])
    return result


# ------------------------------------------------------------------------------------------- sync


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
                f"sent {self.files_sent} files ({_size(self.bytes_sent)}), deleted {self.deleted}, "
                f"{unchanged} unchanged{skipped}, in {self.seconds:.2f} s"
            )
        return "\n".join([summary, *(line for p in self.plans for line in _skip_lines(p))])


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
                    f"cannot read {want.local_path} ({exc.strerror or exc}); check it."
                ) from exc
            files[path] = replace(want, sha256=sha)
    return replace(local, files=files)


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
        sources: What to send where (see :func:`provision.sync.manifest.project_sources`).
        delete: Also delete remote files the sources manage that no longer exist locally.
        dry_run: Only plan; the report's plans say what would happen.
        progress: Called with bytes and files done and total over the whole sync.
        cache: Local sha256 cache (default: the one in mcpctl's state directory).
        python: The host's python3 (absolute path preferred).
        after_read: Test seam (see :data:`ReadHook`).

    Raises:
        SourceChangedError: Local files kept changing while they were sent; everything else is done and
            its ``report`` says what.
        RemoteError, ConnectError, McpctlError: See :func:`apply` and :func:`remote_manifest`.
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
        async with _helper(remote, python) as helper:
            listings = [await _list(helper, group[0].remote_root) for group in groups]
            for local, there in zip(await walking, listings, strict=True):
                local = await asyncio.to_thread(_fill_hashes, local, there, cache)
                plans.append(plan(local, there, delete=delete))
            if not dry_run:
                total = SyncProgress(
                    0, sum(p.bytes_to_send for p in plans), 0, sum(len(p.uploads) for p in plans)
                )
                for each in plans:
                    results.append(await _apply(remote, helper, each, _offset(progress, total), after_read))
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


__all__ = [
    "REMOTE_PYTHON",
    "FileEntry",
    "HashCache",
    "Manifest",
    "ProgressCallback",
    "ReadHook",
    "Skipped",
    "SourceChangedError",
    "SyncPlan",
    "SyncProgress",
    "SyncReport",
    "SyncResult",
    "SyncSource",
    "Upload",
    "apply",
    "is_safe_path",
    "local_manifest",
    "plan",
    "project_sources",
    "remote_manifest",
    "sync",
]
