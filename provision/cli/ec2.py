"""The EC2 commands of mcpctl (``status``, ``stop``, ``start``, ``destroy``) and ``provision --ec2``'s output.

Like every command, each one parses, calls one library function (:mod:`provision.ec2.lifecycle`,
:mod:`provision.ec2.provisioning`) and renders the result: human output on stderr, ``--json`` on stdout.
Nothing heavy is imported here at import time (boto3 and asyncssh load inside the commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provision.cli.common import (
    JsonOpt,
    NameArg,
    YesOpt,
    confirm_destroy,
    emit_json,
    err,
    handle_errors,
    phase_printer,
)

if TYPE_CHECKING:
    from provision.ec2.lifecycle import Ec2Status
    from provision.ec2.model import Ec2Plan
    from provision.host.request import Ec2Options
    from provision.profiles import Profile


def print_plan(name: str, options: Ec2Options, *, as_json: bool) -> None:
    """``provision NAME --ec2 --dry-run``: show what would be created or reused, and the cost.

    Raises:
        CloudError, ProfileError: As :func:`provision.ec2.provisioning.plan_ec2` reports them.
    """
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


def _plan_data(plan: Ec2Plan) -> dict[str, object]:
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


def print_instance(profile: Profile) -> None:
    """After ``provision NAME --ec2``: say which instance runs the profile and how it stops."""
    settings = profile.ec2
    if settings is None:
        return
    autostop = settings.autostop_minutes
    idle = f"stops itself after {autostop} idle minutes" if autostop else "autostop is off"
    err.print(
        f"{settings.instance_id} ({settings.instance_type}, {settings.region}) at {profile.host}; "
        f"{idle}; `mcpctl stop {profile.name}` ends compute billing, `mcpctl start {profile.name}` resumes."
    )


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _print_status(status: Ec2Status) -> None:

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


@handle_errors
def status(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show profile NAME's EC2 instance: state, address, type, uptime, hourly cost."""
    from provision.ec2.lifecycle import status_profile

    result = status_profile(name)
    if as_json:
        emit_json(result.as_dict())
        return
    _print_status(result)


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


@handle_errors
def start(name: NameArg, as_json: JsonOpt = False) -> None:
    """Start profile NAME's EC2 instance, wait for SSH, and record its new address."""
    from provision.ec2.lifecycle import start_profile

    result = start_profile(name, on_phase=phase_printer())
    if as_json:
        emit_json(result.as_dict())
        return
    err.print(f"{name} running at {result.host} ({result.instance_id}); the pinned host key still applies.")


@handle_errors
def destroy(
    name: NameArg,
    yes: YesOpt = False,
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
    confirm_destroy(question, yes=yes)
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
