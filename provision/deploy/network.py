"""Who may reach a deployment: the default VPC's subnets and the two security groups of an ECS service.

The load balancer's group admits the listener port from the allowed range only; the tasks' group
admits the container port from the load balancer's group only, so a task is never reachable directly.
Rules are synced authorize-first, revoke-second, as for the EC2 host's SSH rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.deploy.model import (
    CONTAINER_PORT,
    Change,
    EcsSpec,
    aws_name,
    is_ours,
    tag_list,
    tags,
)
from provision.ec2.network import default_vpc
from provision.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.type_defs import IpPermissionTypeDef


def default_subnets(ec2: EC2Client, region: str) -> tuple[str, list[str]]:
    """The default VPC and one default subnet per availability zone (a load balancer needs two).

    Raises:
        CloudError: no default VPC, or its default subnets cover fewer than two zones.
    """
    vpc = default_vpc(ec2, region)
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in sorted(subnets, key=lambda s: s["SubnetId"])}
    if len(by_zone) < 2:
        raise CloudError(
            f"the default VPC {vpc} in {region} has default subnets in fewer than two zones",
            hint="a load balancer needs two: aws ec2 create-default-subnet --availability-zone ZONE "
            f"--region {region}",
        )
    return vpc, [by_zone[zone] for zone in sorted(by_zone)]


def alb_group_name(name: str) -> str:
    """The load balancer's security group."""
    return aws_name(name, "alb")


def task_group_name(name: str) -> str:
    """The tasks' security group."""
    return aws_name(name, "tasks")


def find_group(ec2: EC2Client, group_name: str, vpc: str, name: str) -> dict[str, Any] | None:
    """The security group ``group_name`` in ``vpc`` if it is deployment ``name``'s, else None.

    Raises:
        CloudError: a group of that name exists without the deployment's tag.
    """
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [group_name]}, {"Name": "vpc-id", "Values": [vpc]}]
    )["SecurityGroups"]
    if not groups:
        return None
    if not is_ours(groups[0].get("Tags"), name):
        raise CloudError(
            f"security group {group_name} exists in {vpc} but was not created by mcpctl for '{name}'",
            hint="delete or rename it, or deploy under another name",
        )
    return dict(groups[0])


def ensure_group(
    ec2: EC2Client, spec: EcsSpec, group_name: str, vpc: str, purpose: str, changes: list[Change]
) -> dict[str, Any]:
    """Find or create a tagged security group; returns its description (``GroupId``, ``IpPermissions``)."""
    found = find_group(ec2, group_name, vpc, spec.name)
    if found is not None:
        return found
    sg = ec2.create_security_group(
        GroupName=group_name,
        Description=f"mcpctl {spec.name}: {purpose}",
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": tag_list(tags(spec, spec.name, "ecs"))}
        ],
    )["GroupId"]
    changes.append(Change("security-group", "created", f"{group_name} ({sg})"))
    return {"GroupId": sg, "IpPermissions": []}


def listener_port(spec: EcsSpec) -> int:
    """443 for the HTTPS listener; 80 for an internal plain-HTTP test deployment."""
    return 80 if spec.insecure_http else 443


def alb_rule(spec: EcsSpec, cidr: str) -> IpPermissionTypeDef:
    """The one ingress rule of the load balancer's group: the listener port from ``cidr``."""
    port = listener_port(spec)
    rule: IpPermissionTypeDef = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    note = f"mcpctl {spec.name}: clients"
    if ":" in cidr:
        rule["Ipv6Ranges"] = [{"CidrIpv6": cidr, "Description": note}]
    else:
        rule["IpRanges"] = [{"CidrIp": cidr, "Description": note}]
    return rule


def task_rule(alb_sg: str) -> IpPermissionTypeDef:
    """The one ingress rule of the tasks' group: the container port from the load balancer's group."""
    return {
        "IpProtocol": "tcp",
        "FromPort": CONTAINER_PORT,
        "ToPort": CONTAINER_PORT,
        "UserIdGroupPairs": [{"GroupId": alb_sg, "Description": "mcpctl: the load balancer only"}],
    }


def _key(p: Any) -> set[tuple[Any, ...]]:
    """Each (protocol, from, to, source) grant of a permission, descriptions ignored."""
    head = (p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"))
    out = {(*head, r["CidrIp"]) for r in p.get("IpRanges", [])}
    out |= {(*head, r["CidrIpv6"]) for r in p.get("Ipv6Ranges", [])}
    out |= {(*head, g["GroupId"]) for g in p.get("UserIdGroupPairs", [])}
    out |= {(*head, x["PrefixListId"]) for x in p.get("PrefixListIds", [])}
    return out


def _permission(grant: tuple[Any, ...]) -> IpPermissionTypeDef:
    proto, low, high, source = grant
    p: IpPermissionTypeDef = {"IpProtocol": proto}
    if low is not None:
        p["FromPort"], p["ToPort"] = low, high
    if str(source).startswith("sg-"):
        p["UserIdGroupPairs"] = [{"GroupId": source}]
    elif str(source).startswith("pl-"):
        p["PrefixListIds"] = [{"PrefixListId": source}]
    elif ":" in str(source):
        p["Ipv6Ranges"] = [{"CidrIpv6": source}]
    else:
        p["IpRanges"] = [{"CidrIp": source}]
    return p


def sync_rule(
    ec2: EC2Client,
    group: dict[str, Any],
    wanted: IpPermissionTypeDef,
    changes: list[Change],
) -> None:
    """Make ``wanted`` the group's only ingress grant: authorize it first, then revoke the rest."""
    want = _key(wanted)
    have = (
        set().union(*(_key(p) for p in group.get("IpPermissions", [])))
        if group.get("IpPermissions")
        else set()
    )
    sg = group["GroupId"]
    if not want <= have:
        ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[wanted])
        for grant in sorted(want - have, key=str):
            changes.append(Change("ingress", "authorized", f"{sg} tcp/{grant[1]} from {grant[3]}"))
    stale = sorted(have - want, key=str)
    if stale:
        ec2.revoke_security_group_ingress(GroupId=sg, IpPermissions=[_permission(g) for g in stale])
        for grant in stale:
            changes.append(Change("ingress", "revoked", f"{sg} {grant[0]}/{grant[1]} from {grant[3]}"))
