"""The one error tree of mcpctl.

Library code raises these; the CLI catches them once, prints the error in one red line and exits with
the class's code. Foreign errors (asyncssh, botocore, OSError) are translated where they enter.

One message style for every error:

- ``message`` says what is wrong, ``hint`` says what to do about it (``None`` when nothing helps);
- both are lowercase-first clauses without a trailing period (a name, path or command may still
  start them), so that ``str(err)`` reads as one sentence: ``"message; hint"``;
- callers branch on the class or a field (``ProfileNotFound.name``), never on the words: the words
  are for people and may change.
"""

from __future__ import annotations

from pathlib import Path


class McpctlError(Exception):
    """An expected failure. ``str(err)`` is one sentence: ``"message; hint"`` (what is wrong; what to do)."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


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


class ProfileNotFound(ProfileError):
    """No profile has this name (``name``); the hint says how to create one and lists those that exist."""

    def __init__(self, name: str, *, hint: str | None = None) -> None:
        super().__init__(f"no profile named '{name}'", hint=hint)
        self.name = name


class ClientConfigChanged(ClientConfigError):
    """Another program saved the client config file at ``path`` while mcpctl was editing it."""

    def __init__(self, path: Path, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class OptionError(McpctlError):
    """A command-line option is malformed, or does not fit the command or the other options given."""


class KeyNeedsPassphrase(ProfileError):
    """The private key file at ``path`` is encrypted: nobody is there to type its passphrase when a
    client starts the server, so only an ssh-agent holding the key can use it."""

    def __init__(self, path: Path, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class KeyFileError(McpctlError):
    """A key file mcpctl keeps at ``path`` cannot be used; ``problem`` says why: ``"unreadable"`` (not
    a private key), ``"lost"`` (only its ``.pub`` is left) or ``"unwritable"``, and ``detail`` is the
    reason the system gave, if any. Callers turn it into their own error class and say what to do (the
    hint depends on whose key it is)."""

    def __init__(
        self, path: Path, problem: str, message: str, *, detail: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.problem = problem
        self.detail = detail
