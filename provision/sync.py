"""Push code and data to the host: plan (pure: local manifest vs remote manifest), then apply.

Plan, then apply: :func:`plan` compares two :class:`~provision.manifest.Manifest` values and returns a
:class:`SyncPlan` that ``--dry-run`` prints and tests compare as data; :func:`apply` carries it out.

Atomic: every file is written to a temp name in its own directory (``.NAME.mcpctl-tmp-XXXXXXXXXXXX``),
given its mode and (whole-second) mtime, then renamed over the old one. The server never reads half a
file, an interrupted sync leaves old or new versions only, and its temp files are removed by the next
sync. The remote manifest file is written last, atomically.

Fast: the remote listing is one command. Small files travel in one stream to a small python3
receiver on the host (no round trip per file); large files go over SFTP with pipelined writes, several
SFTP sessions at a time, hashed while they are read. A no-op sync is one remote command plus local
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
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from provision.errors import ConnectError, McpctlError, RemoteError
from provision.manifest import (
    MANIFEST_PATH,
    MANIFEST_VERSION,
    NS,
    PROTECTED_DIRS,
    FileEntry,
    HashCache,
    Manifest,
    SyncSource,
    local_manifest,
    merge,
    remote_manifest,
    temp_name,
)

if TYPE_CHECKING:
    from provision.remote import Remote

REMOTE_PYTHON = "python3"  # resolved by sshd's default PATH, not by rc files
STREAM_MAX_FILE = 256 * 1024  # files up to this size go in the stream, larger ones over SFTP
STREAM_CHUNK = 256 * 1024  # bytes buffered before each write to the stream
SFTP_SESSIONS = 4  # SFTP sessions for large files (each is one of the connection's 8 channels)
SFTP_REQUESTS = 16  # writes in flight per file: 16 x 255 KiB fills sshd's 2 MiB channel window
SFTP_MIN_BLOCK = 32 * 1024  # every SFTP server accepts writes this large
CLEANUP_TIMEOUT = 5.0  # seconds for removing our temp file after a failure or cancellation

# Runs on the host under python3 (>= 3.8 syntax). argv: MODE ROOT; requests come on stdin.
# prepare: create directories, prove each is writable, remove stale temp files.
# receive: frames of (u32 header length, JSON header {p, s, m, x}, s bytes); a 0 length ends the stream.
# finalize: delete files (and directories left empty), then write the manifest file atomically.
# free: report free bytes of the filesystem of ROOT's nearest existing ancestor.
# Success prints {"ok": ...}; an OSError prints {"error": {...}} and exits 1.
_AGENT = r"""
import errno, json, os, re, struct, sys
MODE, ROOT = sys.argv[1], os.path.normpath(sys.argv[2])
TEMP = re.compile(r"\..*\.mcpctl-tmp-[0-9a-f]{12}\Z", re.S)
def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
def fail(exc, path):
    out({"error": {"errno": exc.errno or 0, "strerror": exc.strerror or str(exc), "path": path}})
    sys.exit(1)
def temp_for(dst):
    d, name = os.path.split(dst)
    short = name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")
    return os.path.join(d, "." + short + ".mcpctl-tmp-" + os.urandom(6).hex())
def check_inside(real_root, path):
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        fail(OSError(errno.EXDEV, "it leads outside the remote directory through a symlink"), path)
def target(rel):
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        fail(OSError(errno.EINVAL, "unsafe relative path"), rel)
    return os.path.join(ROOT, rel)
def read_exact(stream, n):
    data = stream.read(n)
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            return None
        data += more
    return data
if MODE == "free":
    path = ROOT
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    out({"ok": st.f_bavail * st.f_frsize})
elif MODE == "prepare":
    req = json.load(sys.stdin)
    try:
        os.makedirs(ROOT, exist_ok=True)
    except OSError as exc:
        fail(exc, ROOT)
    real_root = os.path.realpath(ROOT)
    for rel in req["dirs"]:
        path = target(rel) if rel else ROOT
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            fail(exc, path)
        check_inside(real_root, path)
        probe = temp_for(os.path.join(path, "probe"))
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            fail(exc, path)
    for rel in req["remove"]:
        path = target(rel)
        if TEMP.match(os.path.basename(path)):
            check_inside(real_root, os.path.dirname(path))
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                fail(exc, path)
    out({"ok": True})
elif MODE == "receive":
    inp, count = sys.stdin.buffer, 0
    while True:
        head = read_exact(inp, 4)
        if head is None:
            sys.exit(3)  # the sender stopped mid-stream: what was renamed is complete, nothing else
        (n,) = struct.unpack(">I", head)
        if n == 0:
            break
        meta = json.loads(read_exact(inp, n) or b"{}")
        dst = target(meta["p"])
        tmp = temp_for(dst)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                left = meta["s"]
                while left:
                    data = inp.read(min(left, 1 << 20))
                    if not data:
                        f.close()
                        os.unlink(tmp)
                        sys.exit(3)
                    f.write(data)
                    left -= len(data)
                os.fchmod(f.fileno(), meta["x"])
            os.utime(tmp, (meta["m"], meta["m"]))
            os.replace(tmp, dst)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            fail(exc, dst)
        count += 1
    out({"ok": count})
elif MODE == "finalize":
    req = json.load(sys.stdin)
    real_root = os.path.realpath(ROOT)
    for rel in req["delete"]:
        path = target(rel)
        check_inside(real_root, os.path.dirname(path))
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            fail(exc, path)
        parent = os.path.dirname(path)
        while parent != ROOT and parent.startswith(ROOT + "/"):
            try:
                os.rmdir(parent)  # only succeeds on a directory the deletes left empty
            except OSError:
                break
            parent = os.path.dirname(parent)
    if req["manifest"] is not None:
        dst = os.path.join(ROOT, req["manifest_path"])
        try:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            for name in os.listdir(os.path.dirname(dst)):
                if TEMP.match(name):
                    os.unlink(os.path.join(os.path.dirname(dst), name))
            tmp = temp_for(dst)
            with open(tmp, "w") as f:
                json.dump(req["manifest"], f, separators=(",", ":"))
            os.replace(tmp, dst)
        except OSError as exc:
            fail(exc, dst)
    out({"ok": True})
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

    @property
    def bytes_to_send(self) -> int:
        """Total size of the uploads."""
        return sum(u.size for u in self.uploads)

    @property
    def up_to_date(self) -> bool:
        """True when no file would be sent, deleted or cleaned up."""
        return not (self.uploads or self.deletes or self.cleanup)

    def describe(self) -> str:
        """Human-readable plan, one line per action."""
        if self.up_to_date:
            return f"{self.remote_root}: up to date ({len(self.unchanged)} files)"
        lines = [
            f"{self.remote_root}: {len(self.uploads)} to send ({_size(self.bytes_to_send)}), "
            f"{len(self.deletes)} to delete, {len(self.unchanged)} unchanged"
            + (f", {len(self.cleanup)} stale temp files to remove" if self.cleanup else "")
        ]
        lines += [f"  {'+' if u.reason == 'new' else '~'} {u.path} ({u.reason}, {_size(u.size)})" for u in self.uploads]
        lines += [f"  - {path}" for path in self.deletes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


def is_safe_path(path: str) -> bool:
    """Return whether ``path`` is a plain relative POSIX path that stays below its root."""
    parts = path.split("/")
    return bool(path) and "\0" not in path and not path.startswith("/") and "" not in parts and not (
        {".", ".."} & set(parts)
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
    return None if local.mtime_s == remote.mtime_s else "mtime"


def plan(local: Manifest, remote: Manifest, *, delete: bool) -> SyncPlan:
    """Compare what should be on the host with what is there (pure).

    A file is sent when it is new, or its size or mode differs, or its sha256 differs (when both are
    known), or else its mtime differs at second granularity. With ``delete``, remote files that a
    local source manages but that no longer exist locally are deleted; never a path outside the root,
    never anything under ``.venv``, ``.mcp_sales_cache`` or ``.mcpctl``, never an ignored file.

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
        if reason is not None:
            uploads.append(Upload(path, want.size, reason, want.local_path, want.mtime_ns, want.mode, want.sha256))
            continue
        assert have is not None
        unchanged.append(path)
        record[path] = FileEntry(have.size, have.mtime_s * NS, want.sha256 or have.sha256, have.mode)
    deletes: tuple[str, ...] = ()
    if delete:
        deletes = tuple(
            path
            for path in remote.files
            if path not in local.files and is_safe_path(path) and not _protected(path) and local.manages(path)
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
    )
