"""The EC2 commands of mcpctl (``status``, ``stop``, ``start``, ``destroy``) and ``provision --ec2`` glue.

:func:`register` adds the commands to the main app; ``provision.cli.app`` calls it on import. Like every
command, each one parses, calls one library function (:mod:`provision.ec2.lifecycle`,
:mod:`provision.ec2.provisioning`) and renders the result: human output on stderr, ``--json`` on stdout.
Nothing heavy is imported here at import time (boto3 and asyncssh load inside the commands).
"""

# No `from __future__ import annotations` here: typer reads the parameter annotations at run time,
# and the commands are defined inside register(), where the annotation aliases are local names.

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from provision.ec2.lifecycle import Ec2Status
    from provision.ec2.model import Ec2Plan
    from provision.ec2.provisioning import SpecOptions
    from provision.host.provisioner import ProvisionResult


@dataclass(frozen=True)
class Ec2Options:
    """The ``provision`` options that only apply with ``--ec2`` (None: the profile's, then the default)."""

    region: str | None = None
    instance_type: str | None = None
    ssh_cidr: str | None = None
    volume_gb: int | None = None
    autostop_minutes: int | None = None
    allow_world: bool = False
    dry_run: bool = False

    def given(self) -> list[str]:
        """The flags that were given, as typed on the command line."""
        values = {
            "--region": self.region,
            "--instance-type": self.instance_type,
            "--ssh-cidr": self.ssh_cidr,
            "--volume-gb": self.volume_gb,
            "--autostop-minutes": self.autostop_minutes,
            "--allow-world": self.allow_world or None,
            "--dry-run": self.dry_run or None,
        }
        return [flag for flag, value in values.items() if value is not None]

    def spec_options(self) -> "SpecOptions":
        """The options that choose what to launch, as :func:`provision.ec2.provisioning.plan_ec2` takes."""
        return {
            "region": self.region,
            "instance_type": self.instance_type,
            "ssh_cidr": self.ssh_cidr,
            "volume_gb": self.volume_gb,
            "autostop_minutes": self.autostop_minutes,
            "allow_world": self.allow_world,
        }


def print_plan(name: str, options: Ec2Options, *, as_json: bool) -> None:
    """``provision NAME --ec2 --dry-run``: show what would be created or reused, and the cost.

    Raises:
        CloudError, ProfileError: As :func:`provision.ec2.provisioning.plan_ec2` reports them.
    """
    from provision.cli.app import emit_json, err
    from provision.ec2.provisioning import plan_ec2

    plan = plan_ec2(name, **options.spec_options())
    if as_json:
        emit_json(_plan_data(plan))
        return
    spec = plan.spec
    err.print(f"plan for [bold]{name}[/bold] in {spec.region} (nothing changed):")
    for step in plan.steps:
        err.print(f"  {step.action:<10} {step.resource:<15} {step.detail}", markup=False)
    if plan.hourly_usd is not None:
        err.print(
            f"cost: ~{plan.hourly_usd:.4f} USD/hour for {spec.instance_type} while running, "
            f"~{plan.monthly_usd:.2f} USD/month 24/7"
        )
    err.print(plan.cost_note, markup=False)
    autostop = spec.autostop_minutes
    err.print(f"autostop: {f'after {autostop} idle minutes' if autostop else 'off'}")
    err.print(f"run it: `mcpctl provision {name} --ec2` with the same options, without --dry-run.")


def _plan_data(plan: "Ec2Plan") -> dict[str, object]:
    spec = plan.spec
    return {
        "dry_run": True,
        "profile": spec.profile,
        "region": spec.region,
        "instance_type": spec.instance_type,
        "arch": plan.arch,
        "ami_id": plan.ami_id,
        "ssh_cidr": plan.ssh_cidr,
        "volume_gb": spec.volume_gb,
        "autostop_minutes": spec.autostop_minutes,
        "steps": [{"resource": s.resource, "action": s.action, "detail": s.detail} for s in plan.steps],
        "hourly_usd": plan.hourly_usd,
        "monthly_usd": plan.monthly_usd,
        "cost_note": plan.cost_note,
    }


def run_provision(
    name: str,
    options: Ec2Options,
    *,
    remote_dir: str | None,
    data: Sequence[Path],
    columns: Mapping[str, str],
    force: bool,
    on_phase: Callable[[str, str], None],
) -> "ProvisionResult":
    """``provision NAME --ec2``: run :func:`provision.ec2.provisioning.provision_ec2` and say where it runs.

    Raises:
        McpctlError: As :func:`provision.ec2.provisioning.provision_ec2` reports it.
    """
    import anyio

    from provision.cli.app import err
    from provision.ec2.provisioning import provision_ec2

    result = anyio.run(
        lambda: provision_ec2(
            name,
            remote_dir=remote_dir,
            data=data,
            columns=columns,
            force=force,
            on_phase=on_phase,
            **options.spec_options(),
        )
    )
    settings = result.profile.ec2
    if settings is not None:
        autostop = settings.autostop_minutes
        idle = f"stops itself after {autostop} idle minutes" if autostop else "autostop is off"
        err.print(
            f"{settings.instance_id} ({settings.instance_type}, {settings.region}) at {result.profile.host}; "
            f"{idle}; `mcpctl stop {name}` ends compute billing, `mcpctl start {name}` resumes."
        )
    return result


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _print_status(status: "Ec2Status") -> None:
    from provision.cli.app import err

    if status.state == "absent":
        err.print(
            f"{status.profile}: no instance in {status.region} is tagged for it; "
            f"`mcpctl provision {status.profile} --ec2` launches one."
        )
        return
    err.print(f"[bold]{status.profile}[/bold]  {status.state}  {status.instance_id}  {status.region}")
    err.print(f"  type      {status.instance_type}")
    err.print(
        f"  address   {status.public_ip or '- (none while stopped)'} (profile connects to {status.host})"
    )
    err.print(f"  uptime    {_uptime(status.uptime_s)}")
    price = f"~{status.hourly_usd:.4f} USD/hour while running" if status.hourly_usd is not None else "unknown"
    err.print(f"  cost      {price} (approximate on-demand price; the volume is billed even when stopped)")
    autostop = status.autostop_minutes
    err.print(f"  autostop  {f'after {autostop} idle minutes' if autostop else 'off'}")
    if status.state == "stopped":
        err.print(f"`mcpctl start {status.profile}` starts it (so does `mcpctl connect`).")


def register(app: typer.Typer) -> None:
    """Add ``status``, ``stop``, ``start`` and ``destroy`` to ``app``."""
    # Imported here, not at module level: provision.cli.app imports this module at its end.
    from provision.cli.app import JsonOpt, NameArg, emit_json, err, handle_errors, phase_printer

    @app.command("status")
    @handle_errors
    def status(name: NameArg, as_json: JsonOpt = False) -> None:
        """Show profile NAME's EC2 instance: state, address, type, uptime, hourly cost."""
        from provision.ec2.lifecycle import status_profile

        result = status_profile(name)
        if as_json:
            emit_json(result.as_dict())
            return
        _print_status(result)

    @app.command("stop")
    @handle_errors
    def stop(name: NameArg, as_json: JsonOpt = False) -> None:
        """Stop profile NAME's EC2 instance: compute billing ends, the disk is kept."""
        from provision.ec2.lifecycle import stop_profile

        result = stop_profile(name, on_phase=phase_printer())
        if as_json:
            emit_json(result.as_dict())
            return
        err.print(
            f"{name} stopped ({result.instance_id}): compute billing ended, the volume is kept; "
            f"`mcpctl start {name}` brings it back."
        )

    @app.command("start")
    @handle_errors
    def start(name: NameArg, as_json: JsonOpt = False) -> None:
        """Start profile NAME's EC2 instance, wait for SSH, and record its new address."""
        from provision.ec2.lifecycle import start_profile

        result = start_profile(name, on_phase=phase_printer())
        if as_json:
            emit_json(result.as_dict())
            return
        err.print(
            f"{name} running at {result.host} ({result.instance_id}); the pinned host key still applies."
        )

    @app.command("destroy")
    @handle_errors
    def destroy(
        name: NameArg,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Terminate profile NAME's EC2 instance, delete what mcpctl made for it in AWS and locally."""
        from provision.ec2.lifecycle import destroy_profile, ec2_profile

        profile, region = ec2_profile(name, "destroy")  # refuses other kinds before asking anything
        instance = profile.ec2.instance_id if profile.ec2 is not None else None
        question = (
            f"Destroy '{name}': terminate {instance or 'its instance'} in {region} (its disk and data "
            "are deleted), delete its security group and key pair, and remove the local key, "
            "known_hosts and profile?"
        )
        if not yes and not typer.confirm(question, default=False, err=True):
            err.print("nothing destroyed")
            raise typer.Exit(1)
        result = destroy_profile(name, on_phase=phase_printer())
        if as_json:
            emit_json(
                {
                    "instances": list(result.aws.instances),
                    "security_groups": list(result.aws.security_groups),
                    "key_pairs": list(result.aws.key_pairs),
                    "local_files": [str(p) for p in result.local],
                }
            )
            return
        aws = [*result.aws.instances, *result.aws.security_groups, *result.aws.key_pairs]
        err.print(f"AWS: removed {', '.join(aws)}" if aws else "AWS: nothing was left to remove")
        for path in result.local:
            err.print(f"removed {path}", markup=False)
        err.print(f"[bold]{name}[/bold] destroyed; nothing tagged for it is left in {region}.")
