"""The values the deploy modules share: what to deploy, AWS names and tags, the clients, a change.

Plain dataclasses and constants only: no AWS call happens here (boto3 is imported by
:func:`make_clients` when it is called), so every ``provision.deploy`` module can import this one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from provision import __version__
from provision.ec2.model import TAG_CREATED_BY, TAG_OWNER, TAG_PROFILE, client_config, default_owner
from provision.ec2.model import Change as Change  # re-exported: one step record serves both rooms
from provision.errors import OptionError
from provision.profiles import check_name

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_acm.client import ACMClient
    from mypy_boto3_application_autoscaling.client import ApplicationAutoScalingClient
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ecs.client import ECSClient
    from mypy_boto3_elbv2.client import ElasticLoadBalancingv2Client
    from mypy_boto3_iam.client import IAMClient
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_logs.client import CloudWatchLogsClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_sts.client import STSClient

#: Which shape a resource belongs to: ``ecs`` or ``lambda`` (the profile tag says whose it is).
TAG_SHAPE = "mcpctl:deployment"
Shape = Literal["ecs", "lambda"]
#: The port the container's HTTP server listens on, and the path every health check asks.
CONTAINER_PORT = 8000
HEALTH_PATH = "/health"
#: The environment variable that receives the API key (ECS injects it from Secrets Manager).
API_KEY_ENV = "MCP_API_KEY"
#: Where the Lambda handler finds the secret holding the key (it reads the value at cold start).
API_KEY_SECRET_ENV = "MCP_API_KEY_SECRET_ARN"
#: Where the server reads its data from, inside the container.
DATA_ENV = "MCP_SALES_DATA"
#: TLS policy of the HTTPS listener: TLS 1.3 and 1.2 only.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
#: CPU utilisation the service's autoscaling keeps the tasks at.
CPU_TARGET_PERCENT = 60.0
#: Fargate's valid (cpu units -> memory MiB range) pairs.
FARGATE_SIZES = {
    256: (512, 2048),
    512: (1024, 4096),
    1024: (2048, 8192),
    2048: (4096, 16384),
    4096: (8192, 30720),
}
MAX_REPLICAS = 50

_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9.:_/@-]*[a-z0-9]$", re.I)

PhaseCallback = Callable[[str, str], None]


def silent(_phase: str, _detail: str) -> None:
    """The ``on_phase`` callback that reports nothing."""
    return None


@dataclass(frozen=True)
class DataObject:
    """The one S3 object the service reads (its task role may read exactly this object)."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self.key}"

    @property
    def arn(self) -> str:
        """The object's ARN, the only resource of the read-only S3 grant."""
        return f"arn:aws:s3:::{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> DataObject:
    """``s3://bucket/key`` -> :class:`DataObject`.

    Raises:
        OptionError: not an S3 object URI.
    """
    match = _S3_URI.match(uri.strip())
    if not match or match.group(2).endswith("/"):
        raise OptionError(
            f"--data {uri!r} is not an S3 object",
            hint="pass the object's URI, e.g. s3://my-bucket/exports/sales.parquet (upload it first)",
        )
    return DataObject(match.group(1), match.group(2))


def check_image(image: str) -> str:
    """A container image reference (``ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo:tag``).

    Raises:
        OptionError: empty or not an image reference.
    """
    if not _IMAGE.match(image) or " " in image:
        raise OptionError(
            f"--image {image!r} is not a container image reference",
            hint="pass a pushed image, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/mcp-sales:1.0",
        )
    return image


@dataclass(frozen=True)
class EcsSpec:
    """What ``mcpctl deploy ecs`` runs for one deployment.

    Attributes:
        name: the deployment (and profile) name; AWS names derive from it (:func:`aws_name`).
        allowed_cidr: who may reach the load balancer; None = the caller's address as a /32.
        cert_arn: the ACM certificate of the HTTPS listener; None only with ``insecure_http``.
        insecure_http: an internal load balancer with a plain-HTTP listener on port 80, for tests
            and private networks only (the CLI flag says so loudly).
        cpu, memory: Fargate task size (CPU units, MiB).
    """

    name: str
    region: str
    image: str
    data: DataObject
    replicas: int = 2
    min_replicas: int = 1
    max_replicas: int = 4
    cert_arn: str | None = None
    allowed_cidr: str | None = None
    insecure_http: bool = False
    cpu: int = 1024
    memory: int = 2048
    owner: str = field(default_factory=default_owner)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_image(self.image)
        if not 1 <= self.min_replicas <= self.replicas <= self.max_replicas <= MAX_REPLICAS:
            raise OptionError(
                f"replicas must satisfy 1 <= --min ({self.min_replicas}) <= --replicas ({self.replicas}) "
                f"<= --max ({self.max_replicas}) <= {MAX_REPLICAS}",
                hint="choose bounds around the replica count, e.g. --replicas 2 --min 1 --max 4",
            )
        low, high = FARGATE_SIZES.get(self.cpu, (0, -1))
        if not low <= self.memory <= high:
            raise OptionError(
                f"Fargate has no task size of {self.cpu} CPU units with {self.memory} MiB",
                hint="use --cpu 256/512/1024/2048/4096 with memory in its range (e.g. 1024 and 2048)",
            )
        if self.cert_arn is None and not self.insecure_http:
            raise OptionError(
                "a public HTTPS listener needs a certificate",
                hint="pass --cert-arn arn:aws:acm:REGION:ACCOUNT:certificate/ID (an ACM certificate for "
                "your domain); only an internal test deployment may use --insecure-http-internal",
            )
        if self.cert_arn is not None and not self.cert_arn.startswith("arn:aws"):
            raise OptionError(
                f"--cert-arn {self.cert_arn!r} is not an ARN", hint="pass the ACM certificate's ARN"
            )


@dataclass(frozen=True)
class LambdaSpec:
    """What ``mcpctl deploy lambda`` runs: one function from a container image and its URL."""

    name: str
    region: str
    image: str
    data: DataObject
    memory: int = 2048
    timeout_s: int = 60
    owner: str = field(default_factory=default_owner)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_image(self.image)
        if not 512 <= self.memory <= 10240:
            raise OptionError(f"--memory {self.memory} is out of range", hint="use 512 to 10240 MiB")
        if not 3 <= self.timeout_s <= 900:
            raise OptionError(f"--timeout {self.timeout_s} is out of range", hint="use 3 to 900 seconds")


Spec = EcsSpec | LambdaSpec


@dataclass(frozen=True)
class DeployClients:
    """The boto3 clients of one region (built by :func:`make_clients`, or injected by tests)."""

    ec2: EC2Client
    ecs: ECSClient
    elbv2: ElasticLoadBalancingv2Client
    iam: IAMClient
    secrets: SecretsManagerClient
    logs: CloudWatchLogsClient
    autoscaling: ApplicationAutoScalingClient
    lambda_: LambdaClient
    sts: STSClient
    acm: ACMClient


def make_clients(region: str, session: boto3.Session | None = None) -> DeployClients:
    """Build every client the deploy modules use for ``region`` from boto3's default credentials."""
    import boto3

    config = client_config()
    s = session or boto3.Session()

    def client(service: Any) -> Any:
        return s.client(service, region_name=region, config=config)

    return DeployClients(
        ec2=client("ec2"),
        ecs=client("ecs"),
        elbv2=client("elbv2"),
        iam=client("iam"),
        secrets=client("secretsmanager"),
        logs=client("logs"),
        autoscaling=client("application-autoscaling"),
        lambda_=client("lambda"),
        sts=client("sts"),
        acm=client("acm"),
    )


def aws_name(name: str, suffix: str = "", *, limit: int = 255, strict: bool = False) -> str:
    """The AWS name of one of ``name``'s resources: ``mcpctl-NAME[-suffix]``.

    Names longer than ``limit`` (load balancers and target groups: 32, roles and functions: 64) keep
    a readable prefix and end with a hash of the full name, so two deployments never share one.
    ``strict`` names (load balancers, target groups) allow only letters, digits and '-'.
    """
    full = f"mcpctl-{name}{'-' + suffix if suffix else ''}"
    if len(full) <= limit and not (strict and "_" in full):
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    tail = f"-{digest}{'-' + suffix if suffix else ''}"
    head = f"mcpctl-{name}"[: limit - len(tail)].rstrip("-_")
    short = head + tail
    return short.replace("_", "-") if strict else short


def tags(spec: Spec | None, name: str, shape: Shape) -> dict[str, str]:
    """The tags every resource of a deployment carries (how mcpctl finds them again)."""
    owner = spec.owner if spec is not None else default_owner()
    return {
        TAG_PROFILE: name,
        TAG_SHAPE: shape,
        TAG_OWNER: owner,
        TAG_CREATED_BY: f"mcpctl {__version__}",
    }


def tag_list(values: dict[str, str], key: str = "Key", value: str = "Value") -> list[Any]:
    """``{"k": "v"}`` -> ``[{"Key": "k", "Value": "v"}]`` (ECS spells them ``key``/``value``)."""
    return [{key: k, value: v} for k, v in values.items()]


def is_ours(found: Any, name: str, key: str = "Key", value: str = "Value") -> bool:
    """Whether a tag list marks the resource as deployment ``name``'s."""
    return any(t.get(key) == TAG_PROFILE and t.get(value) == name for t in found or [])


def log_group_name(name: str) -> str:
    """The CloudWatch log group of deployment ``name``."""
    return f"/mcpctl/{name}"


def secret_name(name: str) -> str:
    """The Secrets Manager name of deployment ``name``'s API key."""
    return f"mcpctl/{name}/api-key"


#: The container's own health check, in Python: the image has no curl, and urlopen raises on a 503.
HEALTH_COMMAND = (
    "import sys, urllib.request; sys.exit("
    f"urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{HEALTH_PATH}', timeout=4)"
    ".status != 200)"
)
#: Where the image's unprivileged user keeps the prepared data (the Dockerfile's CMD says the same).
CONTAINER_CACHE_DIR = "/home/mcp/cache"
#: The container's name in the task definition.
CONTAINER_NAME = "mcp-sales"


def server_command(data_uri: str) -> list[str]:
    """The arguments after the image's ``mcp-sales`` entry point: stateless streamable HTTP on all
    interfaces of the task (the security group, not the bind address, keeps strangers out)."""
    return [
        "serve",
        "--transport",
        "streamable-http",
        "--stateless",
        "--host",
        "0.0.0.0",  # inside the task's own network namespace; only the ALB's group may connect
        "--port",
        str(CONTAINER_PORT),
        "--data",
        data_uri,
        "--cache-dir",
        CONTAINER_CACHE_DIR,
    ]
