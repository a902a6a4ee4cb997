"""Verified teardown of a deployment: remove everything tagged for it, then check nothing is left.

Resources go in dependency order (scaling, service, task definitions, cluster, load balancer, target
group, security groups, function, secret, log group, roles), each found by its name *and* our tag, so
a same-named resource someone else made is never touched. AWS releases some of them lazily (a deleted
service's network interfaces hold the security groups for a few minutes), so deletes that AWS refuses
for a dependency are retried under one deadline; the final check lists whatever is still there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.deploy import access, apikey, balancer, ecs, function, service
from provision.deploy.aws_errors import error_code, translated
from provision.deploy.model import TAG_SHAPE, DeployClients, PhaseCallback, log_group_name, silent
from provision.ec2.model import TAG_PROFILE, Pacing
from provision.ec2.network import delete_security_group
from provision.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client

_ROLES = (access.execution_role_name, access.task_role_name, access.lambda_role_name)


def _retry(action: Callable[[], Any], codes: set[str], pacing: Pacing, deadline: float) -> None:
    from botocore.exceptions import ClientError

    while True:
        try:
            action()
            return
        except ClientError as exc:
            if error_code(exc) not in codes or pacing.clock() >= deadline:
                raise
        pacing.sleep(pacing.poll_s)


def tagged_groups(ec2: EC2Client, name: str) -> list[dict[str, Any]]:
    """The security groups of deployment ``name`` (in any VPC)."""
    filters: Any = [
        {"Name": f"tag:{TAG_PROFILE}", "Values": [name]},
        {"Name": "tag-key", "Values": [TAG_SHAPE]},
    ]
    return [dict(g) for g in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]]


def _remove_service(c: DeployClients, name: str, pacing: Pacing, deadline: float, removed: list[str]) -> None:
    cluster = ecs.cluster_name(name)
    resource = service.scaling_resource(cluster, name)
    targets = c.autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource])
    if targets["ScalableTargets"]:
        c.autoscaling.deregister_scalable_target(
            ServiceNamespace="ecs", ResourceId=resource, ScalableDimension=service.DIMENSION
        )
        removed.append(f"autoscaling {resource}")
    if ecs.find_cluster(c.ecs, name, strict=False) is None:
        return
    if service.find_service(c.ecs, cluster, name) is not None:
        c.ecs.update_service(cluster=cluster, service=service.service_name(name), desiredCount=0)
        c.ecs.delete_service(cluster=cluster, service=service.service_name(name), force=True)
        removed.append(f"service {service.service_name(name)}")
        while service.find_service(c.ecs, cluster, name) is not None:
            if pacing.clock() >= deadline:
                break  # reported by the final check
            pacing.sleep(pacing.poll_s)


def _remove_task_definitions(c: DeployClients, name: str, removed: list[str]) -> None:
    for arn in ecs.task_definition_arns(c.ecs, name, "ACTIVE"):
        c.ecs.deregister_task_definition(taskDefinition=arn)
        removed.append(f"task definition {arn.rsplit('/', 1)[-1]}")
    inactive = ecs.task_definition_arns(c.ecs, name, "INACTIVE")
    for start in range(0, len(inactive), 10):  # DeleteTaskDefinitions takes at most 10
        c.ecs.delete_task_definitions(taskDefinitions=inactive[start : start + 10])


def _remove_balancer(
    c: DeployClients, name: str, pacing: Pacing, deadline: float, removed: list[str]
) -> None:
    lb = balancer.find_balancer(c.elbv2, name, strict=False)
    if lb is not None:
        c.elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        removed.append(f"load balancer {balancer.balancer_name(name)}")
    tg = balancer.find_target_group(c.elbv2, name, strict=False)
    if tg is not None:
        arn = tg["TargetGroupArn"]
        _retry(lambda: c.elbv2.delete_target_group(TargetGroupArn=arn), {"ResourceInUse"}, pacing, deadline)
        removed.append(f"target group {balancer.target_group_name(name)}")


def _remove_groups(c: DeployClients, name: str, pacing: Pacing, deadline: float, removed: list[str]) -> None:
    groups = tagged_groups(c.ec2, name)
    for group in groups:  # the tasks' group refers to the load balancer's: drop the rules first
        if group.get("IpPermissions"):
            c.ec2.revoke_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=group["IpPermissions"]
            )
    for group in groups:
        delete_security_group(c.ec2, group["GroupId"], pacing, deadline)
        removed.append(f"security group {group['GroupId']}")


def destroy(
    name: str,
    region: str,
    *,
    clients: DeployClients,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing,
) -> tuple[str, ...]:
    """Remove every resource of deployment ``name`` (either shape) and verify none is left.

    Running it again when everything is gone is a no-op. Returns what was removed.

    Raises:
        CloudError: AWS failed, or something tagged for the deployment is still there afterwards.
    """
    report = on_phase or silent
    deadline = pacing.clock() + pacing.timeout_s
    removed: list[str] = []
    failures: list[CloudError] = []
    c = clients

    def step(action: Callable[[], None]) -> None:
        # One refusal must not stop the rest: everything else is still removed, and the final check
        # names what is left.
        try:
            with translated(region):
                action()
        except CloudError as exc:
            failures.append(exc)

    def remove_function() -> None:
        if function.delete_function(c.lambda_, name):
            removed.append(f"function {function.function_name(name)}")

    def remove_cluster() -> None:
        if ecs.find_cluster(c.ecs, name, strict=False) is not None:
            cluster = ecs.cluster_name(name)
            codes = {"ClusterContainsServicesException", "ClusterContainsTasksException"}
            _retry(lambda: c.ecs.delete_cluster(cluster=cluster), codes, pacing, deadline)
            removed.append(f"cluster {cluster}")

    def remove_secret_and_logs() -> None:
        secret = apikey.delete_secret(c.secrets, name)
        if secret:
            removed.append(f"secret {secret}")
        if _log_group_is_ours(c, name):
            c.logs.delete_log_group(logGroupName=log_group_name(name))
            removed.append(f"log group {log_group_name(name)}")

    def remove_roles() -> None:
        for role_name in _ROLES:
            if access.delete_role(c.iam, role_name(name), name):
                removed.append(f"IAM role {role_name(name)}")

    step(remove_function)
    step(lambda: _remove_service(c, name, pacing, deadline, removed))
    step(lambda: _remove_task_definitions(c, name, removed))
    step(remove_cluster)
    step(lambda: _remove_balancer(c, name, pacing, deadline, removed))
    step(lambda: _remove_groups(c, name, pacing, deadline, removed))
    step(remove_secret_and_logs)
    step(remove_roles)
    for item in removed:
        report("removed", item)
    with translated(region):
        while left := leftovers(c, name):
            if pacing.clock() >= deadline or failures:
                cause = f" ({failures[0].message})" if failures else ""
                raise CloudError(
                    f"after destroy, AWS still lists for '{name}' in {region}: {', '.join(left)}{cause}",
                    hint=f"re-run `mcpctl destroy {name}` in a minute, or remove them in the AWS console",
                )
            pacing.sleep(pacing.poll_s)  # describe calls are eventually consistent after deletes
    if failures:
        raise failures[0]
    return tuple(removed)


def _log_group_is_ours(c: DeployClients, name: str) -> bool:
    try:
        return ecs.find_log_group(c.logs, name)
    except CloudError:
        return False  # a same-named group without our tag is not ours to delete


def leftovers(c: DeployClients, name: str) -> list[str]:
    """Everything of deployment ``name`` AWS still lists (empty: nothing is left)."""
    from botocore.exceptions import ClientError

    left: list[str] = []
    cluster = ecs.find_cluster(c.ecs, name, strict=False)
    if cluster is not None:
        left.append(f"cluster {ecs.cluster_name(name)}")
        if service.find_service(c.ecs, ecs.cluster_name(name), name) is not None:
            left.append(f"service {service.service_name(name)}")
    left += [
        f"task definition {a.rsplit('/', 1)[-1]}" for a in ecs.task_definition_arns(c.ecs, name, "ACTIVE")
    ]
    resource = service.scaling_resource(ecs.cluster_name(name), name)
    if c.autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource])[
        "ScalableTargets"
    ]:
        left.append(f"autoscaling {resource}")
    if balancer.find_balancer(c.elbv2, name, strict=False) is not None:
        left.append(f"load balancer {balancer.balancer_name(name)}")
    if balancer.find_target_group(c.elbv2, name, strict=False) is not None:
        left.append(f"target group {balancer.target_group_name(name)}")
    left += [f"security group {g['GroupId']}" for g in tagged_groups(c.ec2, name)]
    secrets = c.secrets.list_secrets(
        Filters=[{"Key": "tag-value", "Values": [name]}], IncludePlannedDeletion=False
    )
    left += [
        f"secret {s['Name']}"
        for s in secrets["SecretList"]
        if any(t.get("Key") == TAG_PROFILE and t.get("Value") == name for t in s.get("Tags", []))
    ]
    if _log_group_is_ours(c, name):
        left.append(f"log group {log_group_name(name)}")
    for role_name in _ROLES:
        try:
            role_tags = c.iam.list_role_tags(RoleName=role_name(name))["Tags"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            continue
        if any(t.get("Key") == TAG_PROFILE and t.get("Value") == name for t in role_tags):
            left.append(f"IAM role {role_name(name)}")
    try:
        fn = c.lambda_.get_function(FunctionName=function.function_name(name))
        if (fn.get("Tags") or {}).get(TAG_PROFILE) == name:
            left.append(f"function {function.function_name(name)}")
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
    return left
