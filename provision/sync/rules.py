"""Which paths sync sends, never touches, or may delete: gitignore rules and what a source manages.

Patterns are gitignore syntax (``pathspec``). Besides the include and ignore patterns of each source,
some rules hold everywhere: :data:`BUILTIN_IGNORES` are never sent nor deleted (VCS data, virtualenvs,
caches, our own state and temporary files), the remote listing does not enter :data:`PRUNED_DIRS`,
and nothing under :data:`PROTECTED_DIRS` is ever deleted.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pathspec

from provision.layout import STATE_DIR, VENV_DIR
from provision.sync.helper import TEMP_MARK

IGNORE_FILE = ".mcpignore"
SERVER_CACHE_DIR = ".mcp_sales_cache"  # what the server writes next to its data
# Never sent, never deleted: VCS data, virtualenvs, caches the server writes, our own state.
BUILTIN_IGNORES: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    f"{VENV_DIR}/",
    "__pycache__/",
    f"{SERVER_CACHE_DIR}/",
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
PROTECTED_DIRS = frozenset({VENV_DIR, SERVER_CACHE_DIR, STATE_DIR})
_GLOB_CHARS = frozenset("*?[\\")


@functools.lru_cache(maxsize=256)
def gitignore_spec(lines: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    """The compiled rules of ``lines`` (cached: every source and scope asks for the same few)."""
    return pathspec.GitIgnoreSpec.from_lines(lines)


def literal_pattern(relative: str) -> str:
    """Return a gitignore pattern matching exactly the path ``relative`` (special characters escaped)."""
    escaped = re.sub(r"([\\*?\[\]!# ])", r"\\\1", relative)
    return "/" + escaped


def is_protected(path: str) -> bool:
    """Whether ``path`` (relative to a remote root) lies in a directory sync never deletes from."""
    return bool(PROTECTED_DIRS & set(path.split("/")[:-1]))


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


def may_contain(include: tuple[str, ...], directory: str) -> bool:
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
        ignore = gitignore_spec(self.ignore)
        # Like git: a file in an ignored directory is ignored whatever the later patterns say.
        for depth in range(1, len(parts)):
            if ignore.match_file("/".join(parts[:depth]) + "/"):
                return False
        return gitignore_spec(self.include).match_file(path) and not ignore.match_file(path)
