"""API keys: ``MCP_API_KEY`` and a key file (one key per line, ``#`` comments), re-read when the file
changes so keys rotate without a restart.

A presented key is compared with every configured key in constant time (``hmac.compare_digest``, no
early exit), so timing says nothing about which key or how much of one matched. Keys are never logged:
logs name a key by :func:`key_id`, a short hash prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

KEY_ID_CHARS = 8


class KeyFileError(ValueError):
    """The key file cannot be read or holds no key."""


def key_id(key: str) -> str:
    """A name for a key that is safe to log: ``key:`` and 8 hex digits of its SHA-256."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:KEY_ID_CHARS]


def parse_key_file(path: Path) -> tuple[str, ...]:
    """The keys in ``path``: one per line; blank lines and lines starting with ``#`` are skipped.

    Raises:
        KeyFileError: the file cannot be read, or holds no key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise KeyFileError(
            f"cannot read the API key file {path} ({reason}); fix it or its permissions"
        ) from None
    keys = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")
    )
    if not keys:
        raise KeyFileError(f"the API key file {path} holds no key; write one key per line")
    return keys


class ApiKeys:
    """The keys accepted right now: fixed ones plus the key file as it is now.

    The file is stat'ed on every check (a cheap syscall) and re-read when its size, mtime or inode
    changed. A file that becomes unreadable or empty accepts no file key at all (fail closed) until it
    is fixed; the fixed keys keep working.
    """

    def __init__(self, fixed: Sequence[str] = (), path: Path | None = None) -> None:
        self._fixed = tuple(fixed)
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._from_file: tuple[str, ...] = ()
        if path is not None:
            self._from_file = parse_key_file(path)  # at start-up a bad file is the user's error to fix
            self._stamp = self._file_stamp()

    @property
    def configured(self) -> bool:
        return bool(self._fixed) or self._path is not None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    def _current_file_keys(self) -> tuple[str, ...]:
        if self._path is None:
            return ()
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return self._from_file
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._from_file = parse_key_file(self._path)
                    log.info("API key file %s re-read: %d keys", self._path, len(self._from_file))
                except KeyFileError as exc:
                    log.error("%s; no key from that file is accepted until it is fixed", exc)
                    self._from_file = ()
                self._stamp = stamp
            return self._from_file

    def match(self, presented: str) -> str | None:
        """The :func:`key_id` of the configured key equal to ``presented``, or None."""
        candidate = presented.encode()
        found: str | None = None
        for key in (*self._fixed, *self._current_file_keys()):
            # Every key is compared, matched or not: the time taken depends only on the key count.
            if hmac.compare_digest(candidate, key.encode()) and found is None:
                found = key
        return key_id(found) if found is not None else None
