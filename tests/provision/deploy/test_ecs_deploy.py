"""deploy ecs against moto: the exact requests, the idempotent re-run, the failure cleanup, destroy."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from provision.deploy import DeployClients, DeployResult, deploy_ecs, destroy_deployment, find_deployment
from provision.deploy.service import wait_stable
from provision.ec2.model import Pacing
from provision.errors import CloudError, OptionError, ProfileError
from tests.provision.deploy.helpers import (
    MY_CIDR,
    capture,
    certificate,
    count_calls,
    ecs_spec,
    key_file,
    tagged_everywhere,
)
from tests.provision.ec2.helpers import _hook, inject_error, inject_reply


def _deploy(cloud: DeployClients, keys: Path, pacing: Pacing, **kw: Any) -> DeployResult:
    return deploy_ecs(ecs_spec(cloud, **kw), clients=cloud, keys=keys, pacing=pacing, wait=False)


def test_first_deploy_sends_the_requests_that_keep_it_private(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    listeners = capture(cloud.elbv2, "CreateListener")
    groups = capture(cloud.elbv2, "CreateTargetGroup")
    tasks = capture(cloud.ecs, "RegisterTaskDefinition")
    scaling = capture(cloud.autoscaling, "RegisterScalableTarget")
    policies = capture(cloud.autoscaling, "PutScalingPolicy")
    result = deploy_ecs(ecs_spec(cloud), clients=cloud, keys=keys, pacing=pacing, wait=False)
    assert result.record.url.startswith("https://") and result.record.url.endswith("/mcp")

    (listener,) = listeners
    assert listener["Protocol"] == "HTTPS" and listener["Port"] == 443
    assert listener["Certificates"][0]["CertificateArn"].startswith("arn:aws:acm:")
    assert listener["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    (group,) = groups
    assert group["HealthCheckPath"] == "/health" and group["Matcher"] == {"HttpCode": "200"}
    assert group["TargetType"] == "ip" and group["Port"] == 8000

    (task,) = tasks
    (container,) = task["containerDefinitions"]
    assert task["networkMode"] == "awsvpc" and task["requiresCompatibilities"] == ["FARGATE"]
    assert [s["name"] for s in container["secrets"]] == ["MCP_API_KEY"]
    assert container["secrets"][0]["valueFrom"].startswith("arn:aws:secretsmanager:")
    key = key_file(keys).read_text().strip()
    assert "environment" not in container and key not in str(task)
    assert "/health" in container["healthCheck"]["command"][-1]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert (
        "--stateless" in container["command"]
        and "s3://sales-bucket/exports/sales.parquet" in container["command"]
    )

    (target,) = scaling
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    (policy,) = policies
    assert policy["PolicyType"] == "TargetTrackingScaling"
    spec = policy["TargetTrackingScalingPolicyConfiguration"]
    assert spec["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"

    svc = cloud.ecs.describe_services(cluster="mcpctl-sales", services=["mcpctl-sales"])["services"][0]
    assert svc["desiredCount"] == 2 and svc["launchType"] == "FARGATE"
    assert stat.S_IMODE(key_file(keys).stat().st_mode) == 0o600


def test_security_groups_admit_the_cidr_to_the_alb_and_only_the_alb_to_tasks(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    _deploy(cloud, keys, pacing)
    groups = {
        g["GroupName"]: g
        for g in cloud.ec2.describe_security_groups(
            Filters=[{"Name": "tag:mcpctl:profile", "Values": ["sales"]}]
        )["SecurityGroups"]
    }
    alb, tasks = groups["mcpctl-sales-alb"], groups["mcpctl-sales-tasks"]
    assert [
        (p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]]) for p in alb["IpPermissions"]
    ] == [(443, 443, [MY_CIDR])]
    (rule,) = tasks["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpRanges"]) == (8000, 8000, [])
    assert [g["GroupId"] for g in rule["UserIdGroupPairs"]] == [alb["GroupId"]]


def test_rerun_converges_and_creates_nothing_twice(cloud: DeployClients, keys: Path, pacing: Pacing) -> None:
    first = deploy_ecs(ecs_spec(cloud), clients=cloud, keys=keys, pacing=pacing, wait=False)
    key = key_file(keys).read_text()
    before = sorted(tagged_everywhere(cloud))
    clients = (cloud.ecs, cloud.elbv2, cloud.ec2, cloud.iam, cloud.secrets, cloud.logs, cloud.autoscaling)
    verbs = ("Create", "Register", "Put", "Authorize", "Revoke", "Modify", "Update", "Delete")
    creates = [count_calls(client, verbs) for client in clients]
    again = deploy_ecs(
        ecs_spec(cloud, cert_arn=first_cert(cloud)), clients=cloud, keys=keys, pacing=pacing, wait=False
    )
    assert [c for calls in creates for c in calls] == []
    assert sorted(tagged_everywhere(cloud)) == before
    assert again.record.url == first.record.url and key_file(keys).read_text() == key


def first_cert(cloud: DeployClients) -> str:
    lb = cloud.elbv2.describe_load_balancers()["LoadBalancers"][0]
    (listener,) = cloud.elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    return str(listener["Certificates"][0]["CertificateArn"])


def test_a_failed_first_deploy_removes_what_it_created(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    inject_error(cloud.ecs, "CreateService", "InvalidParameterException", message="injected")
    with pytest.raises(CloudError, match="deploy of 'sales' failed: AWS CreateService failed") as info:
        _deploy(cloud, keys, pacing)
    assert (
        info.value.hint is not None and "everything this first deploy created was removed" in info.value.hint
    )
    assert tagged_everywhere(cloud) == []
    assert find_deployment("sales") is None


def test_a_failed_rerun_keeps_the_running_deployment(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    _deploy(cloud, keys, pacing)
    before = sorted(tagged_everywhere(cloud))
    inject_error(cloud.autoscaling, "RegisterScalableTarget", "AccessDeniedException")
    with pytest.raises(CloudError, match=r"AWS denied application-autoscaling:RegisterScalableTarget"):
        _deploy(cloud, keys, pacing, min_replicas=2)
    assert sorted(tagged_everywhere(cloud)) == before


def test_destroy_removes_everything_tagged_and_the_local_files(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    result = deploy_ecs(ecs_spec(cloud), clients=cloud, keys=keys, pacing=pacing, wait=False)
    assert result.record_path.exists() and key_file(keys).exists()
    teardown = destroy_deployment("sales", clients_for=lambda _r: cloud, keys=keys, pacing=pacing)
    assert any(item.startswith("load balancer") for item in teardown.aws)
    assert any(item.startswith("service") for item in teardown.aws)
    assert tagged_everywhere(cloud) == []
    assert not key_file(keys).exists() and not result.record_path.exists()
    with pytest.raises(ProfileError, match="no deployment named 'sales'"):
        destroy_deployment("sales", clients_for=lambda _r: cloud, keys=keys, pacing=pacing)


def test_destroy_says_what_is_left_when_aws_keeps_something(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    _deploy(cloud, keys, pacing)
    inject_error(cloud.ec2, "DeleteSecurityGroup", "DependencyViolation")
    with pytest.raises(
        CloudError, match=r"AWS still lists for 'sales' in us-east-1: security group sg-"
    ) as info:
        destroy_deployment("sales", clients_for=lambda _r: cloud, keys=keys, pacing=pacing)
    assert info.value.hint and "re-run `mcpctl destroy sales`" in info.value.hint
    assert "DependencyViolation" in info.value.message
    assert not any(item.startswith("mcpctl-sales") and "tg" in item for item in tagged_everywhere(cloud))
    assert key_file(keys).exists() and find_deployment("sales") is not None  # kept for the re-run
    groups = [g for g in tagged_everywhere(cloud) if g.startswith("sg-")]
    assert len(groups) == 2


def test_destroy_leaves_same_named_resources_without_our_tag(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    _deploy(cloud, keys, pacing)
    cloud.iam.create_role(RoleName="mcpctl-other-task", AssumeRolePolicyDocument="{}")
    cloud.iam.create_role(RoleName="mcpctl-sales-fn", AssumeRolePolicyDocument="{}")  # same name, not ours
    destroy_deployment("sales", clients_for=lambda _r: cloud, keys=keys, pacing=pacing)
    roles = {r["RoleName"] for r in cloud.iam.list_roles()["Roles"]}
    assert {"mcpctl-other-task", "mcpctl-sales-fn"} <= roles


def test_a_foreign_resource_with_our_name_stops_the_deploy_before_anything_is_created(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    cloud.secrets.create_secret(Name="mcpctl/sales/api-key", SecretString="someone else's")
    with pytest.raises(CloudError, match="was not created by mcpctl for 'sales'"):
        _deploy(cloud, keys, pacing)
    assert [s["Name"] for s in cloud.secrets.list_secrets()["SecretList"]] == ["mcpctl/sales/api-key"]
    assert cloud.elbv2.describe_load_balancers()["LoadBalancers"] == []


def test_insecure_internal_listener_is_plain_http_on_an_internal_balancer(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    listeners = capture(cloud.elbv2, "CreateListener")
    result = deploy_ecs(ecs_spec(insecure_http=True), clients=cloud, keys=keys, pacing=pacing, wait=False)
    assert listeners[0]["Protocol"] == "HTTP" and listeners[0]["Port"] == 80
    assert "Certificates" not in listeners[0]
    (lb,) = cloud.elbv2.describe_load_balancers()["LoadBalancers"]
    assert lb["Scheme"] == "internal" and result.record.url.startswith("http://")


def test_the_cidr_moves_authorize_first_then_revoke(cloud: DeployClients, keys: Path, pacing: Pacing) -> None:
    first = deploy_ecs(ecs_spec(cloud), clients=cloud, keys=keys, pacing=pacing, wait=False)
    del first
    again = _deploy(cloud, keys, pacing, cert_arn=first_cert(cloud), allowed_cidr="198.51.100.9/32")
    assert [(c.action, c.detail.split(" ", 1)[1]) for c in again.changes if c.resource == "ingress"] == [
        ("authorized", "tcp/443 from 198.51.100.9/32"),
        ("revoked", "tcp/443 from 203.0.113.7/32"),
    ]


def test_wait_reports_a_failed_rollout_with_the_services_event(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    reply = {
        "services": [
            {
                "serviceName": "mcpctl-sales",
                "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/mcpctl-sales/mcpctl-sales",
                "status": "ACTIVE",
                "desiredCount": 2,
                "tags": [{"key": "mcpctl:profile", "value": "sales"}],
                "deployments": [{"status": "PRIMARY", "runningCount": 0, "rolloutState": "FAILED"}],
                "events": [{"message": "task failed container health checks"}],
            }
        ]
    }
    _deploy(cloud, keys, pacing)
    inject_reply(cloud.ecs, "DescribeServices", reply)
    with pytest.raises(CloudError, match="task failed container health checks"):
        wait_stable(cloud.ecs, "mcpctl-sales", "sales", pacing, lambda _p, _d: None)


def _service_reply(running: int, rollout: str) -> dict[str, Any]:
    return {
        "services": [
            {
                "serviceName": "mcpctl-sales",
                "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/mcpctl-sales/mcpctl-sales",
                "status": "ACTIVE",
                "desiredCount": 2,
                "tags": [{"key": "mcpctl:profile", "value": "sales"}],
                "deployments": [{"status": "PRIMARY", "runningCount": running, "rolloutState": rollout}],
                "events": [{"message": "has started 2 tasks"}],
            }
        ]
    }


def test_wait_returns_once_the_service_runs_its_tasks_and_gives_up_at_the_deadline(
    cloud: DeployClients, pacing: Pacing
) -> None:
    # moto starts no tasks: the states a real service goes through are answered instead.
    phases: list[tuple[str, str]] = []
    reply = _service_reply(2, "COMPLETED")
    calls = inject_reply(cloud.ecs, "DescribeServices", reply)
    wait_stable(cloud.ecs, "mcpctl-sales", "sales", pacing, lambda p, d: phases.append((p, d)))
    assert phases == [("service", "2 task(s) running and healthy")] and calls == [1]
    reply.update(_service_reply(1, "IN_PROGRESS"))  # the handler answers whatever the dict holds
    with pytest.raises(CloudError, match=r"not stable after 120 s \(1/2 running\): has started 2 tasks"):
        wait_stable(cloud.ecs, "mcpctl-sales", "sales", pacing, lambda _p, _d: None)


def test_a_certificate_the_listener_cannot_use_is_refused_before_anything_is_created(
    cloud: DeployClients, keys: Path, pacing: Pacing, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_region = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d"
    with pytest.raises(OptionError, match="is not a certificate of region us-east-1"):
        _deploy(cloud, keys, pacing, cert_arn=other_region)
    missing = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
    with pytest.raises(CloudError, match="ACM has no certificate"):
        _deploy(cloud, keys, pacing, cert_arn=missing)
    monkeypatch.setattr("moto.settings.ACM_VALIDATION_WAIT", 3600)
    pending = certificate(cloud)
    with pytest.raises(CloudError, match="is PENDING_VALIDATION, not ISSUED") as info:
        _deploy(cloud, keys, pacing, cert_arn=pending)
    assert info.value.hint and "validation" in info.value.hint
    assert tagged_everywhere(cloud) == [] and not key_file(keys).exists()


def test_an_interrupted_first_deploy_is_removed_too(cloud: DeployClients, keys: Path, pacing: Pacing) -> None:
    def interrupt(**_: Any) -> None:
        raise KeyboardInterrupt

    _hook(cloud.ecs, "before-call.ecs.CreateService", interrupt, first=True)
    with pytest.raises(KeyboardInterrupt):
        _deploy(cloud, keys, pacing)
    assert tagged_everywhere(cloud) == []
