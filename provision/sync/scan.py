"""The local side of a sync: walk a source and describe what it sends as a :class:`Manifest`.

The walk honours the built-in ignores, the source's patterns and the root's ``.mcpignore`` (gitignore
syntax); sha256 values come from a :class:`~provision.sync.hashing.HashCache` when asked for.

Symlinks: a link to a file inside the source tree sends the target's content (a link to an ignored
file is skipped, so a link cannot send what ``.mcpignore`` keeps back); a link that leaves the tree
is skipped unless the source follows links (``--follow-links``, and always for a data file named on
the command line). Directory links, dangling links, FIFOs, sockets and device files are never sent.
Every skipped entry is listed in the manifest (:class:`Skipped`) so the plan can say so.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pathspec

from provision.errors import McpctlError
from provision.sync.hashing import HashCache, file_sha256
from provision.sync.manifest import (
    SKIP_DANGLING,
    SKIP_DEVICE,
    SKIP_DIRECTORY_LINK,
    SKIP_FIFO,
    SKIP_IGNORED_TARGET,
    SKIP_OUTSIDE,
    SKIP_SOCKET,
    SKIP_SPECIAL_TARGET,
    FileEntry,
    Manifest,
    Skipped,
    file_mode,
)
from provision.sync.rules import BUILTIN_IGNORES, IGNORE_FILE, Scope, gitignore_spec, may_contain
from provision.sync.sources import SyncSource


def _ignore_lines(source: SyncSource) -> tuple[str, ...]:
    lines = [*BUILTIN_IGNORES, *source.ignore]
    if source.ignore_file:
        path = source.local_root / source.ignore_file
        try:
            lines.extend(path.read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            raise McpctlError(f"cannot read {path} ({exc})", hint="fix or delete that file") from exc
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
        included = self.include == ("*",) or gitignore_spec(self.include).match_file(rel)  # "*": skip a match
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
                    if not rules.ignore.match_file(rel + "/") and may_contain(rules.include, rel):
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
        raise McpctlError(f"the local directory {root} does not exist", hint="check the path you sync from")
    ignore_lines = _ignore_lines(source)
    files: dict[str, FileEntry] = {}
    skipped: list[Skipped] = []
    try:
        rules = _Rules(
            source.include, gitignore_spec(ignore_lines), os.path.realpath(root), source.follow_links
        )
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
            f"cannot read {exc.filename or root} ({exc.strerror or exc})",
            hint=f"fix its permissions or add it to {root / IGNORE_FILE}",
        ) from exc
    scope = Scope("", source.include, ignore_lines)
    return Manifest(
        source.remote_root,
        dict(sorted(files.items())),
        scopes=(scope,),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
    )
