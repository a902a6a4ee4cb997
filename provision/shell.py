"""Build remote command lines from parts, and mask secrets before they reach a log.

sshd hands the command line to the remote user's login shell (``$SHELL -c LINE``), so every part is
quoted with :func:`shlex.quote`: a remote command is only ever built by joining quoted parts, never by
formatting untrusted text into a shell string. The quoting is POSIX ``sh`` quoting; it is correct for
sh, dash, bash and zsh login shells.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence

MASK = "***"


def join(argv: Sequence[str]) -> str:
    """Quote every part of ``argv`` and join them into one shell command line.

    Args:
        argv: The program and its arguments, unquoted.

    Returns:
        A command line that a POSIX shell splits back into exactly ``argv``.

    Raises:
        TypeError: If ``argv`` is a single string instead of a sequence of arguments.
        ValueError: If ``argv`` is empty or a part contains a NUL byte (no shell can pass one on).
    """
    if isinstance(argv, str):
        # A bare string would be quoted character by character: almost certainly a caller's mistake.
        raise TypeError("join() takes a sequence of arguments, not a string")
    if not argv:
        raise ValueError("cannot build a command line from an empty argv")
    for part in argv:
        if "\0" in part:
            raise ValueError("a command argument contains a NUL byte, which no shell can pass on")
    return " ".join(shlex.quote(part) for part in argv)


def env_prefix(env: Mapping[str, str]) -> list[str]:
    """Return ``env NAME=value ...`` as argv parts, to prepend to a command.

    sshd drops variables sent with the SSH ``env`` request unless its ``AcceptEnv`` allows them, so
    variables the remote command needs are passed on its command line through ``env(1)`` instead.

    Args:
        env: Variable names and values.

    Returns:
        ``["env", "NAME=value", ...]``, or ``[]`` when ``env`` is empty.

    Raises:
        ValueError: If a name is not a valid shell variable name.
    """
    if not env:
        return []
    parts = ["env"]
    for name, value in env.items():
        if not name.isidentifier() or not name.isascii():
            raise ValueError(f"{name!r} is not a valid environment variable name")
        parts.append(f"{name}={value}")
    return parts


def mask(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``***``.

    Longer secrets are replaced first so that a secret containing another is masked whole. Empty and
    ``None`` secrets are ignored.

    Args:
        text: A log line, command line or error message.
        secrets: Values that must never be shown.

    Returns:
        ``text`` with the secrets masked.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
