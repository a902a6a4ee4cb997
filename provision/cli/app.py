"""The mcpctl command line: each command parses, calls one library function, renders the result.

Human output goes to stderr (rich); ``--json`` output goes to stdout. Expected failures
(:class:`~provision.errors.McpctlError`) print one red line and exit with the error's code; anything
else writes its traceback to the log file and says where it is. Heavy modules (asyncssh, boto3) are
imported inside the commands so that ``mcpctl --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console

from provision.errors import McpctlError

P = ParamSpec("P")
R = TypeVar("R")

err = Console(stderr=True, highlight=False)

app = typer.Typer(
    name="mcpctl",
    help="Run the mcp_sales MCP server on a remote host over SSH, for Claude Desktop and Gemini.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
profile_app = typer.Typer(help="List, show and remove profiles.", no_args_is_help=True)
sandbox_app = typer.Typer(help="A local SSH host on 127.0.0.1 to try everything.", no_args_is_help=True)
config_app = typer.Typer(
    help="Write the MCP client entries (Claude Desktop, Gemini CLI).", no_args_is_help=True
)
app.add_typer(profile_app, name="profile")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(config_app, name="config")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
NameArg = Annotated[str, typer.Argument(help="Profile name.")]


def _crash_log() -> Path:
    from provision.profiles import log_dir

    try:
        return log_dir() / "mcpctl-crash.log"
    except McpctlError:
        return Path.home() / "mcpctl-crash.log"


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Catch errors once, at the command boundary: one red line and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except McpctlError as exc:
            err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception:
            path = _crash_log()
            with path.open("a", encoding="utf-8") as log:
                log.write(traceback.format_exc())
            err.print(f"[red]error:[/red] unexpected failure; the traceback is in {path}. Please report it.")
            raise typer.Exit(70) from None

    return wrapper


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (the only thing a command writes there)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def phase_printer(prefix: str = "") -> Callable[[str, str], None]:
    """Return an ``on_phase`` callback that prints ``✓ phase  detail`` lines to stderr."""

    def on_phase(phase: str, detail: str) -> None:
        err.print(f"  [green]✓[/green] {prefix}{phase:<12} {detail}")

    return on_phase


# ------------------------------------------------------------------------------------------ profile


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


# ------------------------------------------------------------------------------------------ sandbox


@sandbox_app.command("up")
@handle_errors
def sandbox_up(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: its last one if free, else a free one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the local sandbox SSH host (idempotent)."""
    from provision.ssh import sandbox

    previous = sandbox.last_port()
    info = sandbox.up(port=port)
    if as_json:
        emit_json(
            {
                "pid": info.pid,
                "host": info.host,
                "port": info.port,
                "user": info.user,
                "previous_port": previous,
            }
        )
        return
    err.print(f"sandbox up on {info.host}:{info.port} (pid {info.pid}, user {info.user})")
    if previous is not None and previous != info.port:
        why = "it was taken" if port is None else "as asked"
        err.print(
            f"moved from port {previous} ({why}): sandbox profiles follow it by themselves; an ssh-style "
            "client entry needs `mcpctl config claude NAME --style ssh` again."
        )
    err.print("next: `mcpctl provision NAME --sandbox`")


@sandbox_app.command("down")
@handle_errors
def sandbox_down() -> None:
    """Stop the local sandbox SSH host."""
    from provision.ssh import sandbox

    err.print("sandbox stopped" if sandbox.down() else "sandbox was not running")


@sandbox_app.command("status")
@handle_errors
def sandbox_status(as_json: JsonOpt = False) -> None:
    """Say whether the sandbox runs, and where."""
    from provision.ssh import sandbox

    info = sandbox.status()
    if as_json:
        emit_json(None if info is None else {"pid": info.pid, "port": info.port, "uptime": info.uptime})
        return
    if info is None:
        last = sandbox.last_port()
        where = f" (last on port {last})" if last is not None else ""
        err.print(f"sandbox is stopped{where}; start it with `mcpctl sandbox up`.")
        raise typer.Exit(1)
    err.print(f"sandbox running on {info.host}:{info.port} (pid {info.pid}, up {info.uptime:.0f} s)")


# ------------------------------------------------------------------------------------------- config

Style = Literal["proxy", "ssh"]


def _config(
    client: Literal["claude", "gemini"],
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
        raise McpctlError(f"--style must be 'proxy' or 'ssh', not {style!r}.")
    if remove:
        change = remove_client_entry(
            name, client=client, server_name=server_name, path=config_path, force=force, dry_run=dry_run
        )
    else:
        inputs = EntryInputs.from_profile(load_profile(name))
        change = configure_client(
            inputs,
            client=client,
            style=style,  # type: ignore[arg-type]
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


def _config_command(client: Literal["claude", "gemini"]) -> Callable[..., None]:
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


# ------------------------------------------------------------------------------------ provision, sync


def _parse_columns(items: list[str]) -> dict[str, str]:
    columns: dict[str, str] = {}
    for item in items:
        field, sep, source = item.partition("=")
        if not sep or not field.strip() or not source.strip():
            raise McpctlError(f"--column {item!r} is not FIELD=SOURCE; write e.g. --column operation=CITY.")
        columns[field.strip()] = source.strip()
    return columns


def _confirm_key(yes: bool) -> Callable[[str, int, str], bool] | None:
    """Ask before pinning a host key nobody vouched for (only on a terminal; --yes accepts)."""

    def ask(host: str, port: int, fingerprint: str) -> bool:
        err.print(f"host key of {host}:{port} is [bold]{fingerprint}[/bold]")
        if yes:
            return True
        return typer.confirm("Is this the host's key? (check with its owner)", default=False, err=True)

    return ask if (yes or sys.stdin.isatty()) else None


ProvisionKind = Literal["host", "sandbox", "ec2"]
_KIND_FLAGS: dict[str, ProvisionKind] = {"--host": "host", "--sandbox": "sandbox", "--ec2": "ec2"}


@dataclass(frozen=True)
class _ProvisionMode:
    """What kind of host ``provision NAME`` works on, and how messages name that choice.

    Attributes:
        kind: ``host``, ``sandbox`` or ``ec2``: the flag given, else the saved profile's kind.
        label: The flag given (``--sandbox``), or the saved profile (``the sandbox profile 'demo'``).
        name: The profile name.
        remote_dir: The saved profile's remote directory, when there is a saved profile.
    """

    kind: ProvisionKind
    label: str
    name: str
    remote_dir: str | None = None


def _provision_mode(name: str, *, host: str | None, sandbox: bool, ec2: bool) -> _ProvisionMode:
    """Tell which kind of host ``provision`` works on: the one flag given, else the saved profile's kind.

    Raises:
        McpctlError: Several of --host, --sandbox and --ec2 are given.
    """
    from provision.profiles import list_profiles, load_profile

    flags = {"--host": host is not None, "--sandbox": sandbox, "--ec2": ec2}
    chosen = [flag for flag, on in flags.items() if on]
    if len(chosen) > 1:
        raise McpctlError(f"choose one of {', '.join(chosen)}, not several.")
    saved = None
    if name in list_profiles():
        with contextlib.suppress(McpctlError):  # a broken profile is reported by the provisioner
            saved = load_profile(name)
    remote_dir = saved.remote_dir if saved is not None else None
    if chosen:
        return _ProvisionMode(_KIND_FLAGS[chosen[0]], chosen[0], name, remote_dir)
    if saved is None:  # a new profile: the host path says that it needs --host or --sandbox
        return _ProvisionMode("host", "a profile without --ec2", name)
    return _ProvisionMode(saved.kind, f"the {saved.kind} profile '{name}'", name, remote_dir)


def _why_host_option_does_not_apply(mode: _ProvisionMode, flag: str) -> str | None:
    """Why a login or install option means nothing for ``mode`` (a clause), or None when it applies."""
    if mode.kind == "sandbox":
        return {
            "--host-key": "the sandbox's host key is read from its own files",
            "--identity-file": "the sandbox logs in with its own client key",
            "--remote-dir": f"the sandbox always uses {_sandbox_remote_dir(mode)}",
            "--yes": "the sandbox's host key is read from its own files, so there is nothing to confirm",
        }[flag]
    if mode.kind == "ec2":
        return {
            "--host-key": "mcpctl makes the instance's host key and pins it itself",
            "--identity-file": "mcpctl makes the instance's login key",
            "--yes": "mcpctl makes the instance's host key, so there is nothing to confirm",
        }.get(flag)
    return None


def _sandbox_remote_dir(mode: _ProvisionMode) -> str:
    from provision.ssh import sandbox

    return mode.remote_dir or str(sandbox.sandbox_dir() / "hosts" / mode.name)


def _refuse_options_that_do_not_apply(
    mode: _ProvisionMode, host_options: list[str], ec2_options: list[str]
) -> None:
    """Refuse, before anything is written or started, options that ``mode`` would silently ignore.

    Args:
        mode: The kind of host provisioned.
        host_options: The login and install options given (``--host-key``, ``--identity-file``,
            ``--remote-dir``, ``--yes``).
        ec2_options: The EC2-only options given (``--region``... ``--dry-run``).

    Raises:
        McpctlError: One sentence naming every such option, why it does not apply, and what to do.
    """
    refused = [(flag, why) for flag in host_options if (why := _why_host_option_does_not_apply(mode, flag))]
    if mode.kind != "ec2":
        launches, previews = "only --ec2 launches an instance", "only --ec2 has a launch plan to preview"
        refused += [(flag, previews if flag == "--dry-run" else launches) for flag in ec2_options]
    if not refused:
        return
    names = [flag for flag, _ in refused]
    reasons = list(dict.fromkeys(why for _, why in refused))  # the EC2 options share one reason
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    verb = "does" if len(names) == 1 else "do"
    drop = "the option" if len(names) == 1 else "these options"
    raise McpctlError(f"{listed} {verb} not apply to {mode.label}: {', and '.join(reasons)}; drop {drop}.")


@app.command()
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
        list[str] | None, typer.Option(help="Column mapping FIELD=SOURCE, e.g. operation=CITY (repeatable).")
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
    as_json: JsonOpt = False,
) -> None:
    """Create or update profile NAME and install the server on its host (idempotent)."""
    import anyio

    from provision.cli import ec2 as cli_ec2
    from provision.host import provisioner

    ec2_options = cli_ec2.Ec2Options(
        region, instance_type, ssh_cidr, volume_gb, autostop_minutes, allow_world, dry_run
    )
    mode = _provision_mode(name, host=host, sandbox=sandbox, ec2=ec2)
    host_options = {
        "--host-key": host_key is not None,
        "--identity-file": identity_file is not None,
        "--remote-dir": remote_dir is not None,
        "--yes": yes,
    }
    _refuse_options_that_do_not_apply(
        mode, [flag for flag, on in host_options.items() if on], ec2_options.given()
    )
    sandbox, ec2 = mode.kind == "sandbox", mode.kind == "ec2"
    if ec2 and dry_run:
        cli_ec2.print_plan(name, ec2_options, as_json=as_json)
        return
    columns = _parse_columns(column or [])
    err.print(f"provisioning [bold]{name}[/bold]")
    on_phase = phase_printer()
    if sandbox:
        result = anyio.run(
            lambda: provisioner.provision_sandbox(
                name, data=data or [], columns=columns, force=force, on_phase=on_phase
            )
        )
    elif ec2:
        result = cli_ec2.run_provision(
            name,
            ec2_options,
            remote_dir=remote_dir,
            data=data or [],
            columns=columns,
            force=force,
            on_phase=on_phase,
        )
    else:
        result = anyio.run(
            lambda: provisioner.provision_host(
                name,
                host_spec=host,
                host_key=host_key,
                identity_file=identity_file,
                remote_dir=remote_dir,
                data=data or [],
                columns=columns,
                confirm=_confirm_key(yes),
                force=force,
                on_phase=on_phase,
            )
        )
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
    err.print(
        f"next: `mcpctl config claude {name}` then restart Claude Desktop; `mcpctl doctor {name}` checks it."
    )


@app.command()
@handle_errors
def sync(
    name: NameArg,
    dry_run: Annotated[bool, typer.Option(help="Print the plan without changing anything.")] = False,
    delete: Annotated[bool, typer.Option(help="Delete remote files that no longer exist locally.")] = False,
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links",
            help="Also send file symlinks that lead out of the project (skipped and listed by default).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Push code and data to the host: incremental, each file replaced atomically."""
    import anyio
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from provision.host import provisioner
    from provision.sync import SourceChangedError

    with Progress(
        TextColumn("[bold]sync[/bold]"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("sync", total=None, files="")

        def progress(step: Any) -> None:
            bar.update(
                task,
                completed=step.bytes_done,
                total=step.bytes_total,
                files=f"{step.files_done}/{step.files_total} files",
            )

        try:
            report = anyio.run(
                lambda: provisioner.sync_profile(
                    name, delete=delete, dry_run=dry_run, progress=progress, follow_links=follow_links
                )
            )
        except SourceChangedError as exc:
            if exc.report is not None:  # what the rest of the sync did, before the error line
                bar.stop()
                _print_sync_report(exc.report, as_json=as_json)
            raise
    _print_sync_report(report, as_json=as_json)


def _print_sync_report(report: Any, *, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "dry_run": report.dry_run,
                "up_to_date": report.up_to_date,
                "files_sent": report.files_sent,
                "bytes_sent": report.bytes_sent,
                "deleted": report.deleted,
                "seconds": report.seconds,
                "skipped": [{"path": s.path, "reason": s.reason} for s in report.skipped],
                "changed_while_sending": [str(u.local_path) for u in report.unsettled],
            }
        )
        return
    err.print(report.describe(), markup=False)


@app.command()
def version() -> None:
    """Print the mcpctl version."""
    from provision import __version__

    typer.echo(__version__)


@app.command()
def connect(name: NameArg) -> None:
    """Proxy stdio to the server on the host, reconnecting on drops (what Claude Desktop runs).

    stdout carries only JSON-RPC; everything else goes to the profile's log file (`mcpctl logs NAME`).
    """
    from provision.connect.main import connect_main

    raise typer.Exit(connect_main(name))


@app.command()
@handle_errors
def doctor(
    name: NameArg,
    client: Annotated[str, typer.Option(help="Which client's entry to check: claude or gemini.")] = "claude",
    config_path: Annotated[Path | None, typer.Option(help="Check this config file instead.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run what the client will run, time every phase against the 60 s budget, name what is wrong."""
    from provision.doctor import Check, run_doctor

    if client not in ("claude", "gemini"):
        raise McpctlError(f"--client must be 'claude' or 'gemini', not {client!r}.")

    def on_check(check: Check) -> None:
        if as_json:
            return
        mark = "[dim]-[/dim]" if check.skipped else ("[green]✓[/green]" if check.ok else "[red]✗[/red]")
        err.print(f"  {mark} {check.phase:<13} {check.seconds:6.2f} s  {check.detail}", soft_wrap=True)
        if check.fix and not check.skipped:
            err.print(f"      [yellow]fix:[/yellow] {check.fix}", soft_wrap=True)

    report = run_doctor(name, client=client, config_path=config_path, on_check=on_check)  # type: ignore[arg-type]
    if as_json:
        emit_json(
            {
                "name": report.name,
                "ok": report.ok,
                "total_s": report.total_s,
                "budget_s": report.budget_s,
                "checks": [vars(c) for c in report.checks],
            }
        )
    else:
        verdict = "[green]healthy[/green]" if report.ok else "[red]needs attention[/red]"
        err.print(
            f"{name}: {verdict}; first answer after {report.total_s:.1f} s "
            f"of a {report.budget_s:.0f} s budget"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@handle_errors
def logs(
    name: NameArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines from the end.")] = 50,
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


from provision.cli import ec2 as cli_ec2  # noqa: E402

cli_ec2.register(app)
