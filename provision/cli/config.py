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
    from provision.clients.jsonedit import ConfigChange

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
    http: bool = False,
) -> None:
    from provision.clients.configure import configure_client, remove_client_entry
    from provision.clients.entries import EntryInputs
    from provision.profiles import load_profile

    if style not in ("proxy", "ssh"):
        raise OptionError(
            f"--style must be 'proxy' or 'ssh', not {style!r}",
            hint="pass --style proxy (the default) or --style ssh",
        )
    if http and not remove:
        change = _http_entry(client, name, server_name, config_path, dry_run, force)
    elif remove:
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
    if http and not remove:
        _explain_http_entry(name)


def _http_entry(
    client: Client, name: str, server_name: str | None, path: Path | None, dry_run: bool, force: bool
) -> ConfigChange:
    from provision.clients.http_entry import configure_gemini_http
    from provision.profiles import load_profile

    if client != "gemini":
        raise OptionError(
            "--http writes a Gemini CLI entry; Claude Desktop's entries start a local program",
            hint=f"run `mcpctl config claude {name}`: its `mcpctl connect` reaches the HTTP server itself",
        )
    profile = load_profile(name)
    return configure_gemini_http(profile, server_name=server_name, path=path, force=force, dry_run=dry_run)


def _explain_http_entry(name: str) -> None:
    from provision.clients.http_entry import local_url
    from provision.host.http_keys import env_variable, key_path
    from provision.profiles import load_profile

    profile = load_profile(name)
    variable = env_variable(name)
    err.print(
        f'the entry reads the key from ${variable}: `export {variable}="$(cat {key_path(profile)})"` '
        "before starting gemini.",
        markup=False,
        soft_wrap=True,
    )
    if profile.http is not None and profile.http.url is None and profile.kind != "sandbox":
        err.print(f"it reaches {local_url(profile)} while `mcpctl tunnel {name}` runs.", markup=False)


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
        http: Annotated[
            bool,
            typer.Option("--http", help="Gemini: an httpUrl entry for the HTTP server (key from env)."),
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        _config(client, name, style, server_name, config_path, dry_run, remove, force, as_json, http)

    command.__doc__ = (
        f"Write (or --remove) the {client.title()} entry for profile NAME: merge, backup, atomic."
    )
    return command


config_app.command("claude")(_config_command("claude"))
config_app.command("gemini")(_config_command("gemini"))
