"""The sync helper: the program that runs on the host for one sync, and the protocol it speaks.

How it gets there: :func:`provision.sync.helper_client.start_helper` sends this module's source
(:func:`inspect.getsource`) on the command line, ``python3 -I -S -c SOURCE``, once per sync. It is not
shipped in the synced tree because it is what installs that tree: it lists the host and writes the
files before any tree is there, and a tree an older mcpctl left would speak an older protocol. So this
module imports nothing but the standard library (never ``provision``: it is not installed on the host,
and ``-I -S`` keeps site-packages out anyway) and keeps to Python 3.10, the oldest host python
supported. ``mypy`` and ``ruff`` check it like any other module; the local side imports its protocol
(:func:`frame`, :func:`temp_name`) from here, so both ends share one definition.

The protocol: requests arrive on stdin as (u32 big-endian length, JSON); a ``file`` request is followed
by its bytes. Replies are JSON lines, ``{"ok": value}`` or ``{"error": {errno, strerror, path}}``,
after which the helper exits 1. End of input between requests ends it (exit 0); end of input inside a
request means the client gave up: it removes the temporary file it was writing and exits 3, so a cut
stream never renames a partial file into place.

Every file is written to a temporary name in its own directory (:func:`temp_name`), given its mode and
mtime, then renamed over the old one. A file whose bytes do not hash to the sha256 its request names
is removed, never renamed (EIO). Nothing is written or removed through a symlink that leaves the root.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
import struct
import sys

# Annotations only: the helper starts once per sync, and typing costs it a few milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO, NoReturn, TextIO

    Request = dict[str, Any]

TEMP_MARK = ".mcpctl-tmp-"
# ".NAME.mcpctl-tmp-" and 12 hex digits: what temp_name() makes, and only that.
TEMP_NAME = re.compile(r"\..*" + re.escape(TEMP_MARK) + r"[0-9a-f]{12}\Z", re.DOTALL)
EXIT_REFUSED = 1  # a request failed; its {"error": ...} reply says why
EXIT_CUT = 3  # the input ended inside a request, or a request was not JSON
_HEADER = struct.Struct(">I")
_READ = 1 << 20  # bytes of a file read from stdin at a time


# ------------------------------------------------------------------------------------ the protocol


def frame(request: Request, data: bytes = b"") -> bytes:
    """Encode one request and the bytes that follow it (JSON is ASCII: non-UTF-8 paths travel escaped)."""
    body = json.dumps(request).encode("ascii")
    return _HEADER.pack(len(body)) + body + data


def temp_name(name: str, token: str) -> str:
    """The temporary name for installing ``name`` (``token``: 12 hex digits).

    The name is cut to 100 bytes so that the temporary name stays within NAME_MAX.
    """
    short = name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")
    return f".{short}{TEMP_MARK}{token}"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of sync's temporary names."""
    return TEMP_NAME.match(name) is not None


class Refused(Exception):
    """A request failed on ``path``: the helper replies with the error and exits."""

    def __init__(self, error: OSError, path: str) -> None:
        super().__init__(error, path)
        self.error = error
        self.path = path


class Cut(Exception):
    """The input ended inside a request: the client gave up."""


# --------------------------------------------------------------------------------- file operations


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def check_inside(real_root: str, path: str) -> None:
    """Raise EXDEV when ``path`` resolves outside ``real_root`` (through a symlink somewhere)."""
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise OSError(errno.EXDEV, "it leads outside the remote directory through a symlink")


def target(root: str, rel: str) -> str:
    """``root/rel``, refusing anything but a plain relative path below ``root``."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Refused(OSError(errno.EINVAL, "not a safe relative path"), rel)
    return os.path.join(root, rel)


def remove_inside(real_root: str, path: str) -> None:
    """Remove the file ``path`` unless its directory leads out of the root (gone already is fine)."""
    try:
        check_inside(real_root, os.path.dirname(path))
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise Refused(exc, path) from exc


def listing(root: str, prune: list[str], manifest_path: str) -> dict[str, Any]:
    """The files under ``root`` ([path, size, mtime_ns, mode] rows), stale temporary files, and the
    text of the manifest file (None when there is none). Directories named like a ``prune`` pattern
    are not entered; symlinks and special files are not listed.
    """
    files: list[list[Any]] = []
    temps: list[str] = []
    todo = [""] if os.path.isdir(root) else []
    while todo:
        rel = todo.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel)))
        except OSError as exc:
            raise Refused(exc, os.path.join(root, rel)) from exc
        for entry in entries:
            path = rel + entry.name
            if entry.is_dir(follow_symlinks=False):
                if not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in prune):
                    todo.append(path + "/")
            elif entry.is_file(follow_symlinks=False):
                if is_temp_name(entry.name):
                    temps.append(path)
                else:
                    st = entry.stat(follow_symlinks=False)
                    files.append([path, st.st_size, st.st_mtime_ns, st.st_mode & 0o7777])
    manifest = None
    try:
        with open(os.path.join(root, manifest_path), encoding="utf-8") as handle:
            manifest = handle.read()
    except (OSError, ValueError):
        pass  # none yet, or unreadable: the next sync that changes anything rewrites it
    return {"files": files, "temps": temps, "manifest": manifest}


def free_bytes(path: str) -> int:
    """Bytes free for us on the filesystem holding ``path`` (or its nearest existing parent)."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def write_atomically(path: str, tmp: str, write: Callable[[int], None], mode: int, mtime: int) -> None:
    """Create ``tmp``, let ``write`` fill it, give it ``mode`` and ``mtime``, rename it to ``path``.

    On any failure (``write`` raising included) ``tmp`` is removed and ``path`` is left as it was.
    """
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write(fd)
            os.fchmod(fd, mode)
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -------------------------------------------------------------------------------------- the helper


class Helper:
    """One helper process: reads requests from ``stdin``, answers on ``stdout``."""

    def __init__(self, stdin: BinaryIO, stdout: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.written = 0  # files installed since the last barrier
        # A random start and a counter: unique temporary names without a getrandom() per file.
        self.seq = int.from_bytes(os.urandom(6), "big")

    def reply(self, value: object) -> None:
        self.stdout.write(json.dumps({"ok": value}) + "\n")
        self.stdout.flush()

    def refuse(self, refused: Refused) -> None:
        error = refused.error
        detail = {"errno": error.errno or 0, "strerror": error.strerror or str(error), "path": refused.path}
        self.stdout.write(json.dumps({"error": detail}) + "\n")
        self.stdout.flush()

    def temp_for(self, path: str) -> str:
        self.seq += 1
        directory, name = os.path.split(path)
        return os.path.join(directory, temp_name(name, f"{self.seq & 0xFFFFFFFFFFFF:012x}"))

    def read_request(self) -> Request | None:
        """The next request, or None at the end of input between requests.

        Raises:
            Cut: The input ended inside the request, or it is not a JSON object.
        """
        head = self.stdin.read(_HEADER.size)
        if not head:
            return None
        if len(head) != _HEADER.size:
            raise Cut()
        try:
            request = json.loads(self.stdin.read(_HEADER.unpack(head)[0]))
        except ValueError:
            raise Cut() from None
        if not isinstance(request, dict):
            raise Cut()
        return request

    def serve(self) -> int:
        """Answer requests until the input ends; return the exit status."""
        ops: dict[str, Callable[[Request], None]] = {
            "list": self.op_list,
            "prepare": self.op_prepare,
            "file": self.op_file,
            "barrier": self.op_barrier,
            "finalize": self.op_finalize,
            "free": self.op_free,
        }
        try:
            while (request := self.read_request()) is not None:
                op = ops.get(str(request.get("op")))
                if op is None:
                    raise Refused(OSError(errno.EINVAL, "unknown request"), str(request.get("op")))
                op(request)
        except Refused as refused:
            self.refuse(refused)
            return EXIT_REFUSED
        except Cut:
            return EXIT_CUT
        return 0

    def op_list(self, req: Request) -> None:
        self.reply(listing(req["root"], req["prune"], req["manifest_path"]))

    def op_prepare(self, req: Request) -> None:
        """Create the directories uploads go to (proving each takes new files), remove stale temps."""
        root = req["root"]
        try:
            os.makedirs(root, exist_ok=True)
            real_root = os.path.realpath(root)
        except OSError as exc:
            raise Refused(exc, root) from exc
        for rel in req["dirs"]:
            path = target(root, rel) if rel else root
            try:
                os.makedirs(path, exist_ok=True)
                check_inside(real_root, path)
                probe = self.temp_for(os.path.join(path, "probe"))
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.unlink(probe)
            except OSError as exc:
                raise Refused(exc, path) from exc
        for rel in req["remove"]:
            path = target(root, rel)
            if is_temp_name(os.path.basename(path)):
                remove_inside(real_root, path)
        self.reply(True)

    def op_file(self, req: Request) -> None:
        """Install one file from the bytes that follow the request; no reply (see ``barrier``)."""
        path = target(req["root"], req["p"])
        import hashlib  # here, not at the top: a sync that sends nothing does not pay its ~5 ms import

        digest = hashlib.sha256()

        def receive(fd: int) -> None:
            left = req["s"]
            while left:
                data = self.stdin.read(min(left, _READ))
                if not data:
                    raise Cut()
                digest.update(data)
                write_all(fd, data)
                left -= len(data)
            if digest.hexdigest() != req["h"]:
                raise OSError(errno.EIO, "the bytes received differ from the bytes sent")

        try:
            write_atomically(path, self.temp_for(path), receive, req["x"], req["m"])
        except OSError as exc:
            raise Refused(exc, path) from exc
        self.written += 1

    def op_barrier(self, req: Request) -> None:
        """Reply with the number of files installed since the last barrier."""
        self.reply(self.written)
        self.written = 0

    def op_finalize(self, req: Request) -> None:
        """Delete files (and the directories that leaves empty), then write the manifest file."""
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
            self.write_manifest(os.path.join(root, req["manifest_path"]), req["manifest"])
        self.reply(True)

    def write_manifest(self, path: str, manifest: object) -> None:
        directory = os.path.dirname(path)
        tmp = self.temp_for(path)
        try:
            os.makedirs(directory, exist_ok=True)
            for name in os.listdir(directory):
                if is_temp_name(name):
                    unlink_quietly(os.path.join(directory, name))
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(manifest, handle, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError as exc:
            unlink_quietly(tmp)
            raise Refused(exc, path) from exc

    def op_free(self, req: Request) -> None:
        self.reply(free_bytes(req["path"]))


def main() -> NoReturn:
    sys.exit(Helper(sys.stdin.buffer, sys.stdout).serve())


if __name__ == "__main__":
    main()
