"""What ``mcpctl doctor`` hands back: one :class:`Check` per phase, in order, as a :class:`DoctorReport`.

Also the few helpers that keep a check's words short and alike in every phase: home-relative paths,
output clipped to one line, and the message of an exception without its advice (each check carries
its own ``fix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcp.shared.exceptions import MCPError

from provision.errors import McpctlError

PHASES = (
    "profile",
    "config entry",
    "key file",
    "host key",
    "connect",
    "spawn",
    "initialize",
    "tools/list",
    "tool call",
    "warm start",
)
BUDGET_S = 60.0  # Claude Desktop abandons a server whose initialize is not answered by then
WARN_FRACTION = 0.5  # past this share of the budget, a slower day (cold host, bad network) fails
_SHOWN_CHARS = 500


@dataclass(frozen=True)
class Check:
    """The outcome of one phase.

    Attributes:
        phase: One of :data:`PHASES`.
        ok: Whether the phase passed (a warning passes).
        seconds: How long the phase took (0 when skipped).
        detail: What was found.
        fix: One sentence saying what to do; set when not ok, and on warnings.
        skipped: The phase did not run because an earlier one failed hard.
        warning: Passed, but something needs attention (no client entry, a slow start).
    """

    phase: str
    ok: bool
    seconds: float
    detail: str
    fix: str | None = None
    skipped: bool = False
    warning: bool = False


@dataclass(frozen=True)
class DoctorReport:
    """Every phase's check, in order."""

    name: str
    checks: tuple[Check, ...]
    budget_s: float = BUDGET_S

    @property
    def ok(self) -> bool:
        """Whether every phase passed (warnings included)."""
        return all(check.ok for check in self.checks)

    @property
    def total_s(self) -> float:
        """Seconds from starting the client's command to the ``initialize`` answer, as the client sees it."""
        return sum(c.seconds for c in self.checks if c.phase in ("spawn", "initialize") and not c.skipped)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that failed (skipped ones left out)."""
        return tuple(c for c in self.checks if not c.ok and not c.skipped)

    @property
    def warnings(self) -> tuple[Check, ...]:
        """The checks that passed with a warning."""
        return tuple(c for c in self.checks if c.warning)


# ------------------------------------------------------------------------------------------- words


def shown(path: Path) -> str:
    """``~/...`` for paths in the home directory: shorter, and the same on every user's screen."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def clip(text: str, limit: int = _SHOWN_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def innermost(exc: BaseException) -> BaseException:
    """The first real exception inside exception groups (task groups wrap what their tasks raise)."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc


def message_of(exc: BaseException) -> str:
    """What went wrong, from the innermost exception: an mcpctl error's ``message`` (its hint is
    advice for another command; the check says what to do here), an OS error's reason and file."""
    exc = innermost(exc)
    if isinstance(exc, McpctlError):
        return exc.message
    if isinstance(exc, MCPError) and isinstance(exc.data, dict) and isinstance(exc.data.get("message"), str):
        return str(exc.data["message"])  # the proxy's error, its parts as fields (connect/ledger.py)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


__all__ = [
    "BUDGET_S",
    "PHASES",
    "WARN_FRACTION",
    "Check",
    "DoctorReport",
    "clip",
    "innermost",
    "message_of",
    "shown",
]
