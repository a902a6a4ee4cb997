"""The ``mcpctl`` command line: the Typer ``app`` (console script ``provision.cli:app``), a module per group.

Each command parses its options, calls one library function and renders the result (the only layer
that renders; :mod:`provision.cli.common` holds what they share). Heavy modules (asyncssh, boto3,
pydantic models, the server's code) are imported inside the commands, so ``mcpctl --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from provision.cli import bundle as bundle_command
from provision.cli import connect as connect_commands
from provision.cli import deploy as deploy_commands
from provision.cli import doctor as doctor_command
from provision.cli import ec2 as ec2_commands
from provision.cli import provision as provision_command
from provision.cli import status as status_command
from provision.cli import sync as sync_command
from provision.cli import tunnel as tunnel_command
from provision.cli import version as version_command
from provision.cli.config import config_app
from provision.cli.profile import profile_app
from provision.cli.sandbox import sandbox_app

app = typer.Typer(
    name="mcpctl",
    help="Run the mcp_sales MCP server on a remote host over SSH, for Claude Desktop and Gemini.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the mcpctl version and exit.",
            is_eager=True,
            callback=version_command.print_version,
        ),
    ] = False,
) -> None:
    """Run the mcp_sales MCP server on a remote host over SSH, for Claude Desktop and Gemini."""


# In the order `mcpctl --help` lists them: the host's life cycle first, then the groups.
app.command("provision")(provision_command.provision)
app.command("sync")(sync_command.sync)
app.command("version")(version_command.version)
app.command("connect")(connect_commands.connect)
app.command("doctor")(doctor_command.doctor)
app.command("logs")(connect_commands.logs)
app.command("bundle")(bundle_command.bundle)
app.command("status")(status_command.status)
app.command("stop")(ec2_commands.stop)
app.command("start")(ec2_commands.start)
app.command("destroy")(deploy_commands.destroy)  # deployments; EC2 profiles otherwise
app.command("tunnel")(tunnel_command.tunnel)
app.add_typer(profile_app, name="profile")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(config_app, name="config")
app.add_typer(deploy_commands.deploy_app, name="deploy")

__all__ = ["app"]
