"""``mcpctl sandbox up|down|status``: the local SSH host on 127.0.0.1 to try everything on."""

from __future__ import annotations

from typing import Annotated

import typer

from provision.cli.common import JsonOpt, emit_json, err, handle_errors

sandbox_app = typer.Typer(help="A local SSH host on 127.0.0.1 to try everything.", no_args_is_help=True)


@sandbox_app.command("up")
@handle_errors
def sandbox_up(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: its last one if free, else a free one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the local sandbox SSH host (idempotent)."""
    from provision.ssh import sandbox

    previous = sandbox.last_port()
    info = sandbox.up(port=port)
    if as_json:
        emit_json(
            {
                "pid": info.pid,
                "host": info.host,
                "port": info.port,
                "user": info.user,
                "previous_port": previous,
            }
        )
        return
    err.print(f"sandbox up on {info.host}:{info.port} (pid {info.pid}, user {info.user})")
    if previous is not None and previous != info.port:
        why = "it was taken" if port is None else "as asked"
        err.print(
            f"moved from port {previous} ({why}): sandbox profiles follow it by themselves; an ssh-style "
            "client entry needs `mcpctl config claude NAME --style ssh` again."
        )
    err.print("next: `mcpctl provision NAME --sandbox`")


@sandbox_app.command("down")
@handle_errors
def sandbox_down() -> None:
    """Stop the local sandbox SSH host."""
    from provision.ssh import sandbox

    err.print("sandbox stopped" if sandbox.down() else "sandbox was not running")


@sandbox_app.command("status")
@handle_errors
def sandbox_status(as_json: JsonOpt = False) -> None:
    """Say whether the sandbox runs, and where."""
    from provision.ssh import sandbox

    info = sandbox.status()
    if as_json:
        emit_json(None if info is None else {"pid": info.pid, "port": info.port, "uptime": info.uptime})
        return
    if info is None:
        last = sandbox.last_port()
        where = f" (last on port {last})" if last is not None else ""
        err.print(f"sandbox is stopped{where}; start it with `mcpctl sandbox up`.")
        raise typer.Exit(1)
    err.print(f"sandbox running on {info.host}:{info.port} (pid {info.pid}, up {info.uptime:.0f} s)")
