"""One doctor run: the phases in the client's order, the skipped ones after a hard failure, the report.

A hard failure (nothing after it can work) stops the run and marks every later phase skipped; other
findings are recorded and the run goes on, so one run shows everything there is to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import anyio

from provision.clients import locations
from provision.doctor.context import Diagnosis, HardFailure
from provision.doctor.entry import check_config_entry
from provision.doctor.local import check_key_file, check_profile
from provision.doctor.reach import check_connect, check_host_key
from provision.doctor.report import BUDGET_S, PHASES, Check, DoctorReport
from provision.doctor.server import check_session
from provision.doctor.warm import check_warm


async def _run(dx: Diagnosis) -> DoctorReport:
    failed: str | None = None
    try:
        check_profile(dx)
        check_config_entry(dx)
        check_key_file(dx)
        await check_host_key(dx)
        await check_connect(dx)
        await check_session(dx)  # spawn, initialize, tools/list, tool call
        await check_warm(dx)  # how the host started that session
    except HardFailure as exc:
        failed = str(exc)
    for phase in PHASES[len(dx.checks) :]:
        dx.add(Check(phase, False, 0.0, f"not run: the {failed} check failed", skipped=True))
    return DoctorReport(dx.name, tuple(dx.checks))


async def diagnose(
    name: str,
    *,
    client: locations.Client = "claude",
    config_path: Path | None = None,
    on_check: Callable[[Check], None] | None = None,
    request_timeout: float = BUDGET_S,
) -> DoctorReport:
    """Run every phase for profile ``name`` (from a running event loop); see :func:`run_doctor`."""
    return await _run(Diagnosis(name, client, config_path, on_check, request_timeout))


def run_doctor(
    name: str,
    *,
    client: Literal["claude", "gemini"] = "claude",
    config_path: Path | None = None,
    on_check: Callable[[Check], None] | None = None,
    timeout: float = BUDGET_S,
) -> DoctorReport:
    """Run what ``client`` runs for profile ``name``, phase by phase, and report each phase.

    Findings are data, not exceptions: a missing profile, an unreachable host or a server that does
    not start are failed checks with a fix each.

    Args:
        name: The profile.
        client: Whose config entry to check and run: ``claude`` or ``gemini``.
        config_path: Check this config file instead of the client's usual one.
        on_check: Called with each check as soon as it is known (for live output).
        timeout: Seconds each MCP request (initialize, tools/list, the tool call) may take.

    Returns:
        Every phase's check, in :data:`PHASES` order. No :class:`McpctlError` escapes: each problem
        found, including a missing profile, is a failed check.
    """
    return anyio.run(
        lambda: diagnose(
            name, client=client, config_path=config_path, on_check=on_check, request_timeout=timeout
        ),
        backend="asyncio",  # asyncssh runs on asyncio only
    )


__all__ = ["diagnose", "run_doctor"]
