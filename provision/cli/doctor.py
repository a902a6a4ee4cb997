"""``mcpctl doctor NAME``: run what the client runs, phase by phase, and say what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from provision.cli.common import JsonOpt, NameArg, emit_json, err, handle_errors
from provision.errors import OptionError

if TYPE_CHECKING:
    from provision.clients.locations import Client
    from provision.doctor import Check


@handle_errors
def doctor(
    name: NameArg,
    client: Annotated[str, typer.Option(help="Which client's entry to check: claude or gemini.")] = "claude",
    config_path: Annotated[Path | None, typer.Option(help="Check this config file instead.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run what the client will run, time every phase against the 60 s budget, name what is wrong."""
    from provision.doctor import run_doctor

    if client not in ("claude", "gemini"):
        raise OptionError(
            f"--client must be 'claude' or 'gemini', not {client!r}",
            hint="pass --client claude or --client gemini",
        )

    def on_check(check: Check) -> None:
        if as_json:
            return
        mark = "[dim]-[/dim]" if check.skipped else ("[green]✓[/green]" if check.ok else "[red]✗[/red]")
        err.print(f"  {mark} {check.phase:<13} {check.seconds:6.2f} s  {check.detail}", soft_wrap=True)
        if check.fix and not check.skipped:
            err.print(f"      [yellow]fix:[/yellow] {check.fix}", soft_wrap=True)

    report = run_doctor(name, client=cast("Client", client), config_path=config_path, on_check=on_check)
    if as_json:
        emit_json(
            {
                "name": report.name,
                "ok": report.ok,
                "total_s": report.total_s,
                "budget_s": report.budget_s,
                "checks": [vars(c) for c in report.checks],
            }
        )
    else:
        verdict = "[green]healthy[/green]" if report.ok else "[red]needs attention[/red]"
        answered = any(c.phase == "initialize" and c.ok and not c.skipped for c in report.checks)
        if answered:
            timing = f"first answer after {report.total_s:.1f} s of a {report.budget_s:.0f} s budget"
        else:
            first = report.failures[0].phase if report.failures else "initialize"
            timing = f"no answer to initialize (first failure: {first})"
        err.print(f"{name}: {verdict}; {timing}")
    if not report.ok:
        raise typer.Exit(1)
