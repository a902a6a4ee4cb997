"""``mcpctl config claude|gemini NAME``: write (or ``--remove``) our entry in an MCP client's config file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, cast

import typer

from provision.cli.common import JsonOpt, NameArg, emit_json, err, handle_errors
from provision.errors import OptionError

if TYPE_CHECKING:
    from provision.clients.entries import Style

Client = Literal["claude", "gemini"]

config_app = typer.Typer(
    help="Write the MCP client entries (Claude Desktop, Gemini CLI).", no_args_is_help=True
)


def _config(
    client: Client,
    name: str,
    style: str,
    server_name: str | None,
    config_path: Path | None,
    dry_run: bool,
    remove: bool,
    force: bool,
    as_json: bool,
) -> None:
    from provision.clients.configure import configure_client, remove_client_entry
    from provision.clients.entries import EntryInputs
    from provision.profiles import load_profile

    if style not in ("proxy", "ssh"):
        raise OptionError(
            f"--style must be 'proxy' or 'ssh', not {style!r}",
            hint="pass --style proxy (the default) or --style ssh",
        )
    if remove:
        change = remove_client_entry(
            name, client=client, server_name=server_name, path=config_path, force=force, dry_run=dry_run
        )
    else:
        inputs = EntryInputs.from_profile(load_profile(name))
        change = configure_client(
            inputs,
            client=client,
            style=cast("Style", style),
            server_name=server_name,
            path=config_path,
            force=force,
            dry_run=dry_run,
        )
    if as_json:
        emit_json(
            {
                "path": str(change.path),
                "server_name": change.server_name,
                "action": change.action,
                "backup": str(change.backup) if change.backup else None,
                "entry": change.entry,
                "dry_run": change.dry_run,
            }
        )
        return
    if dry_run and change.diff:
        err.print(change.diff, markup=False)
    verb = "would be " if dry_run else ""
    err.print(f"{change.path}: entry '{change.server_name}' {verb}{change.action}")
    if change.backup:
        err.print(f"backup: {change.backup}")
    if change.changed and not dry_run:
        err.print("restart the client (quit it fully first) to load the change.")


def _config_command(client: Client) -> Callable[..., None]:
    @handle_errors
    def command(
        name: NameArg,
        style: Annotated[
            str, typer.Option(help="proxy: `mcpctl connect` (survives drops); ssh: plain ssh.")
        ] = "proxy",
        server_name: Annotated[
            str | None, typer.Option(help="Key in mcpServers (default sales-NAME).")
        ] = None,
        config_path: Annotated[
            Path | None, typer.Option(help="Edit this file instead of the default.")
        ] = None,
        dry_run: Annotated[bool, typer.Option(help="Show the change without writing.")] = False,
        remove: Annotated[bool, typer.Option(help="Take our entry out.")] = False,
        force: Annotated[bool, typer.Option(help="Replace or remove an entry mcpctl did not write.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        _config(client, name, style, server_name, config_path, dry_run, remove, force, as_json)

    command.__doc__ = (
        f"Write (or --remove) the {client.title()} entry for profile NAME: merge, backup, atomic."
    )
    return command


config_app.command("claude")(_config_command("claude"))
config_app.command("gemini")(_config_command("gemini"))
