"""The one way mcpctl replaces a local file: write a temporary sibling, flush it, rename it over.

A reader sees the old file or the new one, never half of one, and a crash leaves at most a stray
``.NAME.*.tmp`` sibling (removed here on any error). Profiles, keys, known_hosts, the sandbox's
records, client configs and the local hash cache all go through :func:`atomic_write`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

PRIVATE_MODE = 0o600


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = PRIVATE_MODE,
    before_replace: Callable[[Path], None] | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically; the new file gets ``mode`` (0600 unless told).

    Args:
        path: The file to replace (or create); its directory must exist.
        data: The whole new content.
        mode: Permission bits of the new file. On Windows only the read-only bit means anything.
        before_replace: Called with the finished temporary file just before the rename: the place to
            copy an owner or to check, one last time, that nobody changed ``path`` meanwhile (raise to
            abandon the write; the temporary file is removed and ``path`` is left as it was).

    Raises:
        OSError: The file cannot be written (the caller translates it, knowing what the file is).
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp made it 0600; chmod by path works on every platform
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
