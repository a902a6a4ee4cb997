"""The ECS side of a Fargate deployment: the log group, the cluster and the task definition.

The task definition is built by :func:`task_definition` so tests read exactly what is registered: the
API key reaches the container through ``secrets`` (ECS reads Secrets Manager at start), never through
``environment``; logs go to the deployment's CloudWatch group; the container checks its own /health.
A new revision is registered only when the wanted definition differs from the latest active one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.deploy.aws_errors import error_code
from provision.deploy.model import (
    API_KEY_ENV,
    CONTAINER_NAME,
    CONTAINER_PORT,
    HEALTH_COMMAND,
    Change,
    EcsSpec,
    Spec,
    aws_name,
    is_ours,
    log_group_name,
    server_command,
    tag_list,
    tags,
)
from provision.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_ecs.client import ECSClient
    from mypy_boto3_logs.client import CloudWatchLogsClient

LOG_RETENTION_DAYS = 30


def cluster_name(name: str) -> str:
    return aws_name(name)


def family_name(name: str) -> str:
    return aws_name(name)


def find_log_group(logs: CloudWatchLogsClient, name: str) -> bool:
    """Whether deployment ``name``'s log group exists (and is ours).

    Raises:
        CloudError: a group of that name exists without the deployment's tag.
    """
    group = log_group_name(name)
    found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    if not any(g.get("logGroupName") == group for g in found):
        return False
    mine = logs.list_tags_log_group(logGroupName=group).get("tags", {})
    if mine.get("mcpctl:profile") != name:
        raise CloudError(
            f"log group {group} exists but was not created by mcpctl for '{name}'",
            hint="delete or rename it, or deploy under another name",
        )
    return True


def ensure_log_group(logs: CloudWatchLogsClient, spec: Spec, shape: Any, changes: list[Change]) -> str:
    """Find or create the deployment's log group (kept 30 days); returns its name."""
    group = log_group_name(spec.name)
    if not find_log_group(logs, spec.name):
        logs.create_log_group(logGroupName=group, tags=tags(spec, spec.name, shape))
        logs.put_retention_policy(logGroupName=group, retentionInDays=LOG_RETENTION_DAYS)
        changes.append(Change("log-group", "created", group))
    return group


def find_cluster(ecs: ECSClient, name: str, *, strict: bool = True) -> str | None:
    """The ARN of deployment ``name``'s active cluster, or None."""
    found = ecs.describe_clusters(clusters=[cluster_name(name)], include=["TAGS"])["clusters"]
    active = [c for c in found if c.get("status") == "ACTIVE"]
    if not active:
        return None
    if not is_ours(active[0].get("tags"), name, "key", "value"):
        if not strict:
            return None
        raise CloudError(
            f"ECS cluster {cluster_name(name)} exists but was not created by mcpctl for '{name}'",
            hint="delete or rename it, or deploy under another name",
        )
    return active[0]["clusterArn"]


def ensure_cluster(ecs: ECSClient, spec: EcsSpec, changes: list[Change]) -> str:
    """Find or create the deployment's cluster; returns its ARN."""
    arn = find_cluster(ecs, spec.name)
    if arn is not None:
        return arn
    arn = ecs.create_cluster(
        clusterName=cluster_name(spec.name), tags=tag_list(tags(spec, spec.name, "ecs"), "key", "value")
    )["cluster"]["clusterArn"]
    changes.append(Change("cluster", "created", cluster_name(spec.name)))
    return arn


def task_definition(spec: EcsSpec, *, execution_role: str, task_role: str, secret_arn: str) -> dict[str, Any]:
    """The RegisterTaskDefinition request (without tags) of the deployment."""
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "essential": True,
        "command": server_command(spec.data.uri),
        "portMappings": [{"containerPort": CONTAINER_PORT, "protocol": "tcp"}],
        "secrets": [{"name": API_KEY_ENV, "valueFrom": secret_arn}],
        "healthCheck": {
            "command": ["CMD", "python", "-c", HEALTH_COMMAND],
            "interval": 30,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 60,  # the first start converts the data before /health answers 200
        },
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name(spec.name),
                "awslogs-region": spec.region,
                "awslogs-stream-prefix": CONTAINER_NAME,
            },
        },
    }
    return {
        "family": family_name(spec.name),
        "taskRoleArn": task_role,
        "executionRoleArn": execution_role,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": str(spec.cpu),
        "memory": str(spec.memory),
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "containerDefinitions": [container],
    }


def _contains(have: Any, want: Any) -> bool:
    """Whether the described value ``have`` says everything ``want`` says (AWS adds defaults)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_contains(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(map(_contains, have, want))
    return have == want or str(have) == str(want)


def latest_task_definition(ecs: ECSClient, name: str) -> dict[str, Any] | None:
    """The latest active revision of the deployment's family, or None."""
    from botocore.exceptions import ClientError

    try:
        return dict(ecs.describe_task_definition(taskDefinition=family_name(name))["taskDefinition"])
    except ClientError as exc:
        if error_code(exc) in ("ClientException", "InvalidParameterException"):
            return None  # ECS answers a missing family with a ClientException
        raise


def ensure_task_definition(
    ecs: ECSClient, spec: EcsSpec, request: dict[str, Any], changes: list[Change]
) -> str:
    """Register ``request`` unless the latest active revision already says the same; its ARN."""
    latest = latest_task_definition(ecs, spec.name)
    if latest is not None and latest.get("status") == "ACTIVE" and _contains(latest, request):
        return str(latest["taskDefinitionArn"])
    arn = ecs.register_task_definition(
        **request, tags=tag_list(tags(spec, spec.name, "ecs"), "key", "value")
    )["taskDefinition"]["taskDefinitionArn"]
    changes.append(Change("task-definition", "registered", arn.rsplit("/", 1)[-1]))
    return arn


def task_definition_arns(ecs: ECSClient, name: str, status: Any = "ACTIVE") -> list[str]:
    """Every revision of the deployment's family in ``status``."""
    arns: list[str] = []
    pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family_name(name), status=status)
    for page in pages:
        arns += [
            a
            for a in page["taskDefinitionArns"]
            if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family_name(name)
        ]
    return arns
