"""What the deploy tests share: specs, a certificate, request capture, and readers of the moto account."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.deploy import DeployClients, EcsSpec, LambdaSpec, parse_s3_uri
from provision.deploy.model import TAG_PROFILE
from tests.provision.ec2.helpers import _hook

REGION = "us-east-1"
MY_CIDR = "203.0.113.7/32"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mcp-sales:1.0"
DATA = "s3://sales-bucket/exports/sales.parquet"


@dataclass
class AwsAccount:
    mock: Any
    clients: DeployClients


def certificate(c: DeployClients) -> str:
    """An ACM certificate ARN in the moto account (the HTTPS listener needs one)."""
    import boto3

    acm = boto3.client("acm", region_name=REGION)
    return acm.request_certificate(DomainName="mcp.example.com")["CertificateArn"]


def ecs_spec(c: DeployClients | None = None, **kw: Any) -> EcsSpec:
    values: dict[str, Any] = {
        "name": "sales",
        "region": REGION,
        "image": IMAGE,
        "data": parse_s3_uri(DATA),
        "replicas": 2,
        "min_replicas": 1,
        "max_replicas": 4,
        "allowed_cidr": MY_CIDR,
        "owner": "ann@laptop",
    }
    if c is not None and "cert_arn" not in kw and not kw.get("insecure_http"):
        values["cert_arn"] = certificate(c)
    values.update(kw)
    return EcsSpec(**values)


def lambda_spec(**kw: Any) -> LambdaSpec:
    values: dict[str, Any] = {
        "name": "sales",
        "region": REGION,
        "image": IMAGE,
        "data": parse_s3_uri(DATA),
        "owner": "ann@laptop",
    }
    values.update(kw)
    return LambdaSpec(**values)


def capture(client: Any, operation: str) -> list[dict[str, Any]]:
    """Record the parameters of every ``operation`` request sent through ``client``."""
    seen: list[dict[str, Any]] = []

    def handler(params: dict[str, Any], **_: Any) -> None:
        seen.append(json.loads(json.dumps(params, default=str)))

    service = client.meta.service_model.service_id.hyphenize()
    _hook(client, f"provide-client-params.{service}.{operation}", handler)
    return seen


def count_calls(client: Any, prefix: str | tuple[str, ...] = "Create") -> list[str]:
    """Record the name of every operation starting with ``prefix`` (one of) sent through ``client``."""
    seen: list[str] = []

    def handler(model: Any, **_: Any) -> None:
        if model.name.startswith(prefix):
            seen.append(model.name)

    service = client.meta.service_model.service_id.hyphenize()
    _hook(client, f"before-call.{service}", handler)
    return seen


def key_file(keys: Path, name: str = "sales") -> Path:
    return keys / f"{name}.api-key"


def tagged_everywhere(c: DeployClients, name: str = "sales") -> list[str]:
    """Every resource tagged for ``name`` that moto lists, read independently of our teardown."""
    found: list[str] = []
    groups = c.ec2.describe_security_groups(Filters=[{"Name": f"tag:{TAG_PROFILE}", "Values": [name]}])
    found += [g["GroupId"] for g in groups["SecurityGroups"]]
    for lb in c.elbv2.describe_load_balancers()["LoadBalancers"]:
        found.append(lb["LoadBalancerName"])
    for tg in c.elbv2.describe_target_groups()["TargetGroups"]:
        found.append(tg["TargetGroupName"])
    clusters = c.ecs.describe_clusters(clusters=c.ecs.list_clusters()["clusterArns"])["clusters"]
    found += [cl["clusterName"] for cl in clusters if cl["status"] == "ACTIVE"]
    found += c.ecs.list_task_definitions(status="ACTIVE")["taskDefinitionArns"]
    found += [s["Name"] for s in c.secrets.list_secrets()["SecretList"]]
    found += [g["logGroupName"] for g in c.logs.describe_log_groups()["logGroups"]]
    found += [r["RoleName"] for r in c.iam.list_roles()["Roles"] if r["RoleName"].startswith("mcpctl-")]
    found += [f["FunctionName"] for f in c.lambda_.list_functions()["Functions"]]
    targets = c.autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    found += [t["ResourceId"] for t in targets]
    return found


Hook = Callable[..., Any]
