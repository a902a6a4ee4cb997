"""``mcpctl provision NAME``: create or update a profile and install the server on its host.

The command parses, asks (the host key, on a terminal) and renders; :mod:`provision.host.request`
decides the kind of host (``--host``, ``--sandbox``, ``--ec2``, else the saved profile's) and refuses
options that mean nothing for it. ``--column`` is read by the server's own parser
(:mod:`mcp_sales.mapping`), so mcpctl accepts exactly what the server will."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from provision.cli import ec2 as cli_ec2
from provision.cli.common import JsonOpt, NameArg, emit_json, err, handle_errors, phase_printer
from provision.errors import OptionError


def parse_columns(items: list[str]) -> dict[str, str]:
    """Read ``--column FIELD=COLUMN`` options as the server does (``mcp_sales.mapping``).

    Raises:
        OptionError: The server would refuse one of them (not FIELD=COLUMN, an unknown field, or a
            required field left empty); the message is the server's own.
    """
    from mcp_sales.errors import InvalidInput
    from mcp_sales.mapping import parse_column_overrides

    try:
        return parse_column_overrides(items)
    except InvalidInput as exc:
        raise OptionError(str(exc)) from None


def _confirm_key(yes: bool) -> Callable[[str, int, str], bool] | None:
    """Ask before pinning a host key nobody vouched for (only on a terminal; --yes accepts)."""

    def ask(host: str, port: int, fingerprint: str) -> bool:
        err.print(f"host key of {host}:{port} is [bold]{fingerprint}[/bold]")
        if yes:
            return True
        return typer.confirm("Is this the host's key? (check with its owner)", default=False, err=True)

    return ask if (yes or sys.stdin.isatty()) else None


@handle_errors
def provision(
    name: NameArg,
    host: Annotated[str | None, typer.Option(help="Existing Linux host: user@host[:port].")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Use the local sandbox host.")] = False,
    ec2: Annotated[bool, typer.Option("--ec2", help="Launch an EC2 instance (see docs/EC2.md).")] = False,
    host_key: Annotated[
        str | None, typer.Option(help="Expected host key: public key line or SHA256 fingerprint.")
    ] = None,
    identity_file: Annotated[Path | None, typer.Option(help="Private key to log in with.")] = None,
    remote_dir: Annotated[str | None, typer.Option(help="Absolute install directory on the host.")] = None,
    data: Annotated[
        list[Path] | None, typer.Option(help="Local sales data file to send (CSV/Parquet).")
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            help="Column mapping FIELD=COLUMN, e.g. operation=CITY; FIELD= unmaps an optional field"
            " (repeatable)."
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept the shown host key fingerprint.")] = False,
    force: Annotated[bool, typer.Option(help="Reinstall the environment even if it is up to date.")] = False,
    region: Annotated[
        str | None, typer.Option(help="--ec2: AWS region (default: the profile's, else your AWS config).")
    ] = None,
    instance_type: Annotated[
        str | None, typer.Option(help="--ec2: instance type (default: t3.small; t4g.* are arm64).")
    ] = None,
    ssh_cidr: Annotated[
        str | None, typer.Option(help="--ec2: who may reach port 22 (default: your public IP as a /32).")
    ] = None,
    volume_gb: Annotated[
        int | None, typer.Option(help="--ec2: root volume size in GB (default: 16).")
    ] = None,
    autostop_minutes: Annotated[
        int | None,
        typer.Option(help="--ec2: stop the instance after N idle minutes, 0 = never (default: 60)."),
    ] = None,
    allow_world: Annotated[
        bool, typer.Option("--allow-world", help="--ec2: accept an --ssh-cidr wider than /24.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="--ec2: print what would be created and what it costs; change nothing.")
    ] = False,
    http: Annotated[
        bool,
        typer.Option(
            "--http",
            help="Also run the HTTP server on the host (127.0.0.1 only, API key; see docs/HOST_HTTP.md).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create or update profile NAME and install the server on its host (idempotent)."""
    import dataclasses

    import anyio

    from provision.host.request import Ec2Options, ProvisionRequest, provision_mode
    from provision.host.request import provision as run_request

    request = ProvisionRequest(
        name,
        host=host,
        sandbox=sandbox,
        ec2=ec2,
        host_key=host_key,
        identity_file=identity_file,
        remote_dir=remote_dir,
        data=data or [],
        yes=yes,
        force=force,
        ec2_options=Ec2Options(
            region, instance_type, ssh_cidr, volume_gb, autostop_minutes, allow_world, dry_run
        ),
        http=http,
    )
    mode = provision_mode(request)  # refuses options that do not apply, before anything is written
    if mode.kind == "ec2" and dry_run:
        cli_ec2.print_plan(name, request.ec2_options, as_json=as_json)
        return
    request = dataclasses.replace(request, columns=parse_columns(column or []))
    err.print(f"provisioning [bold]{name}[/bold]")
    result = anyio.run(lambda: run_request(request, confirm=_confirm_key(yes), on_phase=phase_printer()))
    if mode.kind == "ec2":
        cli_ec2.print_instance(result.profile)
    total = sum(seconds for _, seconds, _ in result.report.phases)
    if as_json:
        emit_json(
            {
                "profile": result.profile.model_dump(mode="json"),
                "up_to_date": result.report.up_to_date,
                "phases": [{"phase": p, "seconds": s, "detail": d} for p, s, d in result.report.phases],
            }
        )
        return
    state = "up to date" if result.report.up_to_date else "ready"
    err.print(f"[bold green]{name} {state}[/bold green] in {total:.1f} s ({result.profile.remote_dir})")
    if result.profile.http is not None:
        err.print(f"HTTP: `mcpctl tunnel {name}` reaches it here; `mcpctl status {name}` checks it.")
    err.print(
        f"next: `mcpctl config claude {name}` then restart Claude Desktop; `mcpctl doctor {name}` checks it."
    )
