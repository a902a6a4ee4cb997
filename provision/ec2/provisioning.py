"""``mcpctl provision NAME --ec2``: launch, save the profile, pin the key we generated, bootstrap.

The flow, each step idempotent so a re-run converges and says "up to date":

1. :func:`provision.ec2.launching.launch` finds (starting it if stopped) or launches the tagged instance and
   waits for an SSH banner;
2. the ``ec2`` profile is saved at once (host = public IP, identity = the generated client key,
   ``host_key_alias`` = ``mcpctl-NAME-<instance-id>``), so an interrupted run leaves a profile that
   ``destroy`` can clean up;
3. the host key **we generated** (or, for an instance found again, the one its user-data records) is
   pinned under the alias: the first connection is verified, never trusted on first use;
4. ``cloud-init status --wait`` over SSH, so the packages the bootstrap needs are there;
5. the same bootstrap as ``--host`` (:func:`provision.host.provisioner.bootstrap_profile`).

Power and teardown of ec2 profiles (``status``, ``stop``, ``start``, ``destroy``, and the
:func:`ensure_running` that ``mcpctl connect`` calls) are in :mod:`provision.ec2.lifecycle`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, TypeVar

from provision.ec2 import launching
from provision.ec2.model import (
    DEFAULT_PACING,
    Ec2Clients,
    Ec2Launch,
    Ec2Plan,
    Ec2Spec,
    EndpointResolver,
    HostKeyFactory,
    Pacing,
    PhaseCallback,
    make_clients,
    silent,
)
from provision.errors import (
    CloudError,
    ConnectError,
    HostKeyError,
    ProfileError,
    ProfileNotFound,
    RemoteError,
)
from provision.profiles import Ec2Settings, Profile, keys_dir, known_hosts_path, load_profile, save_profile

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from provision.host.provisioner import ProvisionResult
    from provision.ssh.target import RunResult

#: Absolute path (nothing depends on the remote PATH): blocks until cloud-init has finished.
CLOUD_INIT_WAIT = ("/usr/bin/cloud-init", "status", "--wait")
#: First boot runs apt update + install; a slow mirror can take many minutes.
CLOUD_INIT_TIMEOUT_S = 1200.0
#: How long the first login may be refused while the fresh host is still booting.
LOGIN_RETRY_S = 180.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class Ec2Runtime:
    """How ec2 profiles reach AWS and the instance. The defaults are the real thing; tests swap parts.

    Attributes:
        clients: region -> boto3 clients (default :func:`provision.ec2.model.make_clients`).
        pacing: deadlines and polling for AWS waits, SSH banners and the first login.
        endpoint: running instance -> where its sshd is (default: public IP, port 22, ``ubuntu``).
        host_key_factory: makes the host key a new instance installs (default: a fresh ed25519 key).
    """

    clients: Callable[[str], Ec2Clients] | None = None
    pacing: Pacing = DEFAULT_PACING
    endpoint: EndpointResolver | None = None
    host_key_factory: HostKeyFactory | None = None

    def clients_for(self, region: str) -> Ec2Clients:
        """The clients of ``region``.

        Raises:
            CloudError: boto3 cannot build them (e.g. AWS_PROFILE names a profile that does not exist).
        """
        from provision.ec2.aws_errors import translated

        with translated(region):
            return self.clients(region) if self.clients is not None else make_clients(region)


DEFAULT_RUNTIME = Ec2Runtime()


# --------------------------------------------------------------------------------------------------
# what to launch


class SpecOptions(TypedDict, total=False):
    """The launch options of ``provision --ec2``, passed as keywords through :func:`plan_ec2` and
    :func:`provision_ec2` to :func:`resolve_spec`. One left out or None comes from the saved profile,
    then from the defaults; ``allow_world`` is False when left out."""

    region: str | None
    instance_type: str | None
    ssh_cidr: str | None
    volume_gb: int | None
    autostop_minutes: int | None
    allow_world: bool


def existing_ec2_profile(name: str) -> Profile | None:
    """The saved profile ``name`` if it is an ec2 one, None if there is none.

    Raises:
        ProfileError: the profile is malformed, or exists with another kind.
    """
    try:
        profile = load_profile(name)
    except ProfileNotFound:
        return None
    if profile.kind != "ec2":
        raise ProfileError(
            f"profile '{name}' is a {profile.kind} profile, not an EC2 one",
            hint=f"choose another name or remove it with `mcpctl profile remove {name}`",
        )
    return profile


def default_region() -> str | None:
    """The region boto3 would use (AWS_REGION, AWS_DEFAULT_REGION, the AWS config), or None.

    Raises:
        CloudError: the AWS configuration cannot be read (e.g. AWS_PROFILE names no profile).
    """
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.Session().region_name
    except BotoCoreError as exc:
        raise CloudError(
            f"cannot read your AWS configuration: {exc}",
            hint="fix AWS_PROFILE or ~/.aws/config, or pass --region",
        ) from exc


def resolve_spec(name: str, existing: Profile | None, **options: Unpack[SpecOptions]) -> Ec2Spec:
    """What to launch: the options given, else the profile's saved settings, else the defaults.

    ``ssh_cidr`` is not taken from the profile: without it the caller's current address is detected,
    so re-running ``provision`` after an IP change moves the SSH rule.

    Raises:
        CloudError: no region given, saved or configured.
        ProfileError: the region differs from the one the profile's instance lives in, or a value is
            invalid.
    """
    saved = existing.ec2 if existing is not None and existing.ec2 is not None else Ec2Settings()
    chosen = options.get("region") or saved.region or default_region()
    if not chosen:
        raise CloudError(
            "no AWS region chosen", hint="pass --region (e.g. eu-west-1) or set AWS_REGION / AWS_PROFILE"
        )
    if saved.region and saved.instance_id and chosen != saved.region:
        raise ProfileError(
            f"profile '{name}' has its instance {saved.instance_id} in {saved.region}, not {chosen}",
            hint=f"run `mcpctl destroy {name}` first to move it, or use another profile name",
        )
    base = Ec2Spec(
        profile=name,
        region=chosen,
        ssh_cidr=options.get("ssh_cidr"),
        allow_world=options.get("allow_world", False),
    )
    return replace(
        base,
        instance_type=_first(options.get("instance_type"), saved.instance_type, base.instance_type),
        volume_gb=_first(options.get("volume_gb"), saved.volume_gb, base.volume_gb),
        autostop_minutes=_first(
            options.get("autostop_minutes"), saved.autostop_minutes, base.autostop_minutes
        ),
    )


def _first(given: _T | None, saved: _T | None, default: _T) -> _T:
    """The option if given, else the saved setting, else the default (0 and "" count as given)."""
    return given if given is not None else saved if saved is not None else default


def plan_ec2(name: str, *, runtime: Ec2Runtime = DEFAULT_RUNTIME, **options: Unpack[SpecOptions]) -> Ec2Plan:
    """``provision --ec2 --dry-run``: what would be created or reused, and the hourly cost; read-only.

    Raises:
        CloudError, ProfileError: As :func:`resolve_spec` and :func:`provision.ec2.plan` report them.
    """

    spec = resolve_spec(name, existing_ec2_profile(name), **options)
    return launching.plan(spec, keys_dir(), clients=runtime.clients_for(spec.region))


# --------------------------------------------------------------------------------------------------
# provision


async def provision_ec2(
    name: str,
    *,
    remote_dir: str | None = None,
    data: Sequence[Path] = (),
    columns: Mapping[str, str] | None = None,
    force: bool = False,
    on_phase: PhaseCallback | None = None,
    runtime: Ec2Runtime = DEFAULT_RUNTIME,
    **options: Unpack[SpecOptions],
) -> ProvisionResult:
    """Launch (or find again) profile ``name``'s instance, pin its host key, bootstrap the server.

    Options left at None come from the saved profile, then from the defaults (t3.small, 16 GB,
    autostop after 60 idle minutes); the autostop value is what the new instance's user-data renders.

    Raises:
        CloudError: AWS refused or failed (credentials, permissions, quota, capacity, region).
        ProfileError: the name belongs to another kind of profile, or an option is invalid.
        HostKeyError: the host presents another key than the one we installed (never accepted).
        ConnectError, RemoteError: SSH, cloud-init or the bootstrap failed.
    """
    from provision.host.provisioner import ProvisionResult, bootstrap_profile

    report = on_phase or silent
    existing = existing_ec2_profile(name)
    spec = resolve_spec(name, existing, **options)
    # Called synchronously on purpose: Ctrl-C must reach launch() itself, whose cleanup removes a
    # half-made first launch (a worker thread would keep running, and billing, after the interrupt).
    launched = launching.launch(
        spec,
        keys_dir(),
        clients=runtime.clients_for(spec.region),
        on_phase=report,
        pacing=runtime.pacing,
        endpoint=runtime.endpoint,
        host_key_factory=runtime.host_key_factory,
    )
    _explain_kept_settings(launched, spec, options, existing, report)
    profile = _profile_for(name, existing, spec, launched, remote_dir, data, columns or {})
    save_profile(profile)  # before any SSH: the instance is on record even if what follows fails
    pinned = pin_launch_key(profile, launched)
    report("host key", f"pinned {pinned} as {launched.host_key_alias}" if pinned else "pin up to date")
    await wait_cloud_init(profile, pacing=runtime.pacing, on_phase=report)
    result = await bootstrap_profile(profile, force=force, on_phase=on_phase)
    return ProvisionResult(profile, pinned, result)


def _created(launched: Ec2Launch) -> bool:
    return any(c.resource == "instance" and c.action == "created" for c in launched.changes)


def _explain_kept_settings(
    launched: Ec2Launch,
    spec: Ec2Spec,
    options: SpecOptions,
    existing: Profile | None,
    report: PhaseCallback,
) -> None:
    """Say so when an option asked for something an existing instance cannot change in place."""
    if _created(launched):
        return
    inst = launched.instance
    kept_volume = existing.ec2.volume_gb if existing is not None and existing.ec2 is not None else None
    for option, asked, actual in (
        ("--instance-type", options.get("instance_type"), inst.instance_type),
        ("--volume-gb", options.get("volume_gb"), kept_volume),
        ("--autostop-minutes", options.get("autostop_minutes"), launched.autostop_minutes),
    ):
        if asked is not None and actual is not None and asked != actual:
            report(
                "instance",
                f"{inst.instance_id} keeps {option.removeprefix('--')} {actual}: {option} applies to a new "
                f"instance (`mcpctl destroy {spec.profile}`, then provision again)",
            )


def _profile_for(
    name: str,
    existing: Profile | None,
    spec: Ec2Spec,
    launched: Ec2Launch,
    remote_dir: str | None,
    data: Sequence[Path],
    columns: Mapping[str, str],
) -> Profile:
    """The ec2 profile describing ``launched``: where to log in, and what AWS holds for it."""
    from provision.host.provisioner import merged_profile

    saved = existing.ec2 if existing is not None and existing.ec2 is not None else None
    created = _created(launched)
    # For an instance found again, the profile keeps describing that instance, not the options.
    volume = spec.volume_gb if created or saved is None or saved.volume_gb is None else saved.volume_gb
    autostop = launched.autostop_minutes
    if autostop is None:
        autostop = saved.autostop_minutes if saved is not None else None
    settings = Ec2Settings(
        region=spec.region,
        instance_type=launched.instance.instance_type,
        instance_id=launched.instance.instance_id,
        security_group_id=launched.security_group_id,
        key_name=launched.key.name,
        ssh_cidr=launched.ssh_cidr,
        volume_gb=volume,
        autostop_minutes=autostop,
    )
    where = launched.endpoint
    fields: dict[str, object] = {
        "name": name,
        "kind": "ec2",
        "host": where.host,
        "port": where.port,
        "user": where.user,
        "identity_file": launched.key.path,
        "host_key_alias": launched.host_key_alias,
        "remote_dir": remote_dir,
        "ec2": settings.model_dump(),
    }
    return merged_profile(existing, fields, columns, data)


# --------------------------------------------------------------------------------------------------
# host key and cloud-init


def pinned_key(known_hosts: Path, name: str) -> str | None:
    """The ``TYPE BASE64`` key pinned for ``name`` (a host alias) in ``known_hosts``, or None."""
    try:
        lines = known_hosts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProfileError(
            f"cannot read {known_hosts}: {exc.strerror or exc}", hint="check its permissions"
        ) from exc
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith(("#", "@")) and name in fields[0].split(","):
            return f"{fields[1]} {fields[2]}"
    return None


def pin_launch_key(profile: Profile, launched: Ec2Launch) -> str | None:
    """Pin the instance's host key under its alias; return the fingerprint, or None if already pinned.

    Raises:
        HostKeyError: the key cannot be recovered (user-data cleared) and nothing is pinned yet.
        ProfileError: the known_hosts file cannot be read or written.
    """
    from provision.ssh.hostkeys import parse_host_key, pin_host_key

    path = known_hosts_path(profile.name)
    alias = launched.host_key_alias
    current = pinned_key(path, alias)
    if launched.host_key_line is None:
        if current is not None:
            return None  # the user-data was cleared (key rotated); the pinned entry is the record
        raise HostKeyError(
            f"the host key of instance {launched.instance.instance_id} is neither in its user-data nor "
            f"pinned in {path}",
            hint=f"add the line '{alias} ssh-ed25519 AAAA...' (the host's "
            f"/etc/ssh/ssh_host_ed25519_key.pub) there, or `mcpctl destroy {profile.name}` and "
            "provision again",
        )
    key = parse_host_key(launched.host_key_line)
    if current == key.public_key_line:
        return None
    assert profile.host is not None  # set from the launch's endpoint
    pin_host_key(path, profile.host, profile.port, launched.host_key_line, alias=alias)
    return key.fingerprint


async def wait_cloud_init(
    profile: Profile, *, pacing: Pacing = DEFAULT_PACING, on_phase: PhaseCallback | None = None
) -> str:
    """Log in (verified against the pinned key) and wait for ``cloud-init status --wait``.

    A fresh host may refuse the first logins for a moment while it boots; those are retried until
    ``LOGIN_RETRY_S`` (or ``pacing.timeout_s`` if shorter). A host key mismatch is never retried.

    Returns:
        What was found: ``done``, ``done with warnings`` or ``not installed`` (a host without cloud-init).

    Raises:
        HostKeyError: the host's key is not the pinned one.
        ConnectError: the login kept failing.
        RemoteError: cloud-init reported an error, or did not finish in time.
    """
    from provision.ssh.profile_target import target_for
    from provision.ssh.remote import connect

    report = on_phase or silent
    report("cloud-init", "waiting for first-boot setup to finish")
    deadline = pacing.clock() + min(LOGIN_RETRY_S, pacing.timeout_s)
    while True:
        try:
            async with connect(target_for(profile)) as remote:
                result = await remote.run(list(CLOUD_INIT_WAIT), check=False, timeout=CLOUD_INIT_TIMEOUT_S)
            break
        except ConnectError:
            if pacing.clock() >= deadline:
                raise
        await asyncio.sleep(pacing.poll_s)
    outcome = cloud_init_outcome(result)
    report("cloud-init", outcome)
    return outcome


def cloud_init_outcome(result: RunResult) -> str:
    """Interpret ``cloud-init status --wait``: 0 done, 2 done with recoverable errors, 1 failed.

    Raises:
        RemoteError: cloud-init failed (exit 1) or answered something unexpected.
    """
    if result.exit_status == 0:
        return "done"
    if result.exit_status == 2:  # "degraded": finished, with warnings such as deprecated keys
        return "done with warnings (see `cloud-init status --long` on the host)"
    if result.exit_status == 127:
        return "not installed (nothing to wait for)"
    detail = " ".join((result.stdout.strip() or result.stderr.strip() or "no output").split())[-300:]
    raise RemoteError(
        f"cloud-init failed on the host (exit status {result.exit_status}: {detail})",
        hint="read /var/log/cloud-init-output.log there, then re-run provision or destroy the instance",
    )
