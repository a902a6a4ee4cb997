"""What every command of the mcpctl command line shares: the console, the options, the error boundary.

Human output goes to stderr (rich); ``--json`` output goes to stdout. Expected failures
(:class:`~provision.errors.McpctlError`) print one red line and exit with the error's code; anything
else writes its traceback to the log file and says where it is.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from provision.errors import McpctlError

P = ParamSpec("P")
R = TypeVar("R")

err = Console(stderr=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
NameArg = Annotated[str, typer.Argument(help="Profile name.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def confirm_destroy(question: str, *, yes: bool) -> None:
    """Ask ``question`` on stderr unless ``yes``; a "no" ends the command (exit 1) with nothing destroyed."""
    if not yes and not typer.confirm(question, default=False, err=True):
        err.print("nothing destroyed")
        raise typer.Exit(1)


def _crash_log() -> Path:
    from provision.profiles import log_dir

    try:
        return log_dir() / "mcpctl-crash.log"
    except McpctlError:
        return Path.home() / "mcpctl-crash.log"


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Catch errors once, at the command boundary: one red line and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except McpctlError as exc:
            err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception:
            path = _crash_log()
            with path.open("a", encoding="utf-8") as log:
                log.write(traceback.format_exc())
            err.print(f"[red]error:[/red] unexpected failure; the traceback is in {path}. Please report it.")
            raise typer.Exit(70) from None

    return wrapper


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (the only thing a command writes there)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def phase_printer(prefix: str = "") -> Callable[[str, str], None]:
    """Return an ``on_phase`` callback that prints ``✓ phase  detail`` lines to stderr."""

    def on_phase(phase: str, detail: str) -> None:
        err.print(f"  [green]✓[/green] {prefix}{phase:<12} {detail}")

    return on_phase
