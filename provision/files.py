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

from provision.portable import PRIVATE_FILE_MODE, make_private

PRIVATE_MODE = PRIVATE_FILE_MODE


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
        mode: Permission bits of the new file. The default makes it private on every platform (on
            Windows: an access list naming only the current user); any other mode is a plain chmod,
            of which Windows honours only the read-only bit.
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
        # Set on the temporary file, so the name never holds readable content; a rename keeps both the
        # mode and a Windows access list.
        if mode == PRIVATE_MODE:
            make_private(tmp)
        else:
            os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
