"""The values the EC2 modules share: what to launch, what was found, what was done, tags, clients.

Plain dataclasses and constants only: no AWS call happens here (boto3 is imported by
:func:`make_clients` when it is called), so every ``provision.ec2*`` module can import this one.
"""

from __future__ import annotations

import getpass
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision import __version__
from provision.ec2.cloudinit import LOGIN_USER, HostKey
from provision.errors import CloudError, ProfileError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.type_defs import TagTypeDef
    from mypy_boto3_ssm.client import SSMClient

TAG_PROFILE = "mcpctl:profile"
TAG_OWNER = "mcpctl:owner"
TAG_CREATED_BY = "mcpctl:created-by"
AMI_PARAMETER = "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"

#: States in which an instance still "exists" for the profile (found again, not launched anew).
LIVE_STATES = ("pending", "running", "stopping", "stopped")
#: Everything a teardown must still wait for or terminate.
NOT_TERMINATED = (*LIVE_STATES, "shutting-down")
_PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")

PhaseCallback = Callable[[str, str], None]
SshProbe = Callable[[str, int, float], bool]
#: Makes the host key a new instance installs (argument: the key comment).
HostKeyFactory = Callable[[str], HostKey]


def silent(_phase: str, _detail: str) -> None:
    """The ``on_phase`` callback that reports nothing."""
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
                f"profile name {self.profile!r} cannot name AWS resources",
                hint="use letters, digits, '.', '_' or '-' (at most 63)",
            )
        if not _TYPE_RE.match(self.instance_type):
            raise ProfileError(
                f"{self.instance_type!r} is not an EC2 instance type", hint="use one such as t3.small"
            )
        if not 8 <= self.volume_gb <= 16384:
            raise ProfileError(f"volume_gb {self.volume_gb} is out of range", hint="use 8 to 16384 GB")
        if self.autostop_minutes < 0:
            raise ProfileError("autostop_minutes cannot be negative", hint="use 0 to turn autostop off")

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


#: The real clock: poll every 5 s, give up after 10 minutes.
DEFAULT_PACING = Pacing()


@dataclass(frozen=True)
class Ec2Clients:
    """The boto3 clients of one region (built by :func:`make_clients`, or injected by tests)."""

    ec2: EC2Client
    ssm: SSMClient


@dataclass(frozen=True)
class Ec2Instance:
    """One instance as last described by AWS. ``arch`` is ``amd64`` or ``arm64``.

    ``launch_time`` is when the instance was last started (EC2 resets it on every start).
    """

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
class SshEndpoint:
    """Where to reach an instance's sshd and whom to log in as."""

    host: str
    port: int = 22
    user: str = LOGIN_USER


#: Maps a running instance to the SSH endpoint to wait for and to save in the profile.
EndpointResolver = Callable[[Ec2Instance], SshEndpoint]


def public_endpoint(instance: Ec2Instance) -> SshEndpoint:
    """The instance's public IPv4 address, port 22, Ubuntu's login user.

    Raises:
        CloudError: the instance has no public IP address.
    """
    if not instance.public_ip:
        raise CloudError(
            f"instance {instance.instance_id} has no public IP address",
            hint="mcpctl needs a public IPv4 address: check the default subnet's settings",
        )
    return SshEndpoint(instance.public_ip, 22, LOGIN_USER)


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
    """What :func:`provision.ec2.launching.launch` would do, computed read-only for ``--dry-run``."""

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
    """The result of :func:`provision.ec2.launching.launch`.

    Attributes:
        instance: the running, SSH-reachable instance.
        changes: what this run created, reused, started, authorized or revoked.
        key: the client key to log in with (as ``login_user``).
        host_key_line: the host public key to pin (None only if it cannot be recovered).
        host_key_alias: the known_hosts name to pin it under (``HostKeyAlias``): it follows the
            instance id, because the public IP changes on every stop/start.
        endpoint: where SSH answered (the public IP, port 22, unless a resolver said otherwise).
        autostop_minutes: the idle watchdog the instance's user-data installs (0: none), or None if
            the user-data no longer says.
    """

    instance: Ec2Instance
    changes: tuple[Change, ...]
    key: ClientKey
    security_group_id: str
    ssh_cidr: str
    host_key_line: str | None
    host_key_alias: str
    endpoint: SshEndpoint
    autostop_minutes: int | None = None

    @property
    def login_user(self) -> str:
        """The user the client key logs in as."""
        return self.endpoint.user


@dataclass(frozen=True)
class DestroyReport:
    """What :func:`provision.ec2.destroy` removed (empty tuples: nothing was there)."""

    instances: tuple[str, ...]
    security_groups: tuple[str, ...]
    key_pairs: tuple[str, ...]


def client_config() -> Config:
    """The botocore settings of every mcpctl client: standard retries, bounded timeouts, our user agent."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra=f"mcpctl/{__version__}",
    )


def make_clients(region: str, session: boto3.Session | None = None) -> Ec2Clients:
    """Build the EC2 and SSM clients for ``region`` from boto3's default credential chain.

    Retries use botocore's "standard" mode: safe for RunInstances because each attempt carries a
    ClientToken, so a retried request cannot launch a second instance.
    """
    import boto3

    config = client_config()
    s = session or boto3.Session()
    return Ec2Clients(
        ec2=s.client("ec2", region_name=region, config=config),
        ssm=s.client("ssm", region_name=region, config=config),
    )


def host_key_alias(profile: str, instance_id: str) -> str:
    """The known_hosts name of an instance's host key: stable across stop/start, unlike its IP."""
    return f"mcpctl-{profile}-{instance_id}"


def spec_tags(spec: Ec2Spec) -> list[TagTypeDef]:
    """The tags every resource of ``spec`` carries (how mcpctl finds them again)."""
    return [
        {"Key": TAG_PROFILE, "Value": spec.profile},
        {"Key": TAG_OWNER, "Value": spec.owner},
        {"Key": TAG_CREATED_BY, "Value": f"mcpctl {__version__}"},
    ]


def tag_value(tags: Sequence[TagTypeDef], key: str) -> str | None:
    """The value of tag ``key``, or None."""
    return next((t.get("Value") for t in tags if t.get("Key") == key), None)


def tag_filter(profile: str) -> Any:
    """The Describe* filter for resources tagged for ``profile``."""
    return {"Name": f"tag:{TAG_PROFILE}", "Values": [profile]}
