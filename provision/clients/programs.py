"""The local programs a client entry launches: the mcpctl executable (proxy style), or OpenSSH (ssh style).

An entry names its program by absolute path: the apps start it without a shell and often with a
stripped PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path, PureWindowsPath

from provision.clients.system import LocalSystem
from provision.errors import ClientConfigError


def find_mcpctl(system: LocalSystem | None = None) -> str:
    """Return the absolute path of the mcpctl executable: next to this interpreter, else on PATH.

    Raises:
        ClientConfigError: No mcpctl executable is found.
    """
    system = system or LocalSystem.current()
    beside = system.executable.parent / ("mcpctl.exe" if system.windows else "mcpctl")
    if system.executable.is_absolute() and beside.is_file():
        return str(beside)
    found = shutil.which("mcpctl", path=system.getenv("PATH"))
    if found:
        return os.path.abspath(found)
    raise ClientConfigError(
        "cannot find the mcpctl executable for the client to launch",
        hint="install mcpctl as a tool (for example `uv tool install` with the project's path) and re-run,"
        " or use the ssh style",
    )


def find_ssh(system: LocalSystem | None = None) -> str:
    """Return the absolute path of the OpenSSH client (on Windows, the one shipped with Windows).

    Raises:
        ClientConfigError: There is no ssh client.
    """
    system = system or LocalSystem.current()
    if system.windows:
        path = str(
            PureWindowsPath(system.getenv("SystemRoot") or "C:\\Windows", "System32", "OpenSSH", "ssh.exe")
        )
        # The file can only be checked on Windows itself; elsewhere we are just writing a path.
        if sys.platform != "win32" or Path(path).is_file():
            return path
    else:
        found = shutil.which("ssh", path=system.getenv("PATH"))
        if found:
            return os.path.abspath(found)
    raise ClientConfigError(
        "cannot find the OpenSSH client (ssh)",
        hint="install it (on Windows: Settings > Optional features > OpenSSH Client) and re-run,"
        " or use the proxy style",
    )
