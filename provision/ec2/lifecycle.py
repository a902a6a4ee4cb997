"""Power and teardown of ``ec2`` profiles: status, stop, start, destroy, and :func:`ensure_running`.

The instance is always looked up by its ``mcpctl:profile`` tag in the profile's region; the profile
records where to log in. Its public IP changes on every start, so starting updates the profile's
``host``; the host key stays valid because it is pinned under ``host_key_alias`` (by instance id),
never under the address.

Every function refuses profiles of other kinds with a message saying what applies to them instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from provision.ec2 import power
from provision.ec2.model import DestroyReport, Ec2Instance, PhaseCallback, public_endpoint, silent
from provision.ec2.pricing import hourly_cost_usd
from provision.ec2.provisioning import DEFAULT_RUNTIME, Ec2Runtime
from provision.errors import CloudError, ProfileError
from provision.profiles import (
    Profile,
    keys_dir,
    known_hosts_path,
    load_profile,
    profiles_dir,
    remove_profile,
    save_profile,
)

# What to use instead, per profile kind, when an EC2-only command is given another kind of profile.
_INSTEAD = {
    "status": {
        "host": "`mcpctl profile show {name}` shows its settings",
        "sandbox": "`mcpctl sandbox status` shows the sandbox",
    },
    "stop": {"host": "stop the machine with its own tools", "sandbox": "`mcpctl sandbox down` stops it"},
    "start": {"host": "start the machine with its own tools", "sandbox": "`mcpctl sandbox up` starts it"},
    "destroy": {
        "host": "`mcpctl profile remove {name}` forgets it without touching the host",
        "sandbox": "`mcpctl profile remove {name}` forgets it",
    },
}


@dataclass(frozen=True)
class Ec2Status:
    """An ec2 profile's instance as AWS sees it now.

    Attributes:
        state: AWS's state name (``running``, ``stopped``, ...), or ``absent`` when no instance is
            tagged for the profile.
        host: the address the profile logs in to (after a start: the new public IP).
        uptime_s: seconds since the instance last started, while it runs.
        hourly_usd: approximate on-demand price (None for types not in the built-in table).
        autostop_minutes: the idle watchdog's limit the profile records (0: off).
    """

    profile: str
    region: str
    instance_id: str | None
    state: str
    instance_type: str | None
    public_ip: str | None
    host: str | None
    uptime_s: float | None
    hourly_usd: float | None
    autostop_minutes: int | None

    def as_dict(self) -> dict[str, object]:
        """The status as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class Ec2Teardown:
    """What :func:`destroy_profile` removed: in AWS, and locally (client key, known_hosts, profile)."""

    aws: DestroyReport
    local: tuple[Path, ...]


def ec2_profile(name: str, command: str) -> tuple[Profile, str]:
    """Load profile ``name`` for ``mcpctl COMMAND`` and return it with its region.

    Raises:
        ProfileError: no such profile, it is not an ec2 one (the message says what applies to it), or
            it records no region.
    """
    profile = load_profile(name)
    if profile.kind != "ec2":
        instead = _INSTEAD.get(command, {}).get(profile.kind, "").format(name=name)
        raise ProfileError(
            f"`mcpctl {command}` applies only to EC2 profiles, and '{name}' is a {profile.kind} profile",
            hint=instead or None,
        )
    return profile, _region(profile)


def _region(profile: Profile) -> str:
    region = profile.ec2.region if profile.ec2 is not None else None
    if not region:
        raise ProfileError(
            f"profile '{profile.name}' records no EC2 region",
            hint=f"re-run `mcpctl provision {profile.name} --ec2 --region REGION`",
        )
    return region


def status_profile(name: str, *, runtime: Ec2Runtime = DEFAULT_RUNTIME) -> Ec2Status:
    """The instance behind ec2 profile ``name``: state, address, type, uptime, hourly cost.

    Raises:
        ProfileError: see :func:`ec2_profile`.
        CloudError: AWS failed, or several instances carry the profile's tag.
    """

    profile, region = ec2_profile(name, "status")
    inst = power.find_instance(name, region, clients=runtime.clients_for(region))
    return _status(profile, region, inst)


def stop_profile(
    name: str, *, on_phase: PhaseCallback | None = None, runtime: Ec2Runtime = DEFAULT_RUNTIME
) -> Ec2Status:
    """Stop ec2 profile ``name``'s instance and wait until it is stopped (the volume is kept).

    Raises:
        ProfileError: see :func:`ec2_profile`.
        CloudError: no instance is tagged for the profile, or AWS failed.
    """

    profile, region = ec2_profile(name, "stop")
    inst = power.stop(
        name, region, clients=runtime.clients_for(region), on_phase=on_phase, pacing=runtime.pacing
    )
    return _status(profile, region, inst)


def start_profile(
    name: str, *, on_phase: PhaseCallback | None = None, runtime: Ec2Runtime = DEFAULT_RUNTIME
) -> Ec2Status:
    """Start ec2 profile ``name``'s instance, wait for SSH, and save its new address in the profile.

    Raises:
        ProfileError: see :func:`ec2_profile`; or AWS tags another instance than the profile's.
        CloudError: no instance is tagged for the profile, or AWS failed.
        ConnectError: SSH did not answer in time after the start.
    """
    profile, region = ec2_profile(name, "start")
    profile, inst = _ensure_running(profile, region, on_phase or silent, runtime)
    return _status(profile, region, inst)


def ensure_running(
    profile: Profile, *, on_phase: PhaseCallback | None = None, runtime: Ec2Runtime = DEFAULT_RUNTIME
) -> Profile:
    """Make sure an ec2 profile's instance runs and answers SSH; return the profile to connect with.

    A stopped (or stopping) instance is started, SSH is awaited, and the new public IP is saved as
    the profile's host. Profiles of other kinds are returned unchanged without any AWS call. Each call
    on an ec2 profile asks AWS once (an address alone cannot tell whether it still belongs to us).

    Raises:
        ProfileError: the profile records no region, or AWS tags another instance than the profile's.
        CloudError: no instance is tagged for the profile, or AWS failed.
        ConnectError: SSH did not answer in time after the start.
    """
    if profile.kind != "ec2":
        return profile
    updated, _ = _ensure_running(profile, _region(profile), on_phase or silent, runtime)
    return updated


def destroy_profile(
    name: str, *, on_phase: PhaseCallback | None = None, runtime: Ec2Runtime = DEFAULT_RUNTIME
) -> Ec2Teardown:
    """Remove everything of ec2 profile ``name``, asking nothing (the CLI confirms first).

    In AWS: the tagged instance, security group and key pair (verified gone, see
    :func:`provision.ec2.destroy`). Locally, after that succeeded: the client key mcpctl generated,
    the profile's known_hosts and the profile itself.

    Raises:
        ProfileError: see :func:`ec2_profile`; or a local file cannot be removed.
        CloudError: AWS failed, or something tagged for the profile is left (local files are then kept).
        McpctlError: the client key file cannot be removed.
    """
    from provision.ec2.keys import remove_client_key

    _, region = ec2_profile(name, "destroy")
    report = power.destroy(
        name, region, clients=runtime.clients_for(region), on_phase=on_phase, pacing=runtime.pacing
    )
    removed = remove_client_key(keys_dir(), name)
    files = [known_hosts_path(name), profiles_dir() / f"{name}.toml"]
    removed += [path for path in files if path.exists()]
    remove_profile(name, missing_ok=True)
    return Ec2Teardown(report, tuple(removed))


def _ensure_running(
    profile: Profile, region: str, report: PhaseCallback, runtime: Ec2Runtime
) -> tuple[Profile, Ec2Instance]:
    from provision.ec2.wait import wait_ssh

    clients = runtime.clients_for(region)
    inst = power.find_instance(profile.name, region, clients=clients)
    if inst is None:
        raise CloudError(
            f"no EC2 instance in {region} is tagged for profile '{profile.name}' (destroyed?)",
            hint=f"launch one with `mcpctl provision {profile.name} --ec2`",
        )
    recorded = profile.ec2.instance_id if profile.ec2 is not None else None
    if recorded and inst.instance_id != recorded:
        raise ProfileError(
            f"profile '{profile.name}' records instance {recorded}, but AWS tags {inst.instance_id} for it",
            hint=f"run `mcpctl provision {profile.name} --ec2` to adopt it "
            "(its host key is re-read from AWS)",
        )
    resolve = runtime.endpoint or public_endpoint
    if inst.state == "running":
        where = resolve(inst)
        if (where.host, where.port) == (profile.host, profile.port):
            return profile, inst  # the common case for `connect`: one describe call, nothing else
    else:
        inst = power.start(profile.name, region, clients=clients, on_phase=report, pacing=runtime.pacing)
        where = resolve(inst)
    wait_ssh(where.host, where.port, pacing=runtime.pacing, on_phase=report)
    if (where.host, where.port) == (profile.host, profile.port):
        return profile, inst
    updated = profile.model_copy(deep=True)
    updated.host, updated.port = where.host, where.port  # validated: the model validates assignment
    save_profile(updated)
    report(
        "profile",
        f"{profile.name} is now at {where.host} (host key still pinned as {profile.host_key_alias})",
    )
    return updated, inst


def _status(profile: Profile, region: str, inst: Ec2Instance | None) -> Ec2Status:
    autostop = profile.ec2.autostop_minutes if profile.ec2 is not None else None
    if inst is None:
        return Ec2Status(profile.name, region, None, "absent", None, None, profile.host, None, None, autostop)
    uptime = None
    if inst.state == "running" and inst.launch_time is not None:
        uptime = max(0.0, (datetime.now(timezone.utc) - inst.launch_time).total_seconds())
    return Ec2Status(
        profile=profile.name,
        region=region,
        instance_id=inst.instance_id,
        state=inst.state,
        instance_type=inst.instance_type,
        public_ip=inst.public_ip,
        host=profile.host,
        uptime_s=uptime,
        hourly_usd=hourly_cost_usd(inst.instance_type),
        autostop_minutes=autostop,
    )
