"""EC2 hosts for mcpctl: key pair, security group, Ubuntu AMI, tag-idempotent launch, wait, teardown.

Everything here takes plain values (an :class:`Ec2Spec`, a keys directory) and returns dataclasses;
profiles, known_hosts and rendering are the caller's business. Resources are found again by their
``mcpctl:profile`` tag, so re-running :func:`launch` converges instead of duplicating.

boto3 is imported lazily (``mcpctl --help`` must not pay for it) and botocore errors are translated
into :class:`~provision.errors.CloudError` where they enter, in :func:`_aws`. Every EC2/SSM action
called here is listed in the IAM policy of docs/EC2.md; a test keeps the two in sync.
"""

from __future__ import annotations

import base64
import getpass
import ipaddress
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision import __version__
from provision.cloudinit import (
    LOGIN_USER,
    generate_host_key,
    host_public_key_from_user_data,
    render_user_data,
)
from provision.errors import CloudError, ConnectError, McpctlError, ProfileError

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.type_defs import (
        InstanceTypeDef,
        IpPermissionOutputTypeDef,
        IpPermissionTypeDef,
        TagTypeDef,
    )
    from mypy_boto3_ssm.client import SSMClient

TAG_PROFILE = "mcpctl:profile"
TAG_OWNER = "mcpctl:owner"
TAG_CREATED_BY = "mcpctl:created-by"
AMI_PARAMETER = "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"
CHECKIP_URL = "https://checkip.amazonaws.com"

#: States in which an instance still "exists" for the profile (found again, not launched anew).
LIVE_STATES = ("pending", "running", "stopping", "stopped")
_NOT_TERMINATED = (*LIVE_STATES, "shutting-down")
# Narrower than this needs allow_world: a /24 still covers one office or carrier NAT pool.
_MIN_PREFIX = {4: 24, 6: 48}
# Run in another zone rather than fail: newer types are missing from some zones (us-east-1e...).
_NEXT_ZONE_CODES = {"InsufficientInstanceCapacity", "Unsupported"}
_PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# Graviton families carry a "g" right after the generation digit: t4g, m7g, c6gn, r8gd, im4gn, is4gen.
_GRAVITON_RE = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)$")

PhaseCallback = Callable[[str, str], None]
SshProbe = Callable[[str, int, float], bool]

# Approximate us-east-1 on-demand Linux prices (USD/hour); other regions are usually 0-30% higher.
_HOURLY_USD = {
    "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416, "t3.large": 0.0832, "t3.xlarge": 0.1664,
    "t3a.small": 0.0188, "t3a.medium": 0.0376, "t3a.large": 0.0752,
    "t4g.micro": 0.0084, "t4g.small": 0.0168, "t4g.medium": 0.0336, "t4g.large": 0.0672, "t4g.xlarge": 0.1344,
    "m7i.large": 0.1008, "m7i-flex.large": 0.0958, "m7g.large": 0.0816, "m6i.large": 0.096,
    "c7i.large": 0.0893, "c7g.large": 0.0725, "r7i.large": 0.1323, "r7g.large": 0.1071,
}  # fmt: skip
_GP3_USD_GB_MONTH = 0.08
_PUBLIC_IPV4_USD_HOUR = 0.005
_HOURS_PER_MONTH = 730


def _silent(_phase: str, _detail: str) -> None:
    return None


def default_owner() -> str:
    """``user@hostname`` of the caller, for the ``mcpctl:owner`` tag."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Ec2Spec:
    """What to launch for one profile.

    Attributes:
        profile: the profile name; AWS names are ``mcpctl-<profile>``.
        region: AWS region, e.g. ``eu-west-1``.
        instance_type: e.g. ``t3.small`` (amd64) or ``t4g.small`` (arm64, Graviton).
        ssh_cidr: who may reach port 22; None = the caller's public IP as a /32.
        volume_gb: size of the encrypted gp3 root volume.
        autostop_minutes: idle minutes before the host powers itself off; 0 = never.
        owner: the ``mcpctl:owner`` tag value.
        allow_world: accept an ``ssh_cidr`` wider than /24 (IPv6: /48), up to 0.0.0.0/0.
    """

    profile: str
    region: str
    instance_type: str = "t3.small"
    ssh_cidr: str | None = None
    volume_gb: int = 16
    autostop_minutes: int = 60
    owner: str = field(default_factory=default_owner)
    allow_world: bool = False

    def __post_init__(self) -> None:
        if not _PROFILE_RE.match(self.profile):
            raise ProfileError(
                f"Profile name {self.profile!r} cannot name AWS resources.",
                hint="Use letters, digits, '.', '_' or '-' (at most 63).",
            )
        if not _TYPE_RE.match(self.instance_type):
            raise ProfileError(f"{self.instance_type!r} is not an EC2 instance type.", hint="e.g. t3.small")
        if not 8 <= self.volume_gb <= 16384:
            raise ProfileError(f"volume_gb {self.volume_gb} is out of range.", hint="Use 8 to 16384 GB.")
        if self.autostop_minutes < 0:
            raise ProfileError("autostop_minutes cannot be negative.", hint="Use 0 to turn autostop off.")

    @property
    def name(self) -> str:
        """The AWS name of the key pair, security group and instance: ``mcpctl-<profile>``."""
        return f"mcpctl-{self.profile}"


@dataclass(frozen=True)
class Pacing:
    """How long to wait and how often to poll; tests pass ``poll_s=0`` and a fake clock."""

    poll_s: float = 5.0
    timeout_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Ec2Clients:
    """The boto3 clients of one region (built by :func:`make_clients`, or injected by tests)."""

    ec2: EC2Client
    ssm: SSMClient


@dataclass(frozen=True)
class Ec2Instance:
    """One instance as last described by AWS. ``arch`` is ``amd64`` or ``arm64``."""

    instance_id: str
    state: str
    instance_type: str
    arch: str
    public_ip: str | None
    public_dns: str | None
    availability_zone: str | None
    vpc_id: str | None
    image_id: str | None
    key_name: str | None
    security_group_ids: tuple[str, ...]
    launch_time: datetime | None


@dataclass(frozen=True)
class ClientKey:
    """The per-profile SSH client key: private half on disk (0600), public half imported to EC2."""

    name: str
    path: Path
    public_line: str


@dataclass(frozen=True)
class Change:
    """One thing a run did or will do: ``("security-group", "created", "sg-0abc")``."""

    resource: str
    action: str
    detail: str


@dataclass(frozen=True)
class Ec2Plan:
    """What :func:`launch` would do, computed read-only for ``--dry-run``."""

    spec: Ec2Spec
    ssh_cidr: str
    arch: str
    ami_id: str | None
    steps: tuple[Change, ...]
    hourly_usd: float | None
    monthly_usd: float | None
    cost_note: str


@dataclass(frozen=True)
class Ec2Launch:
    """The result of :func:`launch`.

    Attributes:
        instance: the running, SSH-reachable instance.
        changes: what this run created, reused, started, authorized or revoked.
        key: the client key to log in with (as ``login_user``).
        host_key_line: the host public key to pin (None only if it cannot be recovered).
        host_key_alias: the known_hosts name to pin it under (``HostKeyAlias``): it follows the
            instance id, because the public IP changes on every stop/start.
    """

    instance: Ec2Instance
    changes: tuple[Change, ...]
    key: ClientKey
    security_group_id: str
    ssh_cidr: str
    host_key_line: str | None
    host_key_alias: str
    login_user: str = LOGIN_USER


@dataclass(frozen=True)
class DestroyReport:
    """What :func:`destroy` removed (empty tuples: nothing was there)."""

    instances: tuple[str, ...]
    security_groups: tuple[str, ...]
    key_pairs: tuple[str, ...]


def make_clients(region: str, session: boto3.Session | None = None) -> Ec2Clients:
    """Build the EC2 and SSM clients for ``region`` from boto3's default credential chain.

    Retries use botocore's "standard" mode: safe for RunInstances because each attempt carries a
    ClientToken, so a retried request cannot launch a second instance.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra=f"mcpctl/{__version__}",
    )
    s = session or boto3.Session()
    return Ec2Clients(
        ec2=s.client("ec2", region_name=region, config=config),
        ssm=s.client("ssm", region_name=region, config=config),
    )


def host_key_alias(profile: str, instance_id: str) -> str:
    """The known_hosts name of an instance's host key: stable across stop/start, unlike its IP."""
    return f"mcpctl-{profile}-{instance_id}"


def hourly_cost_usd(instance_type: str) -> float | None:
    """Approximate us-east-1 on-demand price of ``instance_type``, or None if not in the table."""
    return _HOURLY_USD.get(instance_type)


def normalize_cidr(cidr: str, *, allow_world: bool = False) -> str:
    """Validate an SSH source range; a bare address becomes a /32 (IPv6: /128).

    Raises:
        ProfileError: not an address/range, or wider than /24 (IPv6 /48) without ``allow_world``.
    """
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError as exc:
        raise ProfileError(
            f"{cidr!r} is not an IP address or CIDR range.", hint="Pass your address, e.g. 203.0.113.7/32."
        ) from exc
    if net.prefixlen < _MIN_PREFIX[net.version] and not allow_world:
        raise ProfileError(
            f"Refusing to open SSH to {net} ({net.num_addresses} addresses).",
            hint="Use your own address (a /32), or allow wide ranges explicitly (--allow-world).",
        )
    return str(net)


def detect_public_ip(fetch: Callable[[str, float], str] | None = None, timeout_s: float = 3.0) -> str:
    """The caller's public IPv4 address as seen by AWS (``checkip.amazonaws.com``).

    Args:
        fetch: ``(url, timeout) -> body``; defaults to an HTTPS GET (tests inject one).
        timeout_s: give up after this long.

    Raises:
        CloudError: the service is unreachable or answered something that is not an address.
    """
    fetch = fetch or _http_get
    try:
        body = fetch(CHECKIP_URL, timeout_s).strip()
        return str(ipaddress.ip_address(body))
    except (OSError, ValueError) as exc:
        raise CloudError(
            f"Could not detect your public IP address via {CHECKIP_URL}.",
            hint="Pass it explicitly with --ssh-cidr (e.g. 203.0.113.7/32).",
        ) from exc


def _http_get(url: str, timeout_s: float) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        data: bytes = resp.read(64)
    return data.decode("ascii", "replace")


def client_key_path(keys_dir: Path, profile: str) -> Path:
    """Where the private client key of ``profile`` lives (the public half is ``.pub`` beside it)."""
    return keys_dir / f"mcpctl-{profile}"


def ensure_client_key(keys_dir: Path, profile: str) -> ClientKey:
    """Load the profile's ed25519 client key, or generate it (private file mode 0600, dir 0700).

    Raises:
        McpctlError: the existing key file cannot be read or is not a usable private key.
    """
    existing = _load_client_key(keys_dir, profile)
    if existing is not None:
        return existing
    import asyncssh

    name = f"mcpctl-{profile}"
    path = client_key_path(keys_dir, profile)
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=name)
    # O_EXCL + mode at creation: the private key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    public = key.export_public_key("openssh").decode("ascii").strip()
    path.with_name(path.name + ".pub").write_text(public + "\n", encoding="ascii")
    return ClientKey(name=name, path=path, public_line=public)


def _load_client_key(keys_dir: Path, profile: str) -> ClientKey | None:
    import asyncssh

    path = client_key_path(keys_dir, profile)
    if not path.exists():
        return None
    try:
        key = asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise McpctlError(
            f"Cannot read the SSH client key {path}: {exc}.",
            hint="Fix or remove the file (a new key is then generated).",
        ) from exc
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # OpenSSH refuses private keys that others can read
    public = key.export_public_key("openssh").decode("ascii").strip()
    return ClientKey(name=f"mcpctl-{profile}", path=path, public_line=public)


def arch_for_instance_type(instance_type: str, ec2: EC2Client | None = None) -> str:
    """``arm64`` or ``amd64`` for an instance type: asked from EC2 when possible, else by family name.

    Raises:
        CloudError: EC2 says the type does not exist in this region.
    """
    if ec2 is not None:
        from botocore.exceptions import ClientError

        try:
            info = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]  # type: ignore[list-item]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "InvalidInstanceType":
                raise CloudError(
                    f"{instance_type!r} is not an EC2 instance type in this region.",
                    hint="Pick another --instance-type, e.g. t3.small or t4g.small.",
                ) from exc
            if code not in ("UnauthorizedOperation", "AccessDenied"):
                raise
            info = []  # no permission to ask: the family name decides
        archs = info[0].get("ProcessorInfo", {}).get("SupportedArchitectures", []) if info else []
        if "arm64" in archs:
            return "arm64"
        if "x86_64" in archs:
            return "amd64"
    return "arm64" if _GRAVITON_RE.match(instance_type.split(".")[0]) else "amd64"


# --------------------------------------------------------------------------------------------------
# plan and launch


@dataclass
class _RemoteKey:
    public_blob: str | None
    fingerprint: str | None
    ours: bool


@dataclass
class _Found:
    """Everything :func:`plan` and :func:`launch` learn before changing anything."""

    cidr: str
    arch: str
    instance: Ec2Instance | None
    local_key: ClientKey | None
    remote_key: _RemoteKey | None
    vpc_id: str
    sg_id: str | None
    sg_permissions: list[IpPermissionOutputTypeDef]
    ami_id: str | None


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
    with _aws(spec.region, spec.instance_type):
        c = clients or make_clients(spec.region)
        found = _discover(c, spec, keys_dir, ip_lookup, _silent)
        steps: list[Change] = [_key_step(spec, found, keys_dir)]
        sg_detail = (
            f"{spec.name} ({found.sg_id}) in {found.vpc_id}"
            if found.sg_id
            else f"{spec.name} in {found.vpc_id}"
        )
        steps.append(Change("security-group", "reuse" if found.sg_id else "create", sg_detail))
        have_rule, stale = _split_rules(found.sg_permissions, found.cidr)
        steps.append(Change("ssh-rule", "keep" if have_rule else "authorize", f"tcp/22 from {found.cidr}"))
        steps += [Change("ssh-rule", "revoke", _describe_permission(p)) for p in stale]
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
        hourly = hourly_cost_usd(spec.instance_type)
        monthly = None
        if hourly is not None:
            monthly = round(
                (hourly + _PUBLIC_IPV4_USD_HOUR) * _HOURS_PER_MONTH + spec.volume_gb * _GP3_USD_GB_MONTH, 2
            )
        note = (
            "Approximate us-east-1 on-demand Linux price (other regions differ); the monthly figure runs "
            f"24/7 and adds the gp3 volume (${_GP3_USD_GB_MONTH}/GB-month) and the public IPv4 address "
            f"(${_PUBLIC_IPV4_USD_HOUR}/h). A stopped instance still pays for its volume."
        )
        if hourly is None:
            note = f"No built-in price for {spec.instance_type}: see the EC2 pricing page. " + note
        ami = found.ami_id if inst is None else inst.image_id
        return Ec2Plan(spec, found.cidr, found.arch, ami, tuple(steps), hourly, monthly, note)


def launch(
    spec: Ec2Spec,
    keys_dir: Path,
    *,
    clients: Ec2Clients | None = None,
    ip_lookup: Callable[[], str] | None = None,
    ssh_probe: SshProbe | None = None,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing = Pacing(),
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

    Raises:
        CloudError: AWS refused or failed (credentials, permissions, quota, capacity, AMI, tags).
        ConnectError: the instance runs but port 22 did not answer before the deadline.
        ProfileError: invalid or too wide SSH CIDR.
        McpctlError: the local client key is unusable or does not match the existing key pair.
    """
    report = on_phase or _silent
    deadline = pacing.clock() + pacing.timeout_s
    with _aws(spec.region, spec.instance_type):
        c = clients or make_clients(spec.region)
        found = _discover(c, spec, keys_dir, ip_lookup, report)
        if found.instance is not None:
            return _resume(c, spec, keys_dir, found, report, ssh_probe, pacing, deadline)
        return _create(c, spec, keys_dir, found, report, ssh_probe, pacing, deadline)


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
    vpc_id = instance.vpc_id if instance and instance.vpc_id else _default_vpc(ec2, spec.region)
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [spec.name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    sg_id, perms = None, []
    if groups:
        group = groups[0]
        if _tag(group.get("Tags", []), TAG_PROFILE) != spec.profile:
            raise CloudError(
                f"Security group {spec.name} ({group['GroupId']}) exists in {vpc_id} but was not created "
                "by mcpctl for this profile.",
                hint="Delete or rename it, or use another profile name.",
            )
        sg_id, perms = group["GroupId"], list(group.get("IpPermissions", []))
    pairs = ec2.describe_key_pairs(
        Filters=[{"Name": "key-name", "Values": [spec.name]}], IncludePublicKey=True
    )
    remote = None
    for kp in pairs["KeyPairs"]:
        public = kp.get("PublicKey")
        remote = _RemoteKey(
            public_blob=public.split()[1] if public and len(public.split()) > 1 else None,
            fingerprint=kp.get("KeyFingerprint"),
            ours=_tag(kp.get("Tags", []), TAG_PROFILE) == spec.profile,
        )
    ami_id = None
    if instance is None:
        ami_id = _ubuntu_ami(c.ssm, arch)
    return _Found(
        cidr, arch, instance, _load_client_key(keys_dir, spec.profile), remote, vpc_id, sg_id, perms, ami_id
    )


def _key_step(spec: Ec2Spec, found: _Found, keys_dir: Path) -> Change:
    path = client_key_path(keys_dir, spec.profile)
    if found.instance is not None:
        return Change("key-pair", "reuse", f"{spec.name} (local {path})")
    if found.remote_key is None:
        action = "import" if found.local_key else "create"
    elif found.local_key and _same_key(found.remote_key, found.local_key):
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
                    _wait(
                        ec2,
                        "instance_terminated",
                        ident,
                        self._pacing.clock() + self._pacing.timeout_s,
                        self._pacing,
                    )
                elif kind == "security-group":
                    _delete_security_group(ec2, ident, self._pacing)
                elif kind == "key-pair":
                    ec2.delete_key_pair(KeyName=ident)
                self._report("cleanup", f"removed {kind} {ident} created by this run")
            except Exception as exc:  # keep cleaning; the original error is what gets raised
                self._report("cleanup", f"could not remove {kind} {ident} ({exc}); remove it by hand")


def _create(
    c: Ec2Clients,
    spec: Ec2Spec,
    keys_dir: Path,
    found: _Found,
    report: PhaseCallback,
    ssh_probe: SshProbe | None,
    pacing: Pacing,
    deadline: float,
) -> Ec2Launch:
    ec2 = c.ec2
    undo = _Undo(c, report, pacing)
    changes: list[Change] = []
    try:
        key = ensure_client_key(keys_dir, spec.profile)
        changes.append(_ensure_key_pair(ec2, spec, key, found.remote_key, undo))
        report("key-pair", f"{changes[-1].action} {spec.name}")
        sg_id = found.sg_id
        if sg_id is None:
            sg_id = ec2.create_security_group(
                GroupName=spec.name,
                Description=f"mcpctl {spec.profile}: SSH from the owner's address only",
                VpcId=found.vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": _tags(spec)}],
            )["GroupId"]
            undo.add("security-group", sg_id)
            changes.append(Change("security-group", "created", sg_id))
        else:
            changes.append(Change("security-group", "reused", sg_id))
        report("security-group", f"{changes[-1].action} {sg_id}")
        changes += _sync_ssh_rule(ec2, sg_id, found.sg_permissions, found.cidr, report)
        assert found.ami_id is not None  # resolved by _discover whenever no instance exists
        images = ec2.describe_images(ImageIds=[found.ami_id])["Images"]
        root_device = (images[0].get("RootDeviceName") if images else None) or "/dev/sda1"
        report("ami", f"Ubuntu 24.04 {found.arch}: {found.ami_id}")
        host_key = generate_host_key(comment=spec.name)
        user_data = render_user_data(host_key, autostop_minutes=spec.autostop_minutes)
        instance_id = _run_instance(ec2, spec, found, sg_id, key.name, root_device, user_data, undo, report)
        changes.append(Change("instance", "created", instance_id))
        _wait(ec2, "instance_running", instance_id, deadline, pacing, report)
        instance = _describe(ec2, instance_id)
        _wait_ssh_ready(instance, ssh_probe, pacing, deadline, report)
        return Ec2Launch(
            instance,
            tuple(changes),
            key,
            sg_id,
            found.cidr,
            host_key.public_line,
            host_key_alias(spec.profile, instance_id),
        )
    except BaseException:
        # BaseException too: Ctrl-C during a first launch must not leave a billed instance behind.
        if undo.items:
            report("cleanup", "the launch failed; removing what this run created")
            undo.run()
        raise


def _resume(
    c: Ec2Clients,
    spec: Ec2Spec,
    keys_dir: Path,
    found: _Found,
    report: PhaseCallback,
    ssh_probe: SshProbe | None,
    pacing: Pacing,
    deadline: float,
) -> Ec2Launch:
    ec2 = c.ec2
    inst = found.instance
    assert inst is not None
    key = _load_client_key(keys_dir, spec.profile)
    if key is None:
        raise McpctlError(
            f"Instance {inst.instance_id} exists but its SSH client key "
            f"{client_key_path(keys_dir, spec.profile)} is missing.",
            hint=f"Restore the file, or run `mcpctl destroy {spec.profile}` and provision again.",
        )
    changes = [Change("instance", "reused", inst.instance_id)]
    report("instance", f"found {inst.instance_id} ({inst.state})")
    if found.sg_id is None:
        raise CloudError(
            f"Instance {inst.instance_id} exists but its security group {spec.name} is gone.",
            hint=f"Run `mcpctl destroy {spec.profile}` and provision again.",
        )
    changes += _sync_ssh_rule(ec2, found.sg_id, found.sg_permissions, found.cidr, report)
    if inst.state in ("stopping", "stopped"):
        changes.append(Change("instance", "started", inst.instance_id))
    instance = _start(ec2, inst, pacing, deadline, report)
    _wait_ssh_ready(instance, ssh_probe, pacing, deadline, report)
    data = ec2.describe_instance_attribute(InstanceId=inst.instance_id, Attribute="userData")
    raw = data.get("UserData", {}).get("Value")
    # The user-data records which host key we installed; it lets a lost known_hosts entry be re-pinned.
    host_line = (
        host_public_key_from_user_data(base64.b64decode(raw).decode("utf-8", "replace")) if raw else None
    )
    return Ec2Launch(
        instance,
        tuple(changes),
        key,
        found.sg_id,
        found.cidr,
        host_line,
        host_key_alias(spec.profile, inst.instance_id),
    )


def _ensure_key_pair(
    ec2: EC2Client, spec: Ec2Spec, key: ClientKey, remote: _RemoteKey | None, undo: _Undo
) -> Change:
    if remote is not None and _same_key(remote, key):
        return Change("key-pair", "reused", spec.name)
    if remote is not None:
        if not remote.ours:
            raise McpctlError(
                f"EC2 key pair {spec.name} exists, differs from {key.path}, and was not created by mcpctl.",
                hint=f"Delete it (aws ec2 delete-key-pair --key-name {spec.name}) or use another profile.",
            )
        # Ours, and no instance uses it (else we would be resuming): replacing it is safe.
        ec2.delete_key_pair(KeyName=spec.name)
    ec2.import_key_pair(
        KeyName=spec.name,
        PublicKeyMaterial=key.public_line.encode("ascii"),
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": _tags(spec)}],
    )
    if remote is None:
        undo.add("key-pair", spec.name)
        return Change("key-pair", "created", spec.name)
    return Change("key-pair", "replaced", spec.name)


def _same_key(remote: _RemoteKey, key: ClientKey) -> bool:
    blob = key.public_line.split()[1]
    if remote.public_blob is not None:
        return remote.public_blob == blob
    # Older API answers carry only the fingerprint: EC2 uses base64(SHA-256) for imported ed25519 keys.
    import hashlib

    digest = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")
    return (remote.fingerprint or "").removeprefix("SHA256:").rstrip("=") == digest


def _split_rules(
    perms: Sequence[IpPermissionOutputTypeDef], cidr: str
) -> tuple[bool, list[IpPermissionTypeDef]]:
    """(is our exact rule present, every other ingress grant, to be revoked)."""
    have, stale = False, []
    for p in perms:
        port22 = p.get("IpProtocol") == "tcp" and p.get("FromPort") == 22 and p.get("ToPort") == 22
        v4 = [r["CidrIp"] for r in p.get("IpRanges", []) if "CidrIp" in r]
        v6 = [r["CidrIpv6"] for r in p.get("Ipv6Ranges", []) if "CidrIpv6" in r]
        if port22 and cidr in v4 + v6:
            have = True
            v4, v6 = [c for c in v4 if c != cidr], [c for c in v6 if c != cidr]
        groups = [g["GroupId"] for g in p.get("UserIdGroupPairs", []) if "GroupId" in g]
        lists = [x["PrefixListId"] for x in p.get("PrefixListIds", []) if "PrefixListId" in x]
        if not (v4 or v6 or groups or lists):
            continue
        out: IpPermissionTypeDef = {"IpProtocol": p.get("IpProtocol", "-1")}
        if "FromPort" in p:
            out["FromPort"] = p["FromPort"]
        if "ToPort" in p:
            out["ToPort"] = p["ToPort"]
        if v4:
            out["IpRanges"] = [{"CidrIp": c} for c in v4]
        if v6:
            out["Ipv6Ranges"] = [{"CidrIpv6": c} for c in v6]
        if groups:
            out["UserIdGroupPairs"] = [{"GroupId": g} for g in groups]
        if lists:
            out["PrefixListIds"] = [{"PrefixListId": x} for x in lists]
        stale.append(out)
    return have, stale


def _describe_permission(p: IpPermissionTypeDef) -> str:
    proto = p.get("IpProtocol", "-1")
    port = "all" if proto == "-1" else f"{proto}/{p.get('FromPort')}-{p.get('ToPort')}"
    sources = [r.get("CidrIp", "") for r in p.get("IpRanges", [])]
    sources += [r.get("CidrIpv6", "") for r in p.get("Ipv6Ranges", [])]
    sources += [g.get("GroupId", "") for g in p.get("UserIdGroupPairs", [])]
    sources += [x.get("PrefixListId", "") for x in p.get("PrefixListIds", [])]
    return f"{port} from {', '.join(sources)}"


def _sync_ssh_rule(
    ec2: EC2Client, sg_id: str, perms: Sequence[IpPermissionOutputTypeDef], cidr: str, report: PhaseCallback
) -> list[Change]:
    """Make port 22 open to exactly ``cidr``: authorize first, then revoke the rest (no lockout gap)."""
    have, stale = _split_rules(perms, cidr)
    changes = []
    if not have:
        rule: IpPermissionTypeDef = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
        note = "mcpctl: SSH from the owner"
        if ipaddress.ip_network(cidr).version == 6:
            rule["Ipv6Ranges"] = [{"CidrIpv6": cidr, "Description": note}]
        else:
            rule["IpRanges"] = [{"CidrIp": cidr, "Description": note}]
        ec2.authorize_security_group_ingress(GroupId=sg_id, IpPermissions=[rule])
        changes.append(Change("ssh-rule", "authorized", f"tcp/22 from {cidr}"))
        report("ssh-rule", f"allowed tcp/22 from {cidr}")
    if stale:
        ec2.revoke_security_group_ingress(GroupId=sg_id, IpPermissions=stale)
        for p in stale:
            changes.append(Change("ssh-rule", "revoked", _describe_permission(p)))
            report("ssh-rule", f"revoked {_describe_permission(p)}")
    return changes


def _run_instance(
    ec2: EC2Client,
    spec: Ec2Spec,
    found: _Found,
    sg_id: str,
    key_name: str,
    root_device: str,
    user_data: str,
    undo: _Undo,
    report: PhaseCallback,
) -> str:
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [found.vpc_id]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    subnets = sorted(subnets, key=lambda s: s.get("AvailabilityZone", ""))
    if not subnets:
        raise CloudError(
            f"The default VPC {found.vpc_id} in {spec.region} has no default subnet.",
            hint=f"Create one: aws ec2 create-default-subnet --availability-zone ZONE --region {spec.region}",
        )
    from botocore.exceptions import ClientError

    tags: list[TagTypeDef] = [*_tags(spec), {"Key": "Name", "Value": spec.name}]
    last: ClientError | None = None
    for subnet in subnets:
        zone = subnet.get("AvailabilityZone", "?")
        report("launch", f"{spec.instance_type} in {zone}")
        try:
            reply = ec2.run_instances(
                ImageId=found.ami_id or "",
                InstanceType=spec.instance_type,  # type: ignore[arg-type]
                MinCount=1,
                MaxCount=1,
                KeyName=key_name,
                # A fresh token per attempt: botocore's own retries of this request reuse it, so a
                # lost response can never turn into a second instance.
                ClientToken=uuid.uuid4().hex,
                UserData=user_data,
                # The idle watchdog's poweroff must stop the instance, never terminate it.
                InstanceInitiatedShutdownBehavior="stop",
                MetadataOptions={
                    "HttpTokens": "required",
                    "HttpEndpoint": "enabled",
                    "HttpPutResponseHopLimit": 1,
                },
                NetworkInterfaces=[
                    {
                        "DeviceIndex": 0,
                        "SubnetId": subnet["SubnetId"],
                        "Groups": [sg_id],
                        "AssociatePublicIpAddress": True,
                        "DeleteOnTermination": True,
                    }
                ],
                BlockDeviceMappings=[
                    {
                        "DeviceName": root_device,
                        "Ebs": {
                            "VolumeSize": spec.volume_gb,
                            "VolumeType": "gp3",
                            "Encrypted": True,
                            "DeleteOnTermination": True,
                        },
                    }
                ],
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": tags},
                    {"ResourceType": "volume", "Tags": tags},
                ],
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _NEXT_ZONE_CODES:
                raise
            last = exc
            report("launch", f"{zone}: {exc.response.get('Error', {}).get('Code')}; trying the next zone")
            continue
        instance_id = reply["Instances"][0]["InstanceId"]
        undo.add("instance", instance_id)
        report("launch", f"launched {instance_id}")
        return instance_id
    assert last is not None
    raise last


def _wait_ssh_ready(
    instance: Ec2Instance, probe: SshProbe | None, pacing: Pacing, deadline: float, report: PhaseCallback
) -> None:
    if not instance.public_ip:
        raise CloudError(
            f"Instance {instance.instance_id} has no public IP address.",
            hint="mcpctl needs a public IPv4 address; check the default subnet's settings.",
        )
    wait_ssh(instance.public_ip, 22, deadline=deadline, probe=probe, pacing=pacing, on_phase=report)


# --------------------------------------------------------------------------------------------------
# lifecycle


def find_instance(profile: str, region: str, *, clients: Ec2Clients | None = None) -> Ec2Instance | None:
    """The profile's instance in a live state (pending/running/stopping/stopped), or None.

    Raises:
        CloudError: two or more instances carry the profile's tag (both ids named), or AWS failed.
    """
    with _aws(region):
        ec2 = (clients or make_clients(region)).ec2
        found = _tagged_instances(ec2, profile, LIVE_STATES)
        if len(found) > 1:
            ids = ", ".join(sorted(i["InstanceId"] for i in found))
            raise CloudError(
                f"Several EC2 instances in {region} are tagged {TAG_PROFILE}={profile}: {ids}.",
                hint="Terminate the extra ones (aws ec2 terminate-instances --instance-ids ...) and re-run.",
            )
        return _to_instance(found[0]) if found else None


def start(
    profile: str,
    region: str,
    *,
    clients: Ec2Clients | None = None,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing = Pacing(),
) -> Ec2Instance:
    """Start the profile's instance (waiting out a pending stop) and return it running.

    The public IP is new after every start; the host key alias (by instance id) is not.

    Raises:
        CloudError: no instance for the profile, or AWS failed.
    """
    with _aws(region):
        c = clients or make_clients(region)
        inst = _require_instance(profile, region, c)
        return _start(c.ec2, inst, pacing, pacing.clock() + pacing.timeout_s, on_phase or _silent)


def stop(
    profile: str,
    region: str,
    *,
    wait: bool = True,
    clients: Ec2Clients | None = None,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing = Pacing(),
) -> Ec2Instance:
    """Stop the profile's instance (compute billing ends; the volume is kept and billed).

    Raises:
        CloudError: no instance for the profile, or AWS failed.
    """
    with _aws(region):
        c = clients or make_clients(region)
        report = on_phase or _silent
        inst = _require_instance(profile, region, c)
        if inst.state == "stopped":
            report("stop", f"{inst.instance_id} is already stopped")
            return inst
        c.ec2.stop_instances(InstanceIds=[inst.instance_id])
        report("stop", f"stopping {inst.instance_id}")
        if wait:
            _wait(
                c.ec2, "instance_stopped", inst.instance_id, pacing.clock() + pacing.timeout_s, pacing, report
            )
        return _describe(c.ec2, inst.instance_id)


def destroy(
    profile: str,
    region: str,
    *,
    clients: Ec2Clients | None = None,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing = Pacing(),
) -> DestroyReport:
    """Remove everything of the profile: instances, security group, key pair; then verify.

    Instances are terminated and awaited (the security group stays "in use" until then), the group
    is deleted with bounded retries while AWS still reports DependencyViolation, then the key pair.
    Finally nothing tagged ``mcpctl:profile=<profile>`` may remain (instances not terminated, groups,
    key pairs, volumes). Running it again when everything is gone is a no-op.

    Raises:
        CloudError: AWS failed, or something tagged for the profile is still there afterwards.
    """
    report = on_phase or _silent
    deadline = pacing.clock() + pacing.timeout_s
    with _aws(region):
        ec2 = (clients or make_clients(region)).ec2
        ids = sorted(i["InstanceId"] for i in _tagged_instances(ec2, profile, _NOT_TERMINATED))
        if ids:
            ec2.terminate_instances(InstanceIds=ids)
            report("terminate", ", ".join(ids))
            for iid in ids:
                _wait(ec2, "instance_terminated", iid, deadline, pacing, report)
        # Only what carries our tag: a same-named group or key pair without it is not ours to delete.
        sgs = {
            g["GroupId"]
            for g in ec2.describe_security_groups(Filters=[_tag_filter(profile)])["SecurityGroups"]
        }
        for sg in sorted(sgs):
            _delete_security_group(ec2, sg, pacing, deadline)
            report("security-group", f"deleted {sg}")
        keys = {k["KeyName"] for k in ec2.describe_key_pairs(Filters=[_tag_filter(profile)])["KeyPairs"]}
        for k in sorted(keys):
            ec2.delete_key_pair(KeyName=k)
            report("key-pair", f"deleted {k}")
        while leftovers := _leftovers(ec2, profile):
            if pacing.clock() >= deadline:
                raise CloudError(
                    f"After destroy, AWS still lists for profile {profile}: {', '.join(leftovers)}.",
                    hint="Re-run destroy in a minute, or remove them in the EC2 console.",
                )
            pacing.sleep(pacing.poll_s)  # describe calls are eventually consistent after deletes
        return DestroyReport(tuple(ids), tuple(sorted(sgs)), tuple(sorted(keys)))


def _leftovers(ec2: EC2Client, profile: str) -> list[str]:
    left = [f"instance {i['InstanceId']}" for i in _tagged_instances(ec2, profile, _NOT_TERMINATED)]
    left += [
        f"security group {g['GroupId']}"
        for g in ec2.describe_security_groups(Filters=[_tag_filter(profile)])["SecurityGroups"]
    ]
    left += [
        f"key pair {k['KeyName']}" for k in ec2.describe_key_pairs(Filters=[_tag_filter(profile)])["KeyPairs"]
    ]
    volumes = ec2.describe_volumes(Filters=[_tag_filter(profile)])["Volumes"]
    left += [f"volume {v['VolumeId']}" for v in volumes if v.get("State") not in ("deleting", "deleted")]
    return left


def _require_instance(profile: str, region: str, c: Ec2Clients) -> Ec2Instance:
    inst = find_instance(profile, region, clients=c)
    if inst is None:
        raise CloudError(
            f"No EC2 instance in {region} is tagged {TAG_PROFILE}={profile}.",
            hint=f"Launch one with `mcpctl provision {profile} --ec2`.",
        )
    return inst


def _start(
    ec2: EC2Client, inst: Ec2Instance, pacing: Pacing, deadline: float, report: PhaseCallback
) -> Ec2Instance:
    if inst.state == "stopping":  # StartInstances is refused until the stop completes
        report("start", f"waiting for {inst.instance_id} to finish stopping")
        _wait(ec2, "instance_stopped", inst.instance_id, deadline, pacing, report)
    if inst.state in ("stopping", "stopped"):
        ec2.start_instances(InstanceIds=[inst.instance_id])
        report("start", f"starting {inst.instance_id}")
    if inst.state != "running":
        _wait(ec2, "instance_running", inst.instance_id, deadline, pacing, report)
    return _describe(ec2, inst.instance_id)


def _delete_security_group(ec2: EC2Client, sg_id: str, pacing: Pacing, deadline: float | None = None) -> None:
    from botocore.exceptions import ClientError

    end = deadline if deadline is not None else pacing.clock() + pacing.timeout_s
    while True:
        try:
            ec2.delete_security_group(GroupId=sg_id)
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "InvalidGroup.NotFound":
                return
            # A just-terminated instance's network interface holds the group for a little while.
            if code != "DependencyViolation" or pacing.clock() >= end:
                raise
        pacing.sleep(pacing.poll_s)


# --------------------------------------------------------------------------------------------------
# waiting


def ssh_banner_probe(host: str, port: int, timeout_s: float) -> bool:
    """True if ``host:port`` accepts TCP and sends an SSH-2.0 identification line (RFC 4253 4.2)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            data = b""
            while len(data) < 4096:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
                lines = data.split(b"\n")
                # Servers may send other lines before the version line; only complete lines count.
                if any(ln.startswith((b"SSH-2.0-", b"SSH-1.99-")) for ln in lines[:-1]):
                    return True
    except OSError:
        return False
    return False


def wait_ssh(
    host: str,
    port: int = 22,
    *,
    deadline: float | None = None,
    probe: SshProbe | None = None,
    pacing: Pacing = Pacing(),
    on_phase: PhaseCallback | None = None,
) -> None:
    """Poll until ``host:port`` answers with an SSH banner.

    Args:
        deadline: absolute time on ``pacing.clock``; default ``now + pacing.timeout_s``.

    Raises:
        ConnectError: no SSH banner before the deadline.
    """
    probe = probe or ssh_banner_probe
    report = on_phase or _silent
    end = deadline if deadline is not None else pacing.clock() + pacing.timeout_s
    report("ssh", f"waiting for an SSH banner from {host}:{port}")
    while True:
        if probe(host, port, max(1.0, min(5.0, end - pacing.clock()))):
            report("ssh", f"{host}:{port} answers")
            return
        if pacing.clock() >= end:
            raise ConnectError(
                f"{host}:{port} did not answer with an SSH banner in time.",
                hint="Check that your current public IP is the one allowed (re-run provision to update the "
                "rule) and that outbound port 22 is not blocked where you are.",
            )
        pacing.sleep(pacing.poll_s)


def _wait(
    ec2: EC2Client,
    waiter: str,
    instance_id: str,
    deadline: float,
    pacing: Pacing,
    report: PhaseCallback = _silent,
) -> None:
    from botocore.exceptions import WaiterError

    report("wait", f"{instance_id}: {waiter.removeprefix('instance_')}")
    remaining = max(deadline - pacing.clock(), 0.0)
    delay = max(int(pacing.poll_s), 0)
    attempts = max(1, int(remaining // delay) if delay else 40)
    try:
        ec2.get_waiter(waiter).wait(  # type: ignore[call-overload]
            InstanceIds=[instance_id], WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
        )
    except WaiterError as exc:
        error = exc.last_response.get("Error") if isinstance(exc.last_response, dict) else None
        if error:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": error}, "DescribeInstances") from exc
        reason = ""
        try:
            reason = _describe_raw(ec2, instance_id).get("StateReason", {}).get("Message", "")
        except Exception:  # the state reason is a courtesy; the timeout is the error
            reason = ""
        raise CloudError(
            f"Instance {instance_id} did not become {waiter.removeprefix('instance_')} in time"
            + (f" ({reason})." if reason else "."),
            hint="Look at it in the EC2 console; re-running the command continues from where it is.",
        ) from exc


# --------------------------------------------------------------------------------------------------
# helpers


def _tags(spec: Ec2Spec) -> list[TagTypeDef]:
    return [
        {"Key": TAG_PROFILE, "Value": spec.profile},
        {"Key": TAG_OWNER, "Value": spec.owner},
        {"Key": TAG_CREATED_BY, "Value": f"mcpctl {__version__}"},
    ]


def _tag(tags: Sequence[TagTypeDef], key: str) -> str | None:
    return next((t.get("Value") for t in tags if t.get("Key") == key), None)


def _tag_filter(profile: str) -> Any:
    return {"Name": f"tag:{TAG_PROFILE}", "Values": [profile]}


def _tagged_instances(ec2: EC2Client, profile: str, states: Sequence[str]) -> list[InstanceTypeDef]:
    reply = ec2.describe_instances(
        Filters=[_tag_filter(profile), {"Name": "instance-state-name", "Values": list(states)}]
    )
    return [i for r in reply["Reservations"] for i in r.get("Instances", [])]


def _describe_raw(ec2: EC2Client, instance_id: str) -> InstanceTypeDef:
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    return reply["Reservations"][0]["Instances"][0]


def _describe(ec2: EC2Client, instance_id: str) -> Ec2Instance:
    return _to_instance(_describe_raw(ec2, instance_id))


def _to_instance(i: InstanceTypeDef) -> Ec2Instance:
    groups = [g.get("GroupId", "") for g in i.get("SecurityGroups", [])]
    for eni in i.get("NetworkInterfaces", []):
        groups += [g.get("GroupId", "") for g in eni.get("Groups", [])]
    return Ec2Instance(
        instance_id=i["InstanceId"],
        state=i.get("State", {}).get("Name", "unknown"),
        instance_type=i.get("InstanceType", "?"),
        arch="arm64" if i.get("Architecture") == "arm64" else "amd64",
        public_ip=i.get("PublicIpAddress") or None,
        public_dns=i.get("PublicDnsName") or None,
        availability_zone=i.get("Placement", {}).get("AvailabilityZone"),
        vpc_id=i.get("VpcId"),
        image_id=i.get("ImageId"),
        key_name=i.get("KeyName"),
        security_group_ids=tuple(dict.fromkeys(g for g in groups if g)),
        launch_time=i.get("LaunchTime"),
    )


def _default_vpc(ec2: EC2Client, region: str) -> str:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise CloudError(
            f"Region {region} has no default VPC.",
            hint=f"Create one: aws ec2 create-default-vpc --region {region}",
        )
    return vpcs[0]["VpcId"]


def _ubuntu_ami(ssm: SSMClient, arch: str) -> str:
    value = ssm.get_parameter(Name=AMI_PARAMETER.format(arch=arch))["Parameter"].get("Value", "")
    if not value.startswith("ami-"):
        raise CloudError(f"The Ubuntu AMI parameter holds {value!r}, not an AMI id.")
    return value


# --------------------------------------------------------------------------------------------------
# error translation

# The IAM service of each operation we call on a non-EC2 client (everything else is ec2:).
_IAM_SERVICE = {"GetParameter": "ssm"}
_DENIED = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}
_BAD_CREDENTIALS = {
    "AuthFailure",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "SignatureDoesNotMatch",
}


@contextmanager
def _aws(region: str, instance_type: str | None = None) -> Iterator[None]:
    """Translate botocore errors raised inside the block into CloudError (McpctlErrors pass through)."""
    try:
        yield
    except McpctlError:
        raise
    except Exception as exc:
        translated = translate_aws_error(exc, region, instance_type)
        if translated is None:
            raise
        raise translated from exc


def translate_aws_error(
    exc: BaseException, region: str, instance_type: str | None = None
) -> CloudError | None:
    """One clear CloudError for a botocore exception, or None if ``exc`` is not from botocore."""
    from botocore import exceptions as bx

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return CloudError(
            "No AWS credentials found.", hint="Run `aws configure` or `aws sso login`, or set AWS_PROFILE."
        )
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return CloudError(
            f"Cannot reach the AWS API in region {region!r}.",
            hint="Check the region name and your network connection.",
        )
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code, msg, op = err.get("Code", ""), err.get("Message", ""), exc.operation_name
        action = f"{_IAM_SERVICE.get(op, 'ec2')}:{op}"
        what = instance_type or "this instance type"
        if code in _DENIED:
            return CloudError(
                f"AWS denied {action}: your credentials lack that permission.",
                hint="Add it to your IAM policy (docs/EC2.md lists every action mcpctl uses); "
                "`aws sts decode-authorization-message` explains an encoded denial.",
            )
        if code in _BAD_CREDENTIALS:
            return CloudError(
                "AWS rejected your credentials (expired or invalid).",
                hint="Refresh them (`aws sso login`) or check AWS_PROFILE / AWS_ACCESS_KEY_ID.",
            )
        if code in ("InstanceLimitExceeded", "VcpuLimitExceeded"):
            return CloudError(
                f"Your account's on-demand instance (vCPU) quota in {region} is used up.",
                hint="Stop or destroy other instances, or request a higher 'Running On-Demand Standard "
                "instances' quota in the Service Quotas console.",
            )
        if code == "InsufficientInstanceCapacity":
            return CloudError(
                f"AWS has no spare {what} capacity in {region} right now (every zone tried).",
                hint="Retry in a few minutes, or choose another --instance-type or --region.",
            )
        if code == "Unsupported":
            return CloudError(
                f"{what} is not offered in the zones of {region} that were tried.",
                hint="Choose another --instance-type (e.g. t3.small) or --region.",
            )
        if code == "ParameterNotFound":
            return CloudError(
                f"Canonical publishes no Ubuntu 24.04 AMI parameter in region {region}.",
                hint="Choose another --region.",
            )
        if code == "OptInRequired":
            return CloudError(
                f"Region {region} is not enabled for your AWS account.",
                hint="Enable it in the account settings, or choose another --region.",
            )
        if code == "DependencyViolation":
            return CloudError(
                "A security group is still in use by a network interface.",
                hint="Wait a minute for terminated instances to release it, then re-run destroy.",
            )
        return CloudError(f"AWS {op} failed in {region}: {code}: {msg}".rstrip(": "))
    if isinstance(exc, bx.BotoCoreError):
        return CloudError(f"AWS call failed in {region}: {exc}")
    return None
