"""``mcpctl profile list|show|remove``: the saved profiles, read and removed locally."""

from __future__ import annotations

import typer

from provision.cli.common import JsonOpt, NameArg, emit_json, err, handle_errors
from provision.errors import McpctlError

profile_app = typer.Typer(help="List, show and remove profiles.", no_args_is_help=True)


@profile_app.command("list")
@handle_errors
def profile_list(as_json: JsonOpt = False) -> None:
    """List the saved profiles."""
    from rich.table import Table

    from provision.profiles import list_profiles, load_profile

    profiles = []
    for name in list_profiles():
        try:
            profiles.append(load_profile(name).model_dump(mode="json"))
        except McpctlError as exc:
            profiles.append({"name": name, "error": str(exc)})
    if as_json:
        emit_json(profiles)
        return
    if not profiles:
        err.print("no profiles yet; create one with `mcpctl provision NAME --sandbox` or `--host user@host`.")
        return
    table = Table("name", "kind", "address", "remote dir")
    for p in profiles:
        if "error" in p:
            table.add_row(p["name"], "[red]invalid[/red]", p["error"], "")
        else:
            table.add_row(
                p["name"], p["kind"], f"{p['user']}@{p.get('host') or '-'}:{p['port']}", p["remote_dir"]
            )
    err.print(table)


@profile_app.command("show")
@handle_errors
def profile_show(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show one profile and where its files are."""
    from provision.profiles import known_hosts_path, load_profile

    profile = load_profile(name)
    if as_json:
        emit_json(profile.model_dump(mode="json"))
        return
    err.print(profile.to_toml())
    err.print(f"# known_hosts: {known_hosts_path(name)}")


@profile_app.command("remove")
@handle_errors
def profile_remove(name: NameArg) -> None:
    """Remove a profile and its pinned host key (nothing on the remote host is touched)."""
    from provision.profiles import remove_profile

    remove_profile(name)
    err.print(f"removed profile '{name}'")
