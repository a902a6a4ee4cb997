"""sha256 of local files, and the cache that spares reading an unchanged file twice.

The cache is keyed by (absolute path, size, mtime_ns), so an unchanged 512 MB file is hashed once,
and kept in mcpctl's state directory between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from provision.files import atomic_write
from provision.profiles import state_dir

_HASH_CHUNK = 1 << 20
CACHE_FILE = "sync-hashes.json"


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
        return cls(state_dir() / CACHE_FILE)

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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps({"version": 1, "files": files}).encode("utf-8"))
            self._dirty = False
        except OSError:
            pass  # a lost cache costs one re-hash, never a wrong answer
