"""``mcpctl version``."""

from __future__ import annotations

import typer


def version() -> None:
    """Print the mcpctl version."""
    from provision import __version__

    typer.echo(__version__)
