"""What a deploy would do, computed read-only for the printed plan and ``--dry-run``.

Every resource is looked up the way the deploy itself finds it (name and tag), so the plan says
``create`` or ``keep`` for each, followed by the rules, the listener and the hourly cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from provision.deploy import access, apikey, balancer, ecs, function, network, service
from provision.deploy.aws_errors import translated
from provision.deploy.model import (
    CONTAINER_PORT,
    CPU_TARGET_PERCENT,
    HEALTH_PATH,
    Change,
    DeployClients,
    EcsSpec,
    LambdaSpec,
    Shape,
    log_group_name,
    secret_name,
)
from provision.deploy.pricing import Cost, ecs_cost, lambda_cost
from provision.ec2.network import detect_public_ip, normalize_cidr


@dataclass(frozen=True)
class DeployPlan:
    """The steps of a deploy, where clients may come from, and what it costs."""

    shape: Shape
    name: str
    region: str
    steps: tuple[Change, ...]
    allowed_cidr: str | None
    cost: Cost


def resolve_cidr(
    cidr: str | None, *, allow_world: bool = False, detect: Callable[[], str] | None = None
) -> str:
    """The client range of the load balancer: ``cidr``, or the caller's public address as a /32.

    Raises:
        ProfileError: not a range, or wider than /24 without ``allow_world``.
        CloudError: no range given and the caller's address cannot be detected.
    """
    if cidr is None:
        cidr = (detect or detect_public_ip)()
    return normalize_cidr(cidr, allow_world=allow_world)


def _step(resource: str, exists: bool, detail: str) -> Change:
    return Change(resource, "keep" if exists else "create", detail)


def plan_ecs(spec: EcsSpec, clients: DeployClients) -> DeployPlan:
    """The plan of ``deploy ecs`` (``spec.allowed_cidr`` already resolved). Nothing is changed.

    Raises:
        CloudError: AWS failed, or a resource of a deployment name exists without our tag.
    """
    c, name = clients, spec.name
    with translated(spec.region):
        balancer.check_certificate(c.acm, spec)
        vpc, subnets = network.default_subnets(c.ec2, spec.region)
        cluster = ecs.find_cluster(c.ecs, name)
        lb = balancer.find_balancer(c.elbv2, name)
        port = network.listener_port(spec)
        listener = (
            f"HTTP:{port} on an INTERNAL load balancer, no TLS (--insecure-http-internal)"
            if spec.insecure_http
            else f"HTTPS:{port} with {spec.cert_arn}"
        )
        exe, task = access.execution_role_name(name), access.task_role_name(name)
        alb_sg, task_sg = network.alb_group_name(name), network.task_group_name(name)
        has_service = cluster is not None and service.find_service(c.ecs, cluster, name) is not None
        steps = [
            _step("log-group", ecs.find_log_group(c.logs, name), log_group_name(name)),
            _step("secret", apikey.find_secret(c.secrets, name) is not None, secret_name(name)),
            _step("iam-role", access.find_role(c.iam, exe, name) is not None,
                  f"{exe}: pull the image, write logs, read the secret"),
            _step("iam-role", access.find_role(c.iam, task, name) is not None,
                  f"{task}: s3:GetObject on {spec.data.uri} only"),
            _step("security-group", network.find_group(c.ec2, alb_sg, vpc, name) is not None,
                  f"{alb_sg}: tcp/{port} from {spec.allowed_cidr} only"),
            _step("security-group", network.find_group(c.ec2, task_sg, vpc, name) is not None,
                  f"{task_sg}: tcp/{CONTAINER_PORT} from the load balancer only"),
            _step("target-group", balancer.find_target_group(c.elbv2, name) is not None,
                  f"{balancer.target_group_name(name)}: GET {HEALTH_PATH} must answer 200"),
            _step("load-balancer", lb is not None, f"{balancer.balancer_name(name)} in {', '.join(subnets)}"),
            Change("listener", "ensure", listener),
            _step("cluster", cluster is not None, ecs.cluster_name(name)),
            Change("task-definition", "ensure",
                   f"{spec.image}, {spec.cpu} CPU / {spec.memory} MiB, the key from `secrets`"),
            _step("service", has_service, f"{service.service_name(name)}: {spec.replicas} Fargate task(s)"),
            Change("autoscaling", "ensure",
                   f"{spec.min_replicas}-{spec.max_replicas} tasks, CPU target {CPU_TARGET_PERCENT:.0f} %"),
        ]  # fmt: skip
    return DeployPlan(
        "ecs",
        name,
        spec.region,
        tuple(steps),
        spec.allowed_cidr,
        ecs_cost(spec.replicas, spec.cpu, spec.memory),
    )


def plan_lambda(spec: LambdaSpec, clients: DeployClients) -> DeployPlan:
    """The plan of ``deploy lambda``. Nothing is changed.

    Raises:
        CloudError: AWS failed, or a resource of a deployment name exists without our tag.
    """
    c, name = clients, spec.name
    with translated(spec.region):
        role, fn = access.lambda_role_name(name), function.function_name(name)
        steps = [
            _step("log-group", ecs.find_log_group(c.logs, name), log_group_name(name)),
            _step("secret", apikey.find_secret(c.secrets, name) is not None, secret_name(name)),
            _step("iam-role", access.find_role(c.iam, role, name) is not None,
                  f"{role}: write logs, read the secret, s3:GetObject on {spec.data.uri}"),
            _step("function", function.find_function(c.lambda_, name) is not None,
                  f"{fn}: {spec.image}, {spec.memory} MiB, {spec.timeout_s} s"),
            Change("function-url", "ensure", "public URL, no AWS auth: every request needs the API key"),
        ]  # fmt: skip
    return DeployPlan("lambda", name, spec.region, tuple(steps), None, lambda_cost(spec.memory))
