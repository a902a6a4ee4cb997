"""The state one doctor run shares between its phases, and how a phase records its check.

Each phase is a function of a :class:`Diagnosis`: it reads what the earlier phases found (the
profile, the login target, the command the client starts), appends its own check, and leaves what
the later phases need (the SSH connect time, the server's python and whether it is there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from provision.clients.locations import app_name
from provision.doctor.report import Check

if TYPE_CHECKING:
    from provision.clients.locations import Client
    from provision.doctor.launch import Launch
    from provision.profiles import Profile
    from provision.ssh.sandbox import SandboxInfo
    from provision.ssh.target import Target


class HardFailure(Exception):
    """A phase failed so that nothing after it can work; ``args[0]`` is the phase."""


def since(started: float) -> float:
    """Seconds from ``started`` (a :func:`time.perf_counter` reading) to now."""
    return time.perf_counter() - started


@dataclass
class Diagnosis:
    """One doctor run: what it was asked, the checks so far, and what the phases found for the next ones."""

    name: str
    client: Client
    config_path: Path | None
    on_check: Callable[[Check], None] | None
    timeout: float  # seconds each MCP request may take
    checks: list[Check] = field(default_factory=list)
    profile: Profile | None = None  # with the port the host is on now (a sandbox moves)
    target: Target | None = None
    launch: Launch | None = None  # what the client starts: its entry's command, or the default one
    connect_s: float | None = None
    python: str | None = None  # the server's interpreter on the host
    python_present: bool | None = None
    sandbox: SandboxInfo | None = None  # the running sandbox, for a sandbox profile
    stale_entry_fix: str | None = None  # the entry names a port the host left

    def add(self, check: Check) -> None:
        """Record ``check`` and report it at once."""
        self.checks.append(check)
        if self.on_check is not None:
            self.on_check(check)

    def flag(self, phase: str, started: float, detail: str, fix: str, *, until: float | None = None) -> None:
        """Record a failed check that took from ``started`` to ``until`` (now); the later phases still run."""
        self.add(Check(phase, False, (until or time.perf_counter()) - started, detail, fix))

    def fail(self, phase: str, started: float, detail: str, fix: str) -> NoReturn:
        """Record a failed check and stop: nothing after it can work.

        Raises:
            HardFailure: Always.
        """
        self.flag(phase, started, detail, fix)
        raise HardFailure(phase)

    @property
    def app(self) -> str:
        """The client's name, for messages."""
        return app_name(self.client)

    @property
    def config_command(self) -> str:
        """The command that writes this profile's entry for this client."""
        return f"`mcpctl config {self.client} {self.name}`"


__all__ = ["Diagnosis", "HardFailure", "since"]
