"""Who may reach the instance: the caller's address, the default VPC, the SSH-only security group.

The security group admits exactly one source on TCP 22. :func:`sync_ssh_rule` authorizes the
wanted range first and revokes everything else second, so moving the rule never locks the owner out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from provision.ec2.model import TAG_PROFILE, Change, Ec2Spec, Pacing, PhaseCallback, spec_tags, tag_value
from provision.errors import CloudError, ProfileError

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.type_defs import IpPermissionOutputTypeDef, IpPermissionTypeDef

CHECKIP_URL = "https://checkip.amazonaws.com"
# Narrower than this needs allow_world: a /24 still covers one office or carrier NAT pool.
_MIN_PREFIX = {4: 24, 6: 48}


def normalize_cidr(cidr: str, *, allow_world: bool = False) -> str:
    """Validate an SSH source range; a bare address becomes a /32 (IPv6: /128).

    Raises:
        ProfileError: not an address/range, or wider than /24 (IPv6 /48) without ``allow_world``.
    """
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError as exc:
        raise ProfileError(
            f"{cidr!r} is not an IP address or CIDR range", hint="pass your address, e.g. 203.0.113.7/32"
        ) from exc
    if net.prefixlen < _MIN_PREFIX[net.version] and not allow_world:
        raise ProfileError(
            f"refusing to open SSH to {net} ({net.num_addresses} addresses)",
            hint="use your own address (a /32), or allow wide ranges explicitly (--allow-world)",
        )
    return str(net)


def detect_public_ip(fetch: Callable[[str, float], str] | None = None, timeout_s: float = 3.0) -> str:
    """The caller's public IPv4 address as seen by AWS (``checkip.amazonaws.com``).

    Args:
        fetch: ``(url, timeout) -> body``; defaults to an HTTPS GET (tests inject one).
        timeout_s: give up after this long.

    Raises:
        CloudError: the service is unreachable or answered something that is not an address.
    """
    fetch = fetch or _http_get
    try:
        body = fetch(CHECKIP_URL, timeout_s).strip()
        return str(ipaddress.ip_address(body))
    except (OSError, ValueError) as exc:
        raise CloudError(
            f"could not detect your public IP address via {CHECKIP_URL}",
            hint="pass it explicitly with --ssh-cidr (e.g. 203.0.113.7/32)",
        ) from exc


def _http_get(url: str, timeout_s: float) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        data: bytes = resp.read(64)
    return data.decode("ascii", "replace")


def default_vpc(ec2: EC2Client, region: str) -> str:
    """The id of the region's default VPC.

    Raises:
        CloudError: the region has none.
    """
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise CloudError(
            f"region {region} has no default VPC",
            hint=f"create one: aws ec2 create-default-vpc --region {region}",
        )
    return vpcs[0]["VpcId"]


def find_security_group(
    ec2: EC2Client, spec: Ec2Spec, vpc_id: str
) -> tuple[str | None, list[IpPermissionOutputTypeDef]]:
    """The profile's security group in ``vpc_id`` and its ingress rules, or ``(None, [])``.

    Raises:
        CloudError: a group of that name exists but does not carry the profile's tag.
    """
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [spec.name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    if not groups:
        return None, []
    group = groups[0]
    if tag_value(group.get("Tags", []), TAG_PROFILE) != spec.profile:
        raise CloudError(
            f"security group {spec.name} ({group['GroupId']}) exists in {vpc_id} but was not created "
            "by mcpctl for this profile",
            hint="delete or rename it, or use another profile name",
        )
    return group["GroupId"], list(group.get("IpPermissions", []))


def create_security_group(ec2: EC2Client, spec: Ec2Spec, vpc_id: str) -> str:
    """Create the profile's tagged security group (no ingress yet) and return its id."""
    return ec2.create_security_group(
        GroupName=spec.name,
        Description=f"mcpctl {spec.profile}: SSH from the owner's address only",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": spec_tags(spec)}],
    )["GroupId"]


def delete_security_group(ec2: EC2Client, sg_id: str, pacing: Pacing, deadline: float | None = None) -> None:
    """Delete a security group, retrying while a just-terminated instance still holds it.

    Raises:
        botocore.exceptions.ClientError: AWS refused, or the group stayed in use past the deadline.
    """
    from botocore.exceptions import ClientError

    end = deadline if deadline is not None else pacing.clock() + pacing.timeout_s
    while True:
        try:
            ec2.delete_security_group(GroupId=sg_id)
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "InvalidGroup.NotFound":
                return
            # A just-terminated instance's network interface holds the group for a little while.
            if code != "DependencyViolation" or pacing.clock() >= end:
                raise
        pacing.sleep(pacing.poll_s)


def split_rules(
    perms: Sequence[IpPermissionOutputTypeDef], cidr: str
) -> tuple[bool, list[IpPermissionTypeDef]]:
    """(is our exact rule present, every other ingress grant, to be revoked)."""
    have, stale = False, []
    for p in perms:
        port22 = p.get("IpProtocol") == "tcp" and p.get("FromPort") == 22 and p.get("ToPort") == 22
        v4 = [r["CidrIp"] for r in p.get("IpRanges", []) if "CidrIp" in r]
        v6 = [r["CidrIpv6"] for r in p.get("Ipv6Ranges", []) if "CidrIpv6" in r]
        if port22 and cidr in v4 + v6:
            have = True
            v4, v6 = [c for c in v4 if c != cidr], [c for c in v6 if c != cidr]
        groups = [g["GroupId"] for g in p.get("UserIdGroupPairs", []) if "GroupId" in g]
        lists = [x["PrefixListId"] for x in p.get("PrefixListIds", []) if "PrefixListId" in x]
        if not (v4 or v6 or groups or lists):
            continue
        out: IpPermissionTypeDef = {"IpProtocol": p.get("IpProtocol", "-1")}
        if "FromPort" in p:
            out["FromPort"] = p["FromPort"]
        if "ToPort" in p:
            out["ToPort"] = p["ToPort"]
        if v4:
            out["IpRanges"] = [{"CidrIp": c} for c in v4]
        if v6:
            out["Ipv6Ranges"] = [{"CidrIpv6": c} for c in v6]
        if groups:
            out["UserIdGroupPairs"] = [{"GroupId": g} for g in groups]
        if lists:
            out["PrefixListIds"] = [{"PrefixListId": x} for x in lists]
        stale.append(out)
    return have, stale


def describe_permission(p: IpPermissionTypeDef) -> str:
    """``tcp/22-22 from 203.0.113.7/32`` for messages and plans."""
    proto = p.get("IpProtocol", "-1")
    port = "all" if proto == "-1" else f"{proto}/{p.get('FromPort')}-{p.get('ToPort')}"
    sources = [r.get("CidrIp", "") for r in p.get("IpRanges", [])]
    sources += [r.get("CidrIpv6", "") for r in p.get("Ipv6Ranges", [])]
    sources += [g.get("GroupId", "") for g in p.get("UserIdGroupPairs", [])]
    sources += [x.get("PrefixListId", "") for x in p.get("PrefixListIds", [])]
    return f"{port} from {', '.join(sources)}"


def sync_ssh_rule(
    ec2: EC2Client, sg_id: str, perms: Sequence[IpPermissionOutputTypeDef], cidr: str, report: PhaseCallback
) -> list[Change]:
    """Make port 22 open to exactly ``cidr``: authorize first, then revoke the rest (no lockout gap)."""
    have, stale = split_rules(perms, cidr)
    changes = []
    if not have:
        rule: IpPermissionTypeDef = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
        note = "mcpctl: SSH from the owner"
        if ipaddress.ip_network(cidr).version == 6:
            rule["Ipv6Ranges"] = [{"CidrIpv6": cidr, "Description": note}]
        else:
            rule["IpRanges"] = [{"CidrIp": cidr, "Description": note}]
        ec2.authorize_security_group_ingress(GroupId=sg_id, IpPermissions=[rule])
        changes.append(Change("ssh-rule", "authorized", f"tcp/22 from {cidr}"))
        report("ssh-rule", f"allowed tcp/22 from {cidr}")
    if stale:
        ec2.revoke_security_group_ingress(GroupId=sg_id, IpPermissions=stale)
        for p in stale:
            changes.append(Change("ssh-rule", "revoked", describe_permission(p)))
            report("ssh-rule", f"revoked {describe_permission(p)}")
    return changes
