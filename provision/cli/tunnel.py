"""``mcpctl tunnel NAME``: reach a profile's HTTP server from this machine through SSH, until Ctrl-C."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli.common import NameArg, err, handle_errors

if TYPE_CHECKING:
    from provision.host.http_reach import Health


@handle_errors
def tunnel(
    name: NameArg,
    local_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port on this machine's 127.0.0.1 (default: http.local_port, else the host's; 0: free).",
        ),
    ] = None,
) -> None:
    """Forward a local port to profile NAME's HTTP server over SSH (only port 22 needed); Ctrl-C ends it."""
    import anyio

    from provision.host.http_keys import key_path
    from provision.host.http_profile import run_tunnel
    from provision.profiles import load_profile

    def ready(url: str, health: Health) -> None:
        err.print(f"[bold]{name}[/bold]: {url}  (/health {health.describe()})", soft_wrap=True)
        err.print(
            f"send the key from {key_path(load_profile(name))} as `X-API-Key` or `Authorization: Bearer`; "
            "Ctrl-C closes the tunnel.",
            markup=False,
            soft_wrap=True,
        )

    try:
        anyio.run(lambda: run_tunnel(name, local_port=local_port, on_ready=ready))
    except KeyboardInterrupt:
        err.print("tunnel closed")
        return
    err.print("[yellow]the SSH connection closed; the tunnel is gone[/yellow]")
    raise typer.Exit(3)
