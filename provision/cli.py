"""The mcpctl command line: thin commands over the provision library."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mcpctl",
    help="Run the mcp_sales MCP server on a remote host over SSH, for Claude Desktop and Gemini.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the mcpctl version."""
    from provision import __version__

    typer.echo(__version__)
