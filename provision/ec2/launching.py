"""Plan and tag-idempotent launch of an EC2 host: what exists is found by tag and reused."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provision.ec2.aws_errors import translated
from provision.ec2.cloudinit import generate_host_key, host_public_key_from_user_data, render_user_data
from provision.ec2.instances import (
    arch_for_instance_type,
    describe,
    root_device,
    run_instance,
    start_instance,
    ubuntu_ami,
)
from provision.ec2.keys import (
    RemoteKey,
    client_key_path,
    ensure_client_key,
    ensure_key_pair,
    find_key_pair,
    load_client_key,
    same_key,
)
from provision.ec2.model import (
    DEFAULT_PACING,
    Change,
    ClientKey,
    Ec2Clients,
    Ec2Instance,
    Ec2Launch,
    Ec2Plan,
    Ec2Spec,
    EndpointResolver,
    HostKeyFactory,
    Pacing,
    PhaseCallback,
    SshEndpoint,
    SshProbe,
    host_key_alias,
    make_clients,
    public_endpoint,
    silent,
)
from provision.ec2.network import (
    create_security_group,
    default_vpc,
    delete_security_group,
    describe_permission,
    detect_public_ip,
    find_security_group,
    normalize_cidr,
    split_rules,
    sync_ssh_rule,
)
from provision.ec2.power import find_instance
from provision.ec2.pricing import cost_note, hourly_cost_usd, monthly_cost_usd
from provision.ec2.wait import wait_ssh, wait_state
from provision.errors import CloudError, McpctlError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import IpPermissionOutputTypeDef


# The watchdog script's header line names its idle limit (see provision.ec2.cloudinit.watchdog_script).
_AUTOSTOP_RE = re.compile(r"mcpctl idle watchdog: power off after (\d+) min")


@dataclass
class _Found:
    """Everything :func:`plan` and :func:`launch` learn before changing anything."""

    cidr: str
    arch: str
    instance: Ec2Instance | None
    local_key: ClientKey | None
    remote_key: RemoteKey | None
    vpc_id: str
    sg_id: str | None
    sg_permissions: list[IpPermissionOutputTypeDef]
    ami_id: str | None


# --------------------------------------------------------------------------------------------------
# plan and launch


def plan(
    spec: Ec2Spec,
    keys_dir: Path,
    *,
    clients: Ec2Clients | None = None,
    ip_lookup: Callable[[], str] | None = None,
) -> Ec2Plan:
    """Compute what :func:`launch` would create or reuse, without changing anything.

    Raises:
        CloudError: AWS refused a read (credentials, permissions, unknown type, no AMI parameter).
        ProfileError: the SSH CIDR is invalid or too wide.
    """
    with translated(spec.region, spec.instance_type):
        c = clients or make_clients(spec.region)
        found = _discover(c, spec, keys_dir, ip_lookup, silent)
        steps: list[Change] = [_key_step(spec, found, keys_dir)]
        sg_detail = (
            f"{spec.name} ({found.sg_id}) in {found.vpc_id}"
            if found.sg_id
            else f"{spec.name} in {found.vpc_id}"
        )
        steps.append(Change("security-group", "reuse" if found.sg_id else "create", sg_detail))
        have_rule, stale = split_rules(found.sg_permissions, found.cidr)
        steps.append(Change("ssh-rule", "keep" if have_rule else "authorize", f"tcp/22 from {found.cidr}"))
        steps += [Change("ssh-rule", "revoke", describe_permission(p)) for p in stale]
        inst = found.instance
        if inst is None:
            detail = (
                f"{spec.instance_type} ({found.arch}) from {found.ami_id}, {spec.volume_gb} GB gp3 "
                f"encrypted, autostop {spec.autostop_minutes or 'off'}"
            )
            steps.append(Change("instance", "create", detail))
        else:
            action = {"stopped": "start", "stopping": "start", "pending": "wait"}.get(inst.state, "reuse")
            steps.append(
                Change("instance", action, f"{inst.instance_id} ({inst.state}, {inst.instance_type})")
            )
        ami = found.ami_id if inst is None else inst.image_id
        return Ec2Plan(
            spec,
            found.cidr,
            found.arch,
            ami,
            tuple(steps),
            hourly_cost_usd(spec.instance_type),
            monthly_cost_usd(spec.instance_type, spec.volume_gb),
            cost_note(spec.instance_type),
        )


def launch(
    spec: Ec2Spec,
    keys_dir: Path,
    *,
    clients: Ec2Clients | None = None,
    ip_lookup: Callable[[], str] | None = None,
    ssh_probe: SshProbe | None = None,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing = DEFAULT_PACING,
    endpoint: EndpointResolver | None = None,
    host_key_factory: HostKeyFactory | None = None,
) -> Ec2Launch:
    """Launch (or find again, starting it if stopped) the profile's instance and wait until SSH answers.

    Idempotent: an instance tagged ``mcpctl:profile=<profile>`` in a live state is reused, the SSH
    rule is brought back to exactly ``ssh_cidr`` (stale rules revoked). A new instance gets IMDSv2,
    an encrypted gp3 root volume, tags on instance and volume, and user-data that installs a host
    key generated here, so the first connection is verified against a key we already know. If a first
    launch fails (or is interrupted), what this run created is removed again; pre-existing resources
    are left alone.

    Args:
        spec: what to launch.
        keys_dir: where the client key lives (created 0700 if missing).
        clients: boto3 clients (default: :func:`make_clients` for ``spec.region``).
        ip_lookup: returns the caller's public IP when ``spec.ssh_cidr`` is None.
        ssh_probe: ``(host, port, timeout) -> bool`` (default :func:`ssh_banner_probe`).
        on_phase: progress callback ``(phase, detail)``.
        pacing: overall deadline and poll interval (covers running + SSH reachable).
        endpoint: where the running instance's sshd is (default :func:`public_endpoint`: public IP,
            port 22, ``ubuntu``); tests point it at a local sshd.
        host_key_factory: makes the host key a new instance installs (default
            :func:`provision.ec2.cloudinit.generate_host_key`).

    Raises:
        CloudError: AWS refused or failed (credentials, permissions, quota, capacity, AMI, tags).
        ConnectError: the instance runs but port 22 did not answer before the deadline.
        ProfileError: invalid or too wide SSH CIDR.
        McpctlError: the local client key is unusable or does not match the existing key pair.
    """
    report = on_phase or silent
    deadline = pacing.clock() + pacing.timeout_s
    how = _Reach(endpoint or public_endpoint, ssh_probe, pacing, deadline, report)
    with translated(spec.region, spec.instance_type):
        c = clients or make_clients(spec.region)
        found = _discover(c, spec, keys_dir, ip_lookup, report)
        if found.instance is not None:
            return _resume(c, spec, keys_dir, found, how)
        return _create(c, spec, keys_dir, found, how, host_key_factory or generate_host_key)


@dataclass(frozen=True)
class _Reach:
    """How a launch waits for SSH: where, with which probe, until when, reporting to whom."""

    endpoint: EndpointResolver
    probe: SshProbe | None
    pacing: Pacing
    deadline: float
    report: PhaseCallback

    def wait(self, instance: Ec2Instance) -> SshEndpoint:
        where = self.endpoint(instance)
        wait_ssh(
            where.host,
            where.port,
            deadline=self.deadline,
            probe=self.probe,
            pacing=self.pacing,
            on_phase=self.report,
        )
        return where


def _discover(
    c: Ec2Clients, spec: Ec2Spec, keys_dir: Path, ip_lookup: Callable[[], str] | None, report: PhaseCallback
) -> _Found:
    if spec.ssh_cidr is not None:
        cidr = normalize_cidr(spec.ssh_cidr, allow_world=spec.allow_world)
    else:
        ip = (ip_lookup or detect_public_ip)()
        cidr = normalize_cidr(ip, allow_world=spec.allow_world)
        report("caller-ip", f"your public IP is {ip}; only {cidr} may reach port 22")
    ec2 = c.ec2
    instance = find_instance(spec.profile, spec.region, clients=c)
    arch = instance.arch if instance else arch_for_instance_type(spec.instance_type, ec2)
    vpc_id = instance.vpc_id if instance and instance.vpc_id else default_vpc(ec2, spec.region)
    sg_id, perms = find_security_group(ec2, spec, vpc_id)
    remote = find_key_pair(ec2, spec)
    ami_id = None
    if instance is None:
        ami_id = ubuntu_ami(c.ssm, arch)
    return _Found(
        cidr, arch, instance, load_client_key(keys_dir, spec.profile), remote, vpc_id, sg_id, perms, ami_id
    )


def _key_step(spec: Ec2Spec, found: _Found, keys_dir: Path) -> Change:
    path = client_key_path(keys_dir, spec.profile)
    if found.instance is not None:
        return Change("key-pair", "reuse", f"{spec.name} (local {path})")
    if found.remote_key is None:
        action = "import" if found.local_key else "create"
    elif found.local_key and same_key(found.remote_key, found.local_key):
        action = "reuse"
    else:
        action = "replace" if found.remote_key.ours else "conflict"
    return Change("key-pair", action, f"{spec.name} (local {path})")


class _Undo:
    """What this run created, removed again in reverse order if the first launch fails."""

    def __init__(self, c: Ec2Clients, report: PhaseCallback, pacing: Pacing) -> None:
        self.items: list[tuple[str, str]] = []
        self._c, self._report, self._pacing = c, report, pacing

    def add(self, kind: str, ident: str) -> None:
        self.items.append((kind, ident))

    def run(self) -> None:
        ec2 = self._c.ec2
        for kind, ident in reversed(self.items):
            try:
                if kind == "instance":
                    ec2.terminate_instances(InstanceIds=[ident])
                    wait_state(
                        ec2,
                        "instance_terminated",
                        ident,
                        self._pacing.clock() + self._pacing.timeout_s,
                        self._pacing,
                    )
                elif kind == "security-group":
                    delete_security_group(ec2, ident, self._pacing)
                elif kind == "key-pair":
                    ec2.delete_key_pair(KeyName=ident)
                self._report("cleanup", f"removed {kind} {ident} created by this run")
            except Exception as exc:  # keep cleaning; the original error is what gets raised
                self._report("cleanup", f"could not remove {kind} {ident} ({exc}); remove it by hand")


def _create(
    c: Ec2Clients, spec: Ec2Spec, keys_dir: Path, found: _Found, how: _Reach, host_key_factory: HostKeyFactory
) -> Ec2Launch:
    ec2, report = c.ec2, how.report
    undo = _Undo(c, report, how.pacing)
    changes: list[Change] = []
    try:
        key = ensure_client_key(keys_dir, spec.profile)
        changes.append(ensure_key_pair(ec2, spec, key, found.remote_key))
        if changes[-1].action == "created":
            undo.add("key-pair", spec.name)
        report("key-pair", f"{changes[-1].action} {spec.name}")
        sg_id = found.sg_id
        if sg_id is None:
            sg_id = create_security_group(ec2, spec, found.vpc_id)
            undo.add("security-group", sg_id)
            changes.append(Change("security-group", "created", sg_id))
        else:
            changes.append(Change("security-group", "reused", sg_id))
        report("security-group", f"{changes[-1].action} {sg_id}")
        changes += sync_ssh_rule(ec2, sg_id, found.sg_permissions, found.cidr, report)
        assert found.ami_id is not None  # resolved by _discover whenever no instance exists
        device = root_device(ec2, found.ami_id)
        report("ami", f"Ubuntu 24.04 {found.arch}: {found.ami_id}")
        host_key = host_key_factory(spec.name)
        user_data = render_user_data(host_key, autostop_minutes=spec.autostop_minutes)
        instance_id = run_instance(
            ec2,
            spec,
            vpc_id=found.vpc_id,
            ami_id=found.ami_id,
            sg_id=sg_id,
            key_name=key.name,
            device=device,
            user_data=user_data,
            report=report,
            on_launched=lambda iid: undo.add("instance", iid),
        )
        changes.append(Change("instance", "created", instance_id))
        wait_state(ec2, "instance_running", instance_id, how.deadline, how.pacing, report)
        instance = describe(ec2, instance_id)
        where = how.wait(instance)
        return Ec2Launch(
            instance,
            tuple(changes),
            key,
            sg_id,
            found.cidr,
            host_key.public_line,
            host_key_alias(spec.profile, instance_id),
            where,
            spec.autostop_minutes,
        )
    except BaseException:
        # BaseException too: Ctrl-C during a first launch must not leave a billed instance behind.
        if undo.items:
            report("cleanup", "the launch failed; removing what this run created")
            undo.run()
        raise


def _resume(c: Ec2Clients, spec: Ec2Spec, keys_dir: Path, found: _Found, how: _Reach) -> Ec2Launch:
    ec2, report = c.ec2, how.report
    inst = found.instance
    assert inst is not None
    key = load_client_key(keys_dir, spec.profile)
    if key is None:
        raise McpctlError(
            f"instance {inst.instance_id} exists but its SSH client key "
            f"{client_key_path(keys_dir, spec.profile)} is missing",
            hint=f"restore the file, or run `mcpctl destroy {spec.profile}` and provision again",
        )
    changes = [Change("instance", "reused", inst.instance_id)]
    report("instance", f"found {inst.instance_id} ({inst.state})")
    if found.sg_id is None:
        raise CloudError(
            f"instance {inst.instance_id} exists but its security group {spec.name} is gone",
            hint=f"run `mcpctl destroy {spec.profile}` and provision again",
        )
    changes += sync_ssh_rule(ec2, found.sg_id, found.sg_permissions, found.cidr, report)
    if inst.state in ("stopping", "stopped"):
        changes.append(Change("instance", "started", inst.instance_id))
    instance = start_instance(ec2, inst, how.pacing, how.deadline, report)
    where = how.wait(instance)
    data = ec2.describe_instance_attribute(InstanceId=inst.instance_id, Attribute="userData")
    raw = data.get("UserData", {}).get("Value")
    # The user-data records which host key we installed (it lets a lost known_hosts entry be
    # re-pinned) and which idle watchdog runs there.
    text = base64.b64decode(raw).decode("utf-8", "replace") if raw else None
    return Ec2Launch(
        instance,
        tuple(changes),
        key,
        found.sg_id,
        found.cidr,
        host_public_key_from_user_data(text) if text else None,
        host_key_alias(spec.profile, inst.instance_id),
        where,
        _autostop_in_user_data(text) if text else None,
    )


def _autostop_in_user_data(user_data: str) -> int:
    """The idle limit of the watchdog that user-data installs (0: no watchdog)."""
    match = _AUTOSTOP_RE.search(user_data)
    return int(match.group(1)) if match else 0
