"""The application load balancer in front of the tasks: the ALB, its listener and the target group.

The listener is HTTPS on 443 with an ACM certificate and a TLS 1.2+ policy; the only alternative is
an *internal* load balancer with plain HTTP on 80 for tests and private networks. The target group
asks every task ``GET /health`` and only a 200 counts as healthy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from provision.deploy.aws_errors import error_code
from provision.deploy.model import (
    CONTAINER_PORT,
    HEALTH_PATH,
    TLS_POLICY,
    Change,
    EcsSpec,
    aws_name,
    is_ours,
    tag_list,
    tags,
)
from provision.deploy.network import listener_port
from provision.errors import CloudError, OptionError

if TYPE_CHECKING:
    from mypy_boto3_acm.client import ACMClient
    from mypy_boto3_elbv2.client import ElasticLoadBalancingv2Client
    from mypy_boto3_elbv2.type_defs import ActionTypeDef

# How the target group decides: every 15 s, healthy after 2 answers, unhealthy after 3 misses.
HEALTH_CHECK = {
    "HealthCheckProtocol": "HTTP",
    "HealthCheckPath": HEALTH_PATH,
    "HealthCheckIntervalSeconds": 15,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 3,
    "Matcher": {"HttpCode": "200"},
}


def check_certificate(acm: ACMClient, spec: EcsSpec) -> None:
    """Refuse a certificate the listener could not use, before anything is created.

    Raises:
        OptionError: the certificate belongs to another region than the load balancer.
        CloudError: it does not exist in this account, or is not issued (yet).
    """
    from botocore.exceptions import ClientError

    if spec.cert_arn is None:
        return
    parts = spec.cert_arn.split(":")
    if len(parts) < 6 or parts[3] != spec.region:
        raise OptionError(
            f"--cert-arn {spec.cert_arn} is not a certificate of region {spec.region}",
            hint=f"a load balancer uses certificates of its own region: request or import one in "
            f"{spec.region}",
        )
    try:
        status = acm.describe_certificate(CertificateArn=spec.cert_arn)["Certificate"].get("Status")
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        raise CloudError(
            f"ACM has no certificate {spec.cert_arn} in this account",
            hint="pass the ARN `aws acm list-certificates` shows for your domain",
        ) from exc
    if status != "ISSUED":
        raise CloudError(
            f"certificate {spec.cert_arn} is {status}, not ISSUED",
            hint="finish its validation (the DNS record ACM asks for), then re-run",
        )


def balancer_name(name: str) -> str:
    """The load balancer's name (at most 32 characters)."""
    return aws_name(name, limit=32, strict=True)


def target_group_name(name: str) -> str:
    """The target group's name (at most 32 characters)."""
    return aws_name(name, "tg", limit=32, strict=True)


def _ours(elbv2: ElasticLoadBalancingv2Client, arn: str, name: str) -> bool:
    described = elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]
    return bool(described) and is_ours(described[0].get("Tags"), name)


def find_target_group(
    elbv2: ElasticLoadBalancingv2Client, name: str, *, strict: bool = True
) -> dict[str, Any] | None:
    """Deployment ``name``'s target group, or None (``strict``: a same-named foreign one is an error)."""
    from botocore.exceptions import ClientError

    try:
        found = elbv2.describe_target_groups(Names=[target_group_name(name)])["TargetGroups"]
    except ClientError as exc:
        if error_code(exc) == "TargetGroupNotFound":
            return None
        raise
    if not found:
        return None
    if not _ours(elbv2, found[0]["TargetGroupArn"], name):
        if not strict:
            return None
        raise CloudError(
            f"target group {target_group_name(name)} exists but was not created by mcpctl for '{name}'",
            hint="delete or rename it, or deploy under another name",
        )
    return dict(found[0])


def find_balancer(
    elbv2: ElasticLoadBalancingv2Client, name: str, *, strict: bool = True
) -> dict[str, Any] | None:
    """Deployment ``name``'s load balancer, or None (``strict``: a same-named foreign one is an error)."""
    from botocore.exceptions import ClientError

    try:
        found = elbv2.describe_load_balancers(Names=[balancer_name(name)])["LoadBalancers"]
    except ClientError as exc:
        if error_code(exc) == "LoadBalancerNotFound":
            return None
        raise
    if not found:
        return None
    if not _ours(elbv2, found[0]["LoadBalancerArn"], name):
        if not strict:
            return None
        raise CloudError(
            f"load balancer {balancer_name(name)} exists but was not created by mcpctl for '{name}'",
            hint="delete or rename it, or deploy under another name",
        )
    return dict(found[0])


def ensure_target_group(
    elbv2: ElasticLoadBalancingv2Client, spec: EcsSpec, vpc: str, changes: list[Change]
) -> str:
    """Find or create the target group (IP targets on the container port, checking /health)."""
    found = find_target_group(elbv2, spec.name)
    if found is not None:
        if found.get("HealthCheckPath") != HEALTH_PATH or found.get("Matcher") != HEALTH_CHECK["Matcher"]:
            elbv2.modify_target_group(TargetGroupArn=found["TargetGroupArn"], **HEALTH_CHECK)  # type: ignore[arg-type]
            changes.append(Change("target-group", "updated", f"{target_group_name(spec.name)} health check"))
        return str(found["TargetGroupArn"])
    arn = elbv2.create_target_group(
        Name=target_group_name(spec.name),
        Protocol="HTTP",
        Port=CONTAINER_PORT,
        VpcId=vpc,
        TargetType="ip",
        Tags=tag_list(tags(spec, spec.name, "ecs")),
        **HEALTH_CHECK,  # type: ignore[arg-type]
    )["TargetGroups"][0]["TargetGroupArn"]
    changes.append(Change("target-group", "created", target_group_name(spec.name)))
    return arn


def ensure_balancer(
    elbv2: ElasticLoadBalancingv2Client, spec: EcsSpec, subnets: list[str], sg: str, changes: list[Change]
) -> tuple[str, str]:
    """Find or create the load balancer; returns its ARN and DNS name.

    Raises:
        CloudError: the existing one is internet-facing and the spec wants an internal one (or back).
    """
    scheme: Literal["internal", "internet-facing"] = "internal" if spec.insecure_http else "internet-facing"
    found = find_balancer(elbv2, spec.name)
    if found is not None:
        if found.get("Scheme") != scheme:
            raise CloudError(
                f"load balancer {balancer_name(spec.name)} is {found.get('Scheme')}, "
                f"this deployment wants {scheme}",
                hint=f"a load balancer cannot change scheme: `mcpctl destroy {spec.name}` first",
            )
        return str(found["LoadBalancerArn"]), str(found["DNSName"])
    lb = elbv2.create_load_balancer(
        Name=balancer_name(spec.name),
        Subnets=subnets,
        SecurityGroups=[sg],
        Scheme=scheme,
        Type="application",
        IpAddressType="ipv4",
        Tags=tag_list(tags(spec, spec.name, "ecs")),
    )["LoadBalancers"][0]
    changes.append(Change("load-balancer", "created", f"{balancer_name(spec.name)} ({scheme})"))
    return lb["LoadBalancerArn"], lb["DNSName"]


def listener_request(spec: EcsSpec, lb_arn: str, tg_arn: str) -> dict[str, Any]:
    """The CreateListener request: HTTPS:443 with the certificate, or HTTP:80 for an internal test."""
    actions: list[ActionTypeDef] = [{"Type": "forward", "TargetGroupArn": tg_arn}]
    request: dict[str, Any] = {
        "LoadBalancerArn": lb_arn,
        "Port": listener_port(spec),
        "DefaultActions": actions,
    }
    if spec.insecure_http:
        request["Protocol"] = "HTTP"
    else:
        request["Protocol"] = "HTTPS"
        request["Certificates"] = [{"CertificateArn": spec.cert_arn}]
        request["SslPolicy"] = TLS_POLICY
    return request


def ensure_listener(
    elbv2: ElasticLoadBalancingv2Client, spec: EcsSpec, lb_arn: str, tg_arn: str, changes: list[Change]
) -> None:
    """Make the listener the spec wants the load balancer's only one."""
    request = listener_request(spec, lb_arn, tg_arn)
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
    mine = [item for item in listeners if item.get("Port") == request["Port"]]
    for other in listeners:
        if other not in mine:
            elbv2.delete_listener(ListenerArn=other["ListenerArn"])
            changes.append(Change("listener", "deleted", f"{other.get('Protocol')}:{other.get('Port')}"))
    if not mine:
        elbv2.create_listener(**request, Tags=tag_list(tags(spec, spec.name, "ecs")))
        changes.append(Change("listener", "created", f"{request['Protocol']}:{request['Port']}"))
        return
    have = mine[0]
    certs = [c.get("CertificateArn") for c in have.get("Certificates", [])]
    wanted = [c["CertificateArn"] for c in request.get("Certificates", [])]
    targets = [a.get("TargetGroupArn") for a in have.get("DefaultActions", [])]
    if have.get("Protocol") != request["Protocol"] or certs != wanted or targets != [tg_arn]:
        update = {k: v for k, v in request.items() if k != "LoadBalancerArn"}
        elbv2.modify_listener(ListenerArn=have["ListenerArn"], **update)
        changes.append(Change("listener", "updated", f"{request['Protocol']}:{request['Port']}"))
