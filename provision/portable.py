"""What differs between Linux, macOS and Windows on the laptop's side, in one place.

- **Private files**: 0600 (folders 0700) on POSIX. On Windows ``chmod`` only toggles the read-only
  bit, so a private file gets an access list that names the current user alone (``icacls
  /inheritance:r /grant:r``): profiles, keys and pinned host keys are nobody else's business, and
  Windows' OpenSSH refuses a key file others can read.
- **Locks**: an exclusive lock on an open file, ``flock`` on POSIX and ``msvcrt.locking`` on Windows.
- **Signals**: the strongest stop signal there is.

Every branch is a ``sys.platform`` check, so ``mypy --platform win32`` and ``--platform darwin``
(``make typecheck``) see each platform's calls and nothing else.
"""

from __future__ import annotations

import errno
import getpass
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PureWindowsPath

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

# SIGKILL where it exists; on Windows os.kill with SIGTERM already ends the process outright.
KILL_SIGNAL: signal.Signals = getattr(signal, "SIGKILL", signal.SIGTERM)

_ICACLS_TIMEOUT = 30.0  # seconds: icacls on one local file takes milliseconds


def windows_user(env: Mapping[str, str]) -> str:
    """The account an access list should name: ``DOMAIN\\user`` (or the bare name without a domain)."""
    name = env.get("USERNAME") or getpass.getuser()
    domain = env.get("USERDOMAIN")
    return f"{domain}\\{name}" if domain else name


def windows_private_argv(path: str | Path, user: str, *, directory: bool, system_root: str) -> list[str]:
    """The ``icacls`` command that leaves ``path`` readable by ``user`` only.

    ``/inheritance:r`` drops the entries the file would inherit from its folder (Users, Everyone,
    ...) and ``/grant:r`` replaces any explicit ones with full control for the user; a folder passes
    that grant on to what is created in it later.
    """
    icacls = str(PureWindowsPath(system_root, "System32", "icacls.exe"))
    grant = f"{user}:(OI)(CI)F" if directory else f"{user}:F"
    return [icacls, str(path), "/inheritance:r", "/grant:r", grant]


def make_private(path: Path, *, directory: bool = False) -> None:
    """Let only the current user read and write ``path`` (a file, or a folder with ``directory``).

    Raises:
        OSError: The permissions cannot be changed (the caller says which file it was).
    """
    if sys.platform == "win32":
        argv = windows_private_argv(
            path,
            windows_user(os.environ),
            directory=directory,
            system_root=os.environ.get("SYSTEMROOT") or "C:\\Windows",
        )
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                check=False,
                timeout=_ICACLS_TIMEOUT,
                creationflags=subprocess.CREATE_NO_WINDOW,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OSError(errno.EACCES, f"icacls could not run: {exc}", str(path)) from exc
        if done.returncode != 0:
            said = (done.stdout.strip() or done.stderr.strip()).splitlines()
            raise OSError(errno.EACCES, said[-1] if said else "icacls failed", str(path))
    else:
        os.chmod(path, PRIVATE_DIR_MODE if directory else PRIVATE_FILE_MODE)


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on the open file ``fd`` without waiting; False when another process has it.

    The lock lasts until ``fd`` is closed. On Windows it covers the file's first byte, so every
    holder must lock the same way (they all come through here).

    Raises:
        OSError: The file system cannot lock.
    """
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):
                return False
            raise
        return True
    else:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


__all__ = [
    "KILL_SIGNAL",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "make_private",
    "try_lock",
    "windows_private_argv",
    "windows_user",
]
