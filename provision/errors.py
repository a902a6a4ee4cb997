"""The one error tree of mcpctl.

Library code raises these; ``cli.py`` catches them once, prints the message in one red line and exits
with the class's code. Foreign errors (asyncssh, botocore, OSError) are translated where they enter.
"""

from __future__ import annotations


class McpctlError(Exception):
    """An expected failure. ``str(err)`` is one sentence: what is wrong and what to do next."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ProfileError(McpctlError):
    """A profile is missing, malformed, or names something that does not exist."""

    exit_code = 2


class ConnectError(McpctlError):
    """The host cannot be reached or refused our login."""

    exit_code = 3


class HostKeyError(McpctlError):
    """The host's key is unknown or differs from the pinned one."""

    exit_code = 4


class RemoteError(McpctlError):
    """A command or file operation on the remote host failed (disk full, not writable, exit != 0)."""

    exit_code = 5


class ClientConfigError(McpctlError):
    """A Claude Desktop / Gemini config file is invalid or cannot be written."""

    exit_code = 6


class CloudError(McpctlError):
    """An AWS call failed: no credentials, no permission, quota, capacity."""

    exit_code = 7


class SandboxError(McpctlError):
    """The local sandbox host could not be started, found, or stopped."""

    exit_code = 8
