"""``mcpctl connect NAME`` (what the MCP client runs) and ``mcpctl logs NAME`` (what it wrote)."""

from __future__ import annotations

from typing import Annotated

import typer

from provision.cli.common import NameArg, err, handle_errors


def connect(name: NameArg) -> None:
    """Proxy stdio to the server on the host, reconnecting on drops (what Claude Desktop runs).

    stdout carries only JSON-RPC; everything else goes to the profile's log file (`mcpctl logs NAME`).
    """
    # No handle_errors: the proxy reports to its log and returns the exit code itself.
    from provision.connect.main import connect_main

    raise typer.Exit(connect_main(name))


@handle_errors
def logs(
    name: NameArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many lines from the end.")] = 50,
) -> None:
    """Print the log of `mcpctl connect NAME` (remote stderr, reconnects, firewall drops)."""
    from provision.connect import log as logfiles
    from provision.profiles import load_profile

    load_profile(name)  # a typo in the name gets the list of profiles, not an empty log
    path = logfiles.log_path(name)
    if not path.exists():
        err.print(f"no log yet at {path}; it starts with the first `mcpctl connect {name}`.")
        return
    for line in logfiles.tail(path, lines):
        typer.echo(line)
    if follow:
        for line in logfiles.follow(path):
            typer.echo(line)
