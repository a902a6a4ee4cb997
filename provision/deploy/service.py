"""The ECS service of a Fargate deployment: N tasks behind the target group, and their autoscaling.

The tasks run in the default subnets with a public address (to pull the image without a NAT gateway)
but their security group admits only the load balancer. Application Auto Scaling keeps the service's
average CPU near :data:`CPU_TARGET_PERCENT` between the minimum and maximum task counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from provision.deploy.model import (
    CONTAINER_NAME,
    CONTAINER_PORT,
    CPU_TARGET_PERCENT,
    Change,
    EcsSpec,
    PhaseCallback,
    aws_name,
    is_ours,
    tag_list,
    tags,
)
from provision.ec2.model import Pacing
from provision.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling.client import ApplicationAutoScalingClient
    from mypy_boto3_ecs.client import ECSClient

SCALING_POLICY = "mcpctl-cpu"
DIMENSION: Literal["ecs:service:DesiredCount"] = "ecs:service:DesiredCount"


def service_name(name: str) -> str:
    return aws_name(name)


def scaling_resource(cluster: str, name: str) -> str:
    """Application Auto Scaling's id of the service: ``service/CLUSTER/SERVICE``."""
    return f"service/{cluster}/{service_name(name)}"


@dataclass(frozen=True)
class Placement:
    """Where the tasks run and what they sit behind."""

    cluster: str
    subnets: list[str]
    task_sg: str
    target_group: str


def find_service(ecs: ECSClient, cluster: str, name: str) -> dict[str, Any] | None:
    """The deployment's active (or draining) service in ``cluster``, or None.

    Raises:
        CloudError: a service of that name exists without the deployment's tag.
    """
    found = ecs.describe_services(cluster=cluster, services=[service_name(name)], include=["TAGS"])[
        "services"
    ]
    live = [s for s in found if s.get("status") in ("ACTIVE", "DRAINING")]
    if not live:
        return None
    if not is_ours(live[0].get("tags"), name, "key", "value"):
        raise CloudError(
            f"ECS service {service_name(name)} exists but was not created by mcpctl for '{name}'",
            hint="delete it, or deploy under another name",
        )
    return dict(live[0])


def service_request(spec: EcsSpec, task_definition: str, where: Placement) -> dict[str, Any]:
    """The CreateService request (without tags)."""
    return {
        "cluster": where.cluster,
        "serviceName": service_name(spec.name),
        "taskDefinition": task_definition,
        "desiredCount": spec.replicas,
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": where.subnets,
                "securityGroups": [where.task_sg],
                "assignPublicIp": "ENABLED",  # image pulls without a NAT gateway; the SG admits the ALB only
            }
        },
        "loadBalancers": [
            {
                "targetGroupArn": where.target_group,
                "containerName": CONTAINER_NAME,
                "containerPort": CONTAINER_PORT,
            }
        ],
        "healthCheckGracePeriodSeconds": 120,
        "deploymentConfiguration": {
            "minimumHealthyPercent": 100,
            "maximumPercent": 200,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        },
        "propagateTags": "SERVICE",
        "enableECSManagedTags": True,
    }


def ensure_service(
    ecs: ECSClient, spec: EcsSpec, task_definition: str, where: Placement, changes: list[Change]
) -> str:
    """Create the service, or point the existing one at ``task_definition``; returns its ARN.

    An existing service keeps the task count autoscaling chose while it lies within the bounds.
    """
    found = find_service(ecs, where.cluster, spec.name)
    if found is None:
        request = service_request(spec, task_definition, where)
        arn = ecs.create_service(**request, tags=tag_list(tags(spec, spec.name, "ecs"), "key", "value"))[
            "service"
        ]["serviceArn"]
        changes.append(Change("service", "created", f"{service_name(spec.name)} ({spec.replicas} tasks)"))
        return arn
    update: dict[str, Any] = {}
    if found.get("taskDefinition") != task_definition:
        update["taskDefinition"] = task_definition
    if not spec.min_replicas <= int(found.get("desiredCount", 0)) <= spec.max_replicas:
        update["desiredCount"] = spec.replicas
    if update:
        ecs.update_service(cluster=where.cluster, service=service_name(spec.name), **update)
        changes.append(Change("service", "updated", ", ".join(sorted(update))))
    return str(found["serviceArn"])


def ensure_scaling(autoscaling: ApplicationAutoScalingClient, spec: EcsSpec, changes: list[Change]) -> None:
    """Register the service between ``min`` and ``max`` tasks and track average CPU."""
    resource = scaling_resource(aws_name(spec.name), spec.name)
    found = autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    bounds = (spec.min_replicas, spec.max_replicas)
    if not found or (found[0]["MinCapacity"], found[0]["MaxCapacity"]) != bounds:
        autoscaling.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
            MinCapacity=spec.min_replicas,
            MaxCapacity=spec.max_replicas,
        )
        changes.append(Change("autoscaling", "registered", f"{bounds[0]}-{bounds[1]} tasks"))
    policies = autoscaling.describe_scaling_policies(
        ServiceNamespace="ecs", ResourceId=resource, ScalableDimension=DIMENSION
    )["ScalingPolicies"]
    if not any(p["PolicyName"] == SCALING_POLICY for p in policies):
        autoscaling.put_scaling_policy(
            PolicyName=SCALING_POLICY,
            ServiceNamespace="ecs",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": CPU_TARGET_PERCENT,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
                "ScaleOutCooldown": 60,
                "ScaleInCooldown": 300,
            },
        )
        changes.append(Change("autoscaling", "policy", f"CPU target {CPU_TARGET_PERCENT:.0f} %"))


def wait_stable(ecs: ECSClient, cluster: str, name: str, pacing: Pacing, report: PhaseCallback) -> None:
    """Wait until the service runs its desired count on its latest task definition.

    Raises:
        CloudError: not stable by the deadline (the message quotes the service's latest event).
    """
    deadline = pacing.clock() + pacing.timeout_s
    while True:
        service = find_service(ecs, cluster, name)
        if service is None:
            raise CloudError(f"ECS service {service_name(name)} disappeared", hint="re-run deploy")
        primary = [d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"]
        running = primary[0].get("runningCount", 0) if primary else service.get("runningCount", 0)
        rollout = primary[0].get("rolloutState", "COMPLETED") if primary else "COMPLETED"
        if rollout == "FAILED":
            raise CloudError(
                f"ECS could not start healthy tasks of {service_name(name)}: {_last_event(service)}",
                hint=f"read the task logs in CloudWatch (/mcpctl/{name}) and the image's /health",
            )
        if running >= service.get("desiredCount", 0) and rollout == "COMPLETED":
            report("service", f"{running} task(s) running and healthy")
            return
        if pacing.clock() >= deadline:
            raise CloudError(
                f"ECS service {service_name(name)} was not stable after {pacing.timeout_s:.0f} s "
                f"({running}/{service.get('desiredCount')} running): {_last_event(service)}",
                hint=f"read the task logs in CloudWatch (/mcpctl/{name}); re-run deploy to keep waiting",
            )
        pacing.sleep(pacing.poll_s)


def _last_event(service: dict[str, Any]) -> str:
    events = service.get("events") or []
    return str(events[0].get("message", "no event")) if events else "no event yet"
