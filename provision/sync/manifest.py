"""Manifests for sync: which files a source holds locally, and which the remote root holds.

A :class:`Manifest` maps POSIX paths relative to one remote root to :class:`FileEntry` values (size,
mtime, sha256, mode). The local side walks the source tree honouring built-in ignores and the root's
``.mcpignore`` (gitignore syntax); sha256 values come from a :class:`HashCache` keyed by
(path, size, mtime_ns), so an unchanged 512 MB file is never read twice. The remote side comes from one
listing on the host (see ``provision.sync.upload.remote_manifest``): live sizes and mtimes, plus the manifest
file sync keeps there (``.mcpctl/manifest.json``), whose sha256 values are trusted only while the live
size and mtime still match what it recorded.

Symlinks: a link to a file inside the source tree sends the target's content (a link to an ignored
file is skipped, so a link cannot send what ``.mcpignore`` keeps back); a link that leaves the tree
is skipped unless the source follows links (``--follow-links``, and always for a data file named on
the command line). Directory links, dangling links, FIFOs, sockets and device files are never sent.
Every skipped entry is listed in the manifest (:class:`Skipped`) so the plan can say so.

SFTP sets mtimes in whole seconds, so a host's mtime is compared with a local one at second
granularity; the manifest file also records the exact local mtime each file was sent from, so a local
change within the same second is still noticed.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

from provision.errors import McpctlError

NS = 1_000_000_000
STATE_DIR = ".mcpctl"  # our own directory under the remote root: the manifest file lives there
MANIFEST_PATH = f"{STATE_DIR}/manifest.json"
MANIFEST_VERSION = 1
TEMP_MARK = ".mcpctl-tmp-"
IGNORE_FILE = ".mcpignore"
# Never sent, never deleted: VCS data, virtualenvs, caches the server writes, our own state.
BUILTIN_IGNORES: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    ".venv/",
    "__pycache__/",
    ".mcp_sales_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".pytest_cache/",
    ".hypothesis/",
    "*.egg-info/",
    f"{STATE_DIR}/",
    "*.pyc",
    "*.pyo",
    ".DS_Store",
    f"*{TEMP_MARK}*",
)
# Directories the remote listing does not even enter (a bootstrapped .venv holds thousands of files).
PRUNED_DIRS: tuple[str, ...] = tuple(p[:-1] for p in BUILTIN_IGNORES if p.endswith("/"))
# Directories that are never deleted from, whatever the ignore rules say.
PROTECTED_DIRS = frozenset({".venv", ".mcp_sales_cache", STATE_DIR})
_TEMP_NAME = re.compile(r"\..*" + re.escape(TEMP_MARK) + r"[0-9a-f]{12}\Z", re.DOTALL)
_GLOB_CHARS = frozenset("*?[\\")
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One regular file: ``sha256`` is None when unknown (not hashed yet, or not trusted)."""

    size: int
    mtime_ns: int
    sha256: str | None = None
    mode: int = 0o644  # permission bits only
    local_path: Path | None = None  # where the content comes from (local manifests only)
    # Remote entries: the exact local mtime of the file this content was sent from (recorded in the
    # manifest file). A local file still at that mtime needs no hashing; one at another mtime, even
    # within the same second, is hashed and compared.
    origin_mtime_ns: int | None = None

    @property
    def mtime_s(self) -> int:
        """The mtime in whole seconds, the granularity SFTP can set."""
        return self.mtime_ns // NS


@dataclass(frozen=True)
class Scope:
    """What one source manages under ``prefix``: files its include rules match and its ignores don't.

    ``--delete`` only removes remote files some scope manages, so files sync never sent (logs, a
    ``.venv``, anything a user put next to the code) are left alone.
    """

    prefix: str  # POSIX, relative to the manifest root; "" is the root itself
    include: tuple[str, ...]
    ignore: tuple[str, ...]

    def manages(self, path: str) -> bool:
        """Return whether ``path`` (relative to the manifest root) falls under this scope's rules."""
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return False
            path = path[len(self.prefix) + 1 :]
        parts = path.split("/")
        ignore = _spec(self.ignore)
        # Like git: a file in an ignored directory is ignored whatever the later patterns say.
        for depth in range(1, len(parts)):
            if ignore.match_file("/".join(parts[:depth]) + "/"):
                return False
        return _spec(self.include).match_file(path) and not ignore.match_file(path)


@dataclass(frozen=True)
class Skipped:
    """A local entry the walk did not send, and why (one of the ``SKIP_*`` reasons)."""

    path: str  # POSIX, relative to the manifest root
    reason: str


SKIP_OUTSIDE = "link outside the project; --follow-links sends it"
SKIP_IGNORED_TARGET = "link to an ignored file"
SKIP_DIRECTORY_LINK = "link to a directory"
SKIP_DANGLING = "dangling link"
SKIP_SPECIAL_TARGET = "link to a FIFO, socket or device"
SKIP_FIFO = "FIFO"
SKIP_SOCKET = "socket"
SKIP_DEVICE = "device file"


@dataclass(frozen=True)
class Manifest:
    """Files under the remote root ``root``, keyed by POSIX path relative to it."""

    root: str
    files: Mapping[str, FileEntry]
    scopes: tuple[Scope, ...] = ()  # local manifests: what the sources manage
    temps: tuple[str, ...] = ()  # remote manifests: temp files an interrupted sync left behind
    recorded: Mapping[str, FileEntry] = field(default_factory=dict, repr=False)  # remote: manifest file
    skipped: tuple[Skipped, ...] = ()  # local manifests: entries not sent (links, FIFOs...), by path

    def manages(self, path: str) -> bool:
        """Return whether a source of this (local) manifest manages ``path``."""
        return any(scope.manages(path) for scope in self.scopes)


@dataclass(frozen=True)
class SyncSource:
    """A local tree (or part of one) to mirror into an absolute remote directory.

    Attributes:
        local_root: The local directory the patterns are relative to.
        remote_root: Absolute POSIX directory on the host.
        include: gitignore-style patterns of what to send ("/pkg/" is a top-level directory, "*" is
            everything); use :func:`literal_pattern` for a file name.
        ignore: Extra gitignore-style patterns of what never to send (added to the built-in ones).
        ignore_file: A gitignore-syntax file in ``local_root`` with more ignore patterns, or None.
        follow_links: Send the content of file symlinks that lead outside ``local_root`` too (links
            inside it are followed unless their target is ignored; directory links never are).
    """

    local_root: Path
    remote_root: str
    include: tuple[str, ...] = ("*",)
    ignore: tuple[str, ...] = ()
    ignore_file: str | None = IGNORE_FILE
    follow_links: bool = False

    def __post_init__(self) -> None:
        root = self.remote_root
        if not root.startswith("/") or ".." in root.split("/") or "\0" in root:
            raise ValueError(f"remote_root must be an absolute POSIX path without '..', not {root!r}")
        object.__setattr__(self, "remote_root", posixpath.normpath(root))


def literal_pattern(relative: str) -> str:
    """Return a gitignore pattern matching exactly the path ``relative`` (special characters escaped)."""
    escaped = re.sub(r"([\\*?\[\]!# ])", r"\\\1", relative)
    return "/" + escaped


def project_sources(
    project_root: Path, data_files: Sequence[Path], remote_dir: str, *, follow_links: bool = False
) -> list[SyncSource]:
    """Return what ``mcpctl sync`` sends: the code tree to ``remote_dir``, data files to ``remote_dir/data``.

    The code tree is ``mcp_sales/``, ``provision/``, ``pyproject.toml``, ``uv.lock``, ``README.md`` and
    the project's ``data/``. A data file goes to ``data/NAME``; a data directory to ``data/DIRNAME/``.
    A data file that is a symlink is followed wherever it leads: naming it was the user's choice.
    ``follow_links`` also follows file links out of the code tree and the data directories.

    Raises:
        McpctlError: ``project_root`` is not the mcpctl project, or a data path does not exist or is
            neither a file nor a directory.
    """
    if not (project_root / "pyproject.toml").is_file():
        raise McpctlError(
            f"{project_root} has no pyproject.toml, so it is not the mcpctl project; run the command from "
            "the project checkout."
        )
    code = SyncSource(
        project_root,
        remote_dir,
        include=("/mcp_sales/", "/provision/", "/pyproject.toml", "/uv.lock", "/README.md", "/data/"),
        follow_links=follow_links,
    )
    sources = [code]
    by_parent: dict[Path, list[str]] = {}
    data_root = posixpath.join(remote_dir, "data")
    for path in data_files:
        if path.is_dir():
            sources.append(SyncSource(path, posixpath.join(data_root, path.name), follow_links=follow_links))
        elif path.is_file():
            by_parent.setdefault(path.parent, []).append(literal_pattern(path.name))
        elif path.exists():
            raise McpctlError(
                f"the data path {path} is neither a regular file nor a directory; name the data file itself "
                "in the profile's `data` list."
            )
        else:
            raise McpctlError(
                f"the data path {path} does not exist; fix the profile's `data` list or create the file."
            )
    for parent, patterns in by_parent.items():
        # Only the named files are included, so following links here follows exactly those.
        sources.append(
            SyncSource(parent, data_root, include=tuple(patterns), ignore_file=None, follow_links=True)
        )
    return sources


# ------------------------------------------------------------------------------------------- hashing


def file_mode(st: os.stat_result) -> int:
    """The permission bits to give the host's copy of a local file.

    Windows reports every file as 0o666 (or 0o444): that would make the copies world-writable, so
    files from Windows get 0o644.
    """
    return stat.S_IMODE(st.st_mode) if os.name != "nt" else 0o644


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a local file.

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """sha256 of local files keyed by (absolute path, size, mtime_ns), optionally kept in a JSON file.

    Any change of size or mtime invalidates an entry, so a stale hash is never used. The cache is an
    optimisation: an unreadable or corrupt file starts empty, and a failed save is ignored.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, tuple[int, int, str]] = {}
        self._dirty = False
        if path is not None:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                for key, (size, mtime_ns, sha) in raw.get("files", {}).items():
                    self._entries[key] = (int(size), int(mtime_ns), str(sha))
            except (OSError, ValueError, TypeError, AttributeError):
                self._entries.clear()

    @classmethod
    def default(cls) -> HashCache:
        """The cache in mcpctl's state directory (``$MCPCTL_HOME/state`` when set).

        Raises:
            ProfileError: The state directory cannot be created.
        """
        from provision.profiles import state_dir

        return cls(state_dir() / "sync-hashes.json")

    def get(self, path: Path, size: int, mtime_ns: int) -> str | None:
        """Return the cached sha256 of ``path`` if it still has this size and mtime."""
        entry = self._entries.get(os.path.abspath(path))
        return entry[2] if entry is not None and entry[:2] == (size, mtime_ns) else None

    def put(self, path: Path, size: int, mtime_ns: int, sha256: str) -> None:
        """Remember the sha256 of ``path`` at this size and mtime."""
        key = os.path.abspath(path)
        if self._entries.get(key) != (size, mtime_ns, sha256):
            self._entries[key] = (size, mtime_ns, sha256)
            self._dirty = True

    def hash(self, path: Path, size: int, mtime_ns: int) -> str:
        """Return the sha256 of ``path``, from the cache or by reading it (then cached).

        Raises:
            OSError: The file cannot be read.
        """
        sha = self.get(path, size, mtime_ns)
        if sha is None:
            sha = file_sha256(path)
            self.put(path, size, mtime_ns, sha)
        return sha

    def save(self) -> None:
        """Write the cache atomically (entries of files that no longer exist are dropped)."""
        if self.path is None or not self._dirty:
            return
        files = {key: list(value) for key, value in self._entries.items() if os.path.exists(key)}
        tmp = self.path.with_name(f".{self.path.name}{TEMP_MARK}{os.urandom(6).hex()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": 1, "files": files}), encoding="utf-8")
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            tmp.unlink(missing_ok=True)  # a lost cache costs one re-hash, never a wrong answer


# ------------------------------------------------------------------------------------- local side


@functools.lru_cache(maxsize=256)
def _spec(lines: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _literal_part(part: str) -> str | None:
    """Return ``part`` unescaped if it has no wildcard, else None."""
    literal: list[str] = []
    chars = iter(part)
    for char in chars:
        if char == "\\":
            literal.append(next(chars, ""))
        elif char in _GLOB_CHARS:
            return None
        else:
            literal.append(char)
    return "".join(literal)


def _literal_prefix(pattern: str) -> tuple[str, ...] | None:
    """The leading directories a pattern is confined to, or None if it can match at any depth."""
    body = pattern.rstrip("/")
    if pattern.startswith("!") or ("/" not in body.lstrip("/") and not pattern.startswith("/")):
        return None  # negations and slash-free patterns can match anywhere
    prefix: list[str] = []
    for part in body.lstrip("/").split("/"):
        literal = _literal_part(part)
        if literal is None:
            break
        prefix.append(literal)
    return tuple(prefix)


def _may_contain(include: tuple[str, ...], directory: str) -> bool:
    """Whether a file below ``directory`` could match ``include`` (prunes the walk of big trees)."""
    parts = tuple(directory.split("/"))
    for line in include:
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        prefix = _literal_prefix(pattern)
        if prefix is None:
            return True
        n = min(len(prefix), len(parts))
        if prefix[:n] == parts[:n]:
            return True
    return False


def _ignore_lines(source: SyncSource) -> tuple[str, ...]:
    lines = [*BUILTIN_IGNORES, *source.ignore]
    if source.ignore_file:
        path = source.local_root / source.ignore_file
        try:
            lines.extend(path.read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            raise McpctlError(f"cannot read {path} ({exc}); fix or delete that file.") from exc
    return tuple(lines)


@dataclass(frozen=True)
class _Rules:
    """What one walk sends: include and ignore rules, the tree's real path, whether links may leave it."""

    include: tuple[str, ...]
    ignore: pathspec.GitIgnoreSpec
    real_root: str
    follow_links: bool

    def wanted(self, rel: str) -> bool:
        """Whether the entry at ``rel`` (in a walked directory) is one the include rules ask for."""
        included = self.include == ("*",) or _spec(self.include).match_file(rel)  # "*": skip a match
        return included and not self.ignore.match_file(rel)

    def ignored(self, rel: str) -> bool:
        """Whether ``rel`` or a directory above it is ignored (for link targets, which the walk never saw)."""
        parts = rel.split("/")
        return self.ignore.match_file(rel) or any(
            self.ignore.match_file("/".join(parts[:depth]) + "/") for depth in range(1, len(parts))
        )


def _special_reason(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return SKIP_FIFO
    if stat.S_ISSOCK(mode):
        return SKIP_SOCKET
    return SKIP_DEVICE


def _link_reason(entry: os.DirEntry[str], rules: _Rules) -> str | None:
    """Why the link ``entry`` is not followed, or None to send its target's content.

    Raises:
        OSError: The target exists but cannot be examined (e.g. no permission).
    """
    try:
        target = entry.stat()  # follows the link (and caches the result for the caller)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return SKIP_DANGLING
        raise
    if stat.S_ISDIR(target.st_mode):
        return SKIP_DIRECTORY_LINK  # never followed: they can loop, or bring in a whole other tree
    if not stat.S_ISREG(target.st_mode):
        return SKIP_SPECIAL_TARGET
    real = os.path.realpath(entry.path)
    if not real.startswith(rules.real_root.rstrip(os.sep) + os.sep):
        return None if rules.follow_links else SKIP_OUTSIDE
    # A link must not send what the ignore rules keep back (e.g. config.txt -> .env).
    if rules.ignored(Path(os.path.relpath(real, rules.real_root)).as_posix()):
        return SKIP_IGNORED_TARGET
    return None


def _walk(root: Path, rules: _Rules) -> Iterable[tuple[str, os.DirEntry[str]] | Skipped]:
    """Yield (relative POSIX path, directory entry) of each file to send, and a :class:`Skipped` for
    each wanted entry that is not a file to send, in no particular order.

    Raises:
        OSError: A directory or a link's target cannot be read.
    """
    todo: list[tuple[Path, str]] = [(root, "")]
    while todo:
        directory, prefix = todo.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if not rules.ignore.match_file(rel + "/") and _may_contain(rules.include, rel):
                        todo.append((Path(entry.path), rel + "/"))
                    continue
                if not rules.wanted(rel):
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield rel, entry
                    continue
                if entry.is_symlink():
                    reason = _link_reason(entry, rules)
                else:
                    reason = _special_reason(entry.stat(follow_symlinks=False).st_mode)
                yield (rel, entry) if reason is None else Skipped(rel, reason)


def local_manifest(
    source: SyncSource, *, cache: HashCache | None = None, hash_files: bool = True
) -> Manifest:
    """Walk ``source`` and describe the files to send, keyed relative to ``source.remote_root``.

    Entries not sent (links out of the tree, directory and dangling links, FIFOs, sockets, devices)
    are listed in the manifest's ``skipped``; ignored ones are not listed at all.

    Args:
        source: What to walk.
        cache: Known hashes; files hashed here are added to it.
        hash_files: Hash files whose sha256 is not cached; with False such entries have sha256 None
            (sync hashes only what a comparison needs, and hashes uploads while sending them).

    Raises:
        McpctlError: ``source.local_root`` is not a directory, or a file or the ignore file cannot be
            read.
    """
    root = source.local_root
    if not root.is_dir():
        raise McpctlError(f"the local directory {root} does not exist; check the path you sync from.")
    ignore_lines = _ignore_lines(source)
    files: dict[str, FileEntry] = {}
    skipped: list[Skipped] = []
    try:
        rules = _Rules(source.include, _spec(ignore_lines), os.path.realpath(root), source.follow_links)
        for found in _walk(root, rules):
            if isinstance(found, Skipped):
                skipped.append(found)
                continue
            rel, entry = found
            st = entry.stat()  # follows a symlink to a file; no path parsing
            path = Path(entry.path)
            sha: str | None
            if hash_files:
                sha = cache.hash(path, st.st_size, st.st_mtime_ns) if cache else file_sha256(path)
            else:
                sha = cache.get(path, st.st_size, st.st_mtime_ns) if cache else None
            files[rel] = FileEntry(st.st_size, st.st_mtime_ns, sha, file_mode(st), path)
    except OSError as exc:
        raise McpctlError(
            f"cannot read {exc.filename or root} ({exc.strerror or exc}); fix its permissions or add it "
            f"to {root / IGNORE_FILE}."
        ) from exc
    scope = Scope("", source.include, ignore_lines)
    return Manifest(
        source.remote_root,
        dict(sorted(files.items())),
        scopes=(scope,),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
    )


def merge(manifests: Sequence[Manifest]) -> Manifest:
    """Combine local manifests whose roots nest into one keyed relative to the outermost root.

    Raises:
        ValueError: The roots do not nest under one of them.
        McpctlError: Two different local files would land on the same remote path.
    """
    if not manifests:
        raise ValueError("merge() needs at least one manifest")
    root = min((m.root for m in manifests), key=len)
    files: dict[str, FileEntry] = {}
    scopes: list[Scope] = []
    skipped: list[Skipped] = []
    for manifest in manifests:
        rel = posixpath.relpath(manifest.root, root)
        if rel == ".." or rel.startswith("../"):
            raise ValueError(f"{manifest.root} is not below {root}")
        sub = "" if rel == "." else rel
        skipped += [Skipped(f"{sub}/{s.path}" if sub else s.path, s.reason) for s in manifest.skipped]
        for path, entry in manifest.files.items():
            key = f"{sub}/{path}" if sub else path
            old = files.get(key)
            if old is not None and old.local_path != entry.local_path:
                raise McpctlError(
                    f"{old.local_path} and {entry.local_path} would both be sent to {root}/{key}; rename one "
                    "of them or remove one from the profile's data list."
                )
            files[key] = entry
        for scope in manifest.scopes:
            joined = "/".join(part for part in (sub, scope.prefix) if part)
            scopes.append(Scope(joined, scope.include, scope.ignore))
    return Manifest(
        root,
        dict(sorted(files.items())),
        scopes=tuple(scopes),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
    )


# ------------------------------------------------------------------------------------ remote side


def is_temp_name(name: str) -> bool:
    """Return whether a file name is one of sync's temporary upload names."""
    return _TEMP_NAME.match(name) is not None


def temp_name(name: str, token: str) -> str:
    """Return the temporary name for uploading ``name`` (``token``: 12 hex digits).

    The name is cut to 100 bytes so that the temp name stays within NAME_MAX.
    """
    short = name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")
    return f".{short}{TEMP_MARK}{token}"


def _parse_recorded(text: str) -> dict[str, FileEntry]:
    try:
        raw = json.loads(text) if text.strip() else {}
        if raw.get("version") != MANIFEST_VERSION:
            return {}
        return {
            str(path): FileEntry(
                int(row[0]), int(row[1]) * NS, str(row[2]) if row[2] else None, int(row[3]), None, int(row[4])
            )
            for path, row in raw["files"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return {}  # unreadable: rewritten by the next sync that changes anything


def manifest_from_listing(root: str, listing: Mapping[str, Any]) -> Manifest:
    """Build the remote manifest from the host's listing (files, stale temp files, manifest file text).

    ``listing["files"]`` holds ``[path, size, mtime_ns, mode]`` rows; ``listing["manifest"]`` the text of
    the manifest file sync keeps on the host, or None. That file maps each path to
    ``[size, mtime_s, sha256, mode, origin_mtime_ns]`` as last written.

    Raises:
        ValueError: A row is malformed.
    """
    recorded = _parse_recorded(listing.get("manifest") or "")
    files: dict[str, FileEntry] = {}
    for path, size, mtime_ns, mode in listing.get("files", []):
        live = FileEntry(int(size), int(mtime_ns), None, int(mode))
        known = recorded.get(path)
        # The recorded hash describes the live file only while size and mtime are what we wrote.
        if known is not None and (known.size, known.mtime_s) == (live.size, live.mtime_s):
            live = FileEntry(live.size, live.mtime_ns, known.sha256, live.mode, None, known.origin_mtime_ns)
        files[str(path)] = live
    temps = tuple(sorted(str(p) for p in listing.get("temps", [])))
    return Manifest(root, dict(sorted(files.items())), temps=temps, recorded=recorded)
