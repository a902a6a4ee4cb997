"""``mcpctl sync NAME``: push the code and data to the profile's host, with a progress bar."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from provision.cli.common import JsonOpt, NameArg, emit_json, err, handle_errors


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
                "plans": [
                    {
                        "remote_root": plan.remote_root,
                        "send": [{"path": u.path, "reason": u.reason, "size": u.size} for u in plan.uploads],
                        "delete": list(plan.deletes),
                    }
                    for plan in report.plans
                ],
                "changed_while_sending": [str(u.local_path) for u in report.unsettled],
            }
        )
        return
    err.print(report.describe(), markup=False)
