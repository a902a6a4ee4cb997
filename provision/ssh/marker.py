"""Clean output: telling a command's own output from what the login shell printed before it.

sshd runs every command through the user's login shell, which may print junk first (Debian's bash
sources ``~/.bashrc`` even for ``ssh host cmd``). So :func:`with_marker` makes the shell print a random
marker line carrying its pid just before it ``exec``s the command, and everything up to that line is
discarded (:func:`split_marker`, :func:`read_marker_line`). The pid is the command's own (``exec``
keeps it), and sshd made it a process-group leader: that is how a stopped command really stops.
"""

from __future__ import annotations

from secrets import token_hex

import asyncssh

_TAIL_LINES = 8
_TAIL_CHARS = 800


def with_marker(command: str, *, stderr: bool) -> tuple[str, bytes]:
    """Prefix ``command`` with a random marker line carrying the shell's pid, and ``exec`` the command.

    The printed line is ``MARKER PID``; ``exec`` keeps the pid, so PID is the command's own. The
    marker is printed in two halves so that a shell tracing its commands (``set -x`` in an rc file)
    cannot echo the whole marker before the real one.

    Returns:
        The command line and the marker (without the `` PID\\n`` that follows it).
    """
    head, tail = "__mcpctl_", token_hex(16) + "__"
    printf = f"printf '%s%s %s\\n' {head} {tail} $$"
    prefix = f"{printf}; {printf} >&2; " if stderr else f"{printf}; "
    return f"{prefix}exec {command}", f"{head}{tail}".encode("ascii")


def split_marker(data: bytes, marker: bytes) -> tuple[int | None, bytes] | None:
    """Find the marker line in ``data``: return (pid, what follows the line), or None if absent."""
    start = data.find(marker + b" ")
    if start < 0:
        return None
    end = data.find(b"\n", start)
    if end < 0:
        return None
    pid_text = data[start + len(marker) + 1 : end]
    return (int(pid_text) if pid_text.isdigit() else None), data[end + 1 :]


async def read_marker_line(process: asyncssh.SSHClientProcess[bytes], marker: bytes) -> bytes:
    """Read stdout up to and including the marker line (discarding what the login shell printed)."""
    await process.stdout.readuntil(marker + b" ")
    return marker + b" " + await process.stdout.readuntil(b"\n")


def as_bytes(data: object) -> bytes:
    """asyncssh's output as bytes (it may hand back str, bytes or None)."""
    if isinstance(data, bytes):
        return data
    return data.encode("utf-8") if isinstance(data, str) else b""


def decode(data: bytes) -> str:
    """Output as text: UTF-8, bad bytes replaced."""
    return data.decode("utf-8", errors="replace")


def tail(data: str) -> str:
    """The last non-blank lines of some output, joined with `` | `` and capped, for one-line messages."""
    lines = [line for line in data.strip().splitlines() if line.strip()][-_TAIL_LINES:]
    text = " | ".join(lines)
    return text[-_TAIL_CHARS:] if text else "(no error output)"


__all__ = ["as_bytes", "decode", "read_marker_line", "split_marker", "tail", "with_marker"]
