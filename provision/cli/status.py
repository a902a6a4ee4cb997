"""``mcpctl status NAME``: a profile's EC2 instance and/or HTTP server, as the profile has them."""

from __future__ import annotations

import typer

from provision.cli import ec2 as ec2_commands
from provision.cli.common import JsonOpt, NameArg, emit_json, err, handle_errors


@handle_errors
def status(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show profile NAME's EC2 instance (state, address, cost) and HTTP server (state, /health)."""
    import anyio

    from provision.host.http_profile import http_status
    from provision.profiles import load_profile

    profile = load_profile(name)
    if profile.http is None:  # the instance only (which refuses, with its advice, a profile of another kind)
        ec2_commands.status(name, as_json=as_json)
        return
    if profile.kind == "ec2" and not as_json:
        ec2_commands.status(name)
    result = anyio.run(http_status, name)
    if as_json:
        emit_json(result.as_dict())
        return
    service = {"systemd": "systemd unit", "process": "background process", None: "deployment"}[result.service]
    err.print(f"[bold]{name}[/bold]  HTTP server  {result.state}  ({service})")
    err.print(f"  where     {result.where}", markup=False)
    err.print(f"  /health   {result.health.describe()}", markup=False)
    if not result.health.ok:
        raise typer.Exit(1)
