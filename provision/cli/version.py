"""``mcpctl version``."""

from __future__ import annotations

import typer


def version() -> None:
    """Print the mcpctl version."""
    from provision import __version__

    typer.echo(__version__)


def print_version(value: bool) -> None:
    """``mcpctl --version``: print the version and stop before any command runs."""
    if value:
        version()
        raise typer.Exit()
