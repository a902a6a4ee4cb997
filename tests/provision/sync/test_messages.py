"""Every sync error in the one style: what is wrong in the message, what to do in the hint."""

from __future__ import annotations

import errno
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest

from provision.errors import ConnectError, McpctlError, RemoteError
from provision.sync.helper_client import dropped, write_error
from provision.sync.plan import Upload
from provision.sync.report import SourceChangedError
from provision.sync.transfer import local_error

if TYPE_CHECKING:
    from provision.ssh.remote import Remote

REMOTE = cast("Remote", SimpleNamespace(target=SimpleNamespace(address="host.example:22", user="deploy")))
UPLOAD = Upload("a.py", 1, "new", Path("/src/a.py"), 0, 0o644)


def errors() -> list[McpctlError]:
    return [
        write_error(REMOTE, "/srv/app", "/srv/app/a.py", errno.ENOSPC, "No space left on device"),
        write_error(REMOTE, "/srv/app", "/srv/app/a.py", errno.EROFS, "Read-only file system"),
        write_error(REMOTE, "/srv/app", "/srv/app/a.py", errno.EIO, "Input/output error"),
        dropped(REMOTE, ConnectionResetError("reset by peer")),
        local_error(UPLOAD, PermissionError(errno.EACCES, "Permission denied")),
        SourceChangedError([Path("/d/a.csv")]),
        SourceChangedError([Path("/d/a.csv"), Path("/d/b.csv")]),
    ]


@pytest.mark.parametrize("error", errors(), ids=lambda e: type(e).__name__)
def test_a_sync_error_says_what_is_wrong_then_what_to_do(error: McpctlError) -> None:
    assert error.hint, "every sync error says what to do"
    for part in (error.message, error.hint):
        assert not part.endswith("."), part
        assert not part[0].isupper(), part
    assert str(error) == f"{error.message}; {error.hint}"


def test_write_errors_are_told_apart_by_errno_not_words() -> None:
    full, read_only, other = errors()[:3]
    assert isinstance(full, RemoteError) and full.message.startswith("the remote disk is full")
    assert "`df -h /srv/app`" in (full.hint or "")
    assert "user 'deploy'" in (read_only.hint or "")
    assert (
        other.hint == "check that path on the host (every file not yet replaced keeps its previous version)"
    )
    assert isinstance(errors()[3], ConnectError)
