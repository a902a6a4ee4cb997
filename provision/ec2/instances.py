"""Instances: describe and find them by tag, pick the Ubuntu AMI and architecture, run, start.

Each function does one EC2 conversation and returns plain values; the orchestration (what to do
when, undo on failure, deadlines) is :mod:`provision.ec2`'s.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from provision.ec2.model import (
    AMI_PARAMETER,
    Ec2Instance,
    Ec2Spec,
    Pacing,
    PhaseCallback,
    spec_tags,
    tag_filter,
)
from provision.ec2.wait import wait_state
from provision.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.type_defs import InstanceTypeDef, TagTypeDef
    from mypy_boto3_ssm.client import SSMClient

# Run in another zone rather than fail: newer types are missing from some zones (us-east-1e...).
_NEXT_ZONE_CODES = {"InsufficientInstanceCapacity", "Unsupported"}
# Graviton families carry a "g" right after the generation digit: t4g, m7g, c6gn, r8gd, im4gn, is4gen.
_GRAVITON_RE = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)$")


def tagged_instances(ec2: EC2Client, profile: str, states: Sequence[str]) -> list[InstanceTypeDef]:
    """Every instance tagged for ``profile`` in one of ``states``."""
    reply = ec2.describe_instances(
        Filters=[tag_filter(profile), {"Name": "instance-state-name", "Values": list(states)}]
    )
    return [i for r in reply["Reservations"] for i in r.get("Instances", [])]


def describe_raw(ec2: EC2Client, instance_id: str) -> InstanceTypeDef:
    """AWS's description of one instance."""
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    return reply["Reservations"][0]["Instances"][0]


def describe(ec2: EC2Client, instance_id: str) -> Ec2Instance:
    """One instance as an :class:`Ec2Instance`."""
    return to_instance(describe_raw(ec2, instance_id))


def to_instance(i: InstanceTypeDef) -> Ec2Instance:
    """Convert AWS's description into an :class:`Ec2Instance`."""
    groups = [g.get("GroupId", "") for g in i.get("SecurityGroups", [])]
    for eni in i.get("NetworkInterfaces", []):
        groups += [g.get("GroupId", "") for g in eni.get("Groups", [])]
    return Ec2Instance(
        instance_id=i["InstanceId"],
        state=i.get("State", {}).get("Name", "unknown"),
        instance_type=i.get("InstanceType", "?"),
        arch="arm64" if i.get("Architecture") == "arm64" else "amd64",
        public_ip=i.get("PublicIpAddress") or None,
        public_dns=i.get("PublicDnsName") or None,
        availability_zone=i.get("Placement", {}).get("AvailabilityZone"),
        vpc_id=i.get("VpcId"),
        image_id=i.get("ImageId"),
        key_name=i.get("KeyName"),
        security_group_ids=tuple(dict.fromkeys(g for g in groups if g)),
        launch_time=i.get("LaunchTime"),
    )


def arch_for_instance_type(instance_type: str, ec2: EC2Client | None = None) -> str:
    """``arm64`` or ``amd64`` for an instance type: asked from EC2 when possible, else by family name.

    Raises:
        CloudError: EC2 says the type does not exist in this region.
    """
    if ec2 is not None:
        from botocore.exceptions import ClientError

        try:
            info = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]  # type: ignore[list-item]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "InvalidInstanceType":
                raise CloudError(
                    f"{instance_type!r} is not an EC2 instance type in this region",
                    hint="pick another --instance-type, e.g. t3.small or t4g.small",
                ) from exc
            if code not in ("UnauthorizedOperation", "AccessDenied"):
                raise
            info = []  # no permission to ask: the family name decides
        archs = info[0].get("ProcessorInfo", {}).get("SupportedArchitectures", []) if info else []
        if "arm64" in archs:
            return "arm64"
        if "x86_64" in archs:
            return "amd64"
    return "arm64" if _GRAVITON_RE.match(instance_type.split(".")[0]) else "amd64"


def ubuntu_ami(ssm: SSMClient, arch: str) -> str:
    """The current Ubuntu 24.04 AMI id for ``arch``, from Canonical's public SSM parameter.

    Raises:
        CloudError: the parameter holds something that is not an AMI id.
    """
    value = ssm.get_parameter(Name=AMI_PARAMETER.format(arch=arch))["Parameter"].get("Value", "")
    if not value.startswith("ami-"):
        raise CloudError(
            f"the Ubuntu AMI parameter holds {value!r}, not an AMI id",
            hint="choose another --region, or retry later (Canonical publishes it)",
        )
    return value


def root_device(ec2: EC2Client, ami_id: str) -> str:
    """The AMI's root device name (where the gp3 volume settings apply)."""
    images = ec2.describe_images(ImageIds=[ami_id])["Images"]
    return (images[0].get("RootDeviceName") if images else None) or "/dev/sda1"


def run_instance(
    ec2: EC2Client,
    spec: Ec2Spec,
    *,
    vpc_id: str,
    ami_id: str,
    sg_id: str,
    key_name: str,
    device: str,
    user_data: str,
    report: PhaseCallback,
    on_launched: Callable[[str], None],
) -> str:
    """Launch one hardened, tagged instance, trying the default subnets zone by zone; return its id.

    ``on_launched(instance_id)`` runs right after AWS accepted the launch, before anything else can
    fail or be interrupted, so the caller can record the instance for its undo.

    Raises:
        CloudError: the default VPC has no default subnet.
        botocore.exceptions.ClientError: AWS refused (the last zone's error when no zone had capacity).
    """
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    subnets = sorted(subnets, key=lambda s: s.get("AvailabilityZone", ""))
    if not subnets:
        raise CloudError(
            f"the default VPC {vpc_id} in {spec.region} has no default subnet",
            hint=f"create one: aws ec2 create-default-subnet --availability-zone ZONE --region {spec.region}",
        )
    from botocore.exceptions import ClientError

    tags: list[TagTypeDef] = [*spec_tags(spec), {"Key": "Name", "Value": spec.name}]
    last: ClientError | None = None
    for subnet in subnets:
        zone = subnet.get("AvailabilityZone", "?")
        report("launch", f"{spec.instance_type} in {zone}")
        try:
            reply = ec2.run_instances(
                ImageId=ami_id,
                InstanceType=spec.instance_type,  # type: ignore[arg-type]
                MinCount=1,
                MaxCount=1,
                KeyName=key_name,
                # A fresh token per attempt: botocore's own retries of this request reuse it, so a
                # lost response can never turn into a second instance.
                ClientToken=uuid.uuid4().hex,
                UserData=user_data,
                # The idle watchdog's poweroff must stop the instance, never terminate it.
                InstanceInitiatedShutdownBehavior="stop",
                MetadataOptions={
                    "HttpTokens": "required",
                    "HttpEndpoint": "enabled",
                    "HttpPutResponseHopLimit": 1,
                },
                NetworkInterfaces=[
                    {
                        "DeviceIndex": 0,
                        "SubnetId": subnet["SubnetId"],
                        "Groups": [sg_id],
                        "AssociatePublicIpAddress": True,
                        "DeleteOnTermination": True,
                    }
                ],
                BlockDeviceMappings=[
                    {
                        "DeviceName": device,
                        "Ebs": {
                            "VolumeSize": spec.volume_gb,
                            "VolumeType": "gp3",
                            "Encrypted": True,
                            "DeleteOnTermination": True,
                        },
                    }
                ],
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": tags},
                    {"ResourceType": "volume", "Tags": tags},
                ],
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _NEXT_ZONE_CODES:
                raise
            last = exc
            report("launch", f"{zone}: {exc.response.get('Error', {}).get('Code')}; trying the next zone")
            continue
        instance_id = reply["Instances"][0]["InstanceId"]
        on_launched(instance_id)
        report("launch", f"launched {instance_id}")
        return instance_id
    assert last is not None
    raise last


def start_instance(
    ec2: EC2Client, inst: Ec2Instance, pacing: Pacing, deadline: float, report: PhaseCallback
) -> Ec2Instance:
    """Bring ``inst`` to running (waiting out a pending stop first) and return it described anew."""
    if inst.state == "stopping":  # StartInstances is refused until the stop completes
        report("start", f"waiting for {inst.instance_id} to finish stopping")
        wait_state(ec2, "instance_stopped", inst.instance_id, deadline, pacing, report)
    if inst.state in ("stopping", "stopped"):
        ec2.start_instances(InstanceIds=[inst.instance_id])
        report("start", f"starting {inst.instance_id}")
    if inst.state != "running":
        wait_state(ec2, "instance_running", inst.instance_id, deadline, pacing, report)
    return describe(ec2, inst.instance_id)
