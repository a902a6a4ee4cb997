"""The ``mcpctl`` Typer app, by command group; the only layer that renders."""

from provision.cli.app import app

__all__ = ["app"]
