"""provision.ec2.instances: describe and find by tag, the Ubuntu AMI and architecture, run, start."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from provision import __version__
from provision import ec2 as e
from provision.ec2 import instances, network
from provision.errors import CloudError
from tests.provision.ec2.helpers import (
    REGION,
    ami_for,
    bare_instance,
    groups_named,
    inject_error,
    inject_reply,
    spec,
    tags_of,
)

if TYPE_CHECKING:
    from tests.provision.conftest import MotoAccount

# --------------------------------------------------------------------------------------------------
# architecture


def test_arch_for_instance_type(aws: e.Ec2Clients) -> None:
    assert e.arch_for_instance_type("t4g.small", aws.ec2) == "arm64"
    assert e.arch_for_instance_type("t3.small", aws.ec2) == "amd64"
    for graviton in ("m7g.large", "c6gn.large", "r8gd.large", "im4gn.large", "is4gen.large", "a1.large"):
        assert e.arch_for_instance_type(graviton) == "arm64", graviton
    for x86 in ("t3.small", "m7i-flex.large", "g4dn.xlarge", "m5zn.large", "gr6.4xlarge"):
        assert e.arch_for_instance_type(x86) == "amd64", x86
    with pytest.raises(CloudError, match="not an EC2 instance type"):
        e.arch_for_instance_type("zz9.small", aws.ec2)


def test_arch_falls_back_to_family_name_without_permission(aws: e.Ec2Clients) -> None:
    calls = inject_error(aws.ec2, "DescribeInstanceTypes", "UnauthorizedOperation")
    assert e.arch_for_instance_type("c7g.large", aws.ec2) == "arm64"
    assert calls == [1]


# --------------------------------------------------------------------------------------------------
# describing instances


def test_to_instance_reads_a_describe_answer() -> None:
    launched = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    answer: Any = {
        "InstanceId": "i-0abc",
        "State": {"Code": 80, "Name": "stopped"},
        "InstanceType": "t4g.small",
        "Architecture": "arm64",
        "PublicIpAddress": "198.51.100.5",
        "PublicDnsName": "ec2-198-51-100-5.compute-1.amazonaws.com",
        "Placement": {"AvailabilityZone": "us-east-1b"},
        "VpcId": "vpc-1",
        "ImageId": "ami-1",
        "KeyName": "mcpctl-sales",
        "SecurityGroups": [{"GroupId": "sg-1", "GroupName": "mcpctl-sales"}],
        # the same group again through the network interface, and a second one only there
        "NetworkInterfaces": [{"Groups": [{"GroupId": "sg-1"}, {"GroupId": "sg-2"}]}],
        "LaunchTime": launched,
    }
    assert instances.to_instance(answer) == e.Ec2Instance(
        instance_id="i-0abc",
        state="stopped",
        instance_type="t4g.small",
        arch="arm64",
        public_ip="198.51.100.5",
        public_dns="ec2-198-51-100-5.compute-1.amazonaws.com",
        availability_zone="us-east-1b",
        vpc_id="vpc-1",
        image_id="ami-1",
        key_name="mcpctl-sales",
        security_group_ids=("sg-1", "sg-2"),
        launch_time=launched,
    )


def test_to_instance_of_a_sparse_answer() -> None:
    # A stopped instance has an empty DNS name and no address; x86_64 (or nothing) means amd64.
    inst = instances.to_instance({"InstanceId": "i-0abc", "PublicDnsName": "", "Architecture": "x86_64"})
    assert (inst.state, inst.arch, inst.instance_type) == ("unknown", "amd64", "?")
    assert inst.public_ip is None and inst.public_dns is None and inst.availability_zone is None
    assert inst.security_group_ids == () and inst.launch_time is None


def test_describe_a_moto_instance(aws: e.Ec2Clients) -> None:
    iid = bare_instance(aws, arch="arm64")
    inst = instances.describe(aws.ec2, iid)
    assert inst.instance_id == iid and inst.state == "running"
    assert inst.instance_type == "t4g.small"  # moto reports every instance as x86_64, so arch is not read
    assert inst.image_id == ami_for(aws, "arm64")
    assert inst.vpc_id == network.default_vpc(aws.ec2, REGION)
    assert inst.public_ip and inst.launch_time is not None


def test_tagged_instances_filter_by_profile_and_state(aws: e.Ec2Clients) -> None:
    running = bare_instance(aws)
    stopped = bare_instance(aws)
    aws.ec2.stop_instances(InstanceIds=[stopped])
    other = bare_instance(aws, profile="other")
    bare_instance(aws, profile=None)

    def ids(profile: str, states: tuple[str, ...]) -> list[str]:
        return sorted(i["InstanceId"] for i in instances.tagged_instances(aws.ec2, profile, states))

    assert ids("sales", ("running",)) == [running]
    assert ids("sales", ("stopped",)) == [stopped]
    assert ids("sales", e.LIVE_STATES) == sorted([running, stopped])
    assert ids("sales", ("terminated",)) == []
    assert ids("other", e.LIVE_STATES) == [other]
    aws.ec2.terminate_instances(InstanceIds=[running])
    assert ids("sales", e.LIVE_STATES) == [stopped]
    assert ids("sales", ("terminated",)) == [running]


# --------------------------------------------------------------------------------------------------
# the Ubuntu AMI


def test_ubuntu_ami_is_canonicals_parameter(aws: e.Ec2Clients, moto_account: MotoAccount) -> None:
    assert instances.ubuntu_ami(aws.ssm, "amd64") == moto_account.amis["amd64"]
    assert instances.ubuntu_ami(aws.ssm, "arm64") == moto_account.amis["arm64"]
    assert moto_account.amis["amd64"] != moto_account.amis["arm64"]


def test_ubuntu_ami_refuses_a_value_that_is_not_an_ami(aws: e.Ec2Clients) -> None:
    inject_reply(
        aws.ssm, "GetParameter", {"Parameter": {"Name": "x", "Value": "ubuntu-noble", "Type": "String"}}
    )
    with pytest.raises(CloudError, match="'ubuntu-noble', not an AMI id"):
        instances.ubuntu_ami(aws.ssm, "amd64")


def test_root_device_is_the_images_own(aws: e.Ec2Clients) -> None:
    # moto registers every image on /dev/sda1; the answer of an Amazon Linux style image is given here.
    assert instances.root_device(aws.ec2, ami_for(aws, "amd64")) == "/dev/sda1"
    inject_reply(aws.ec2, "DescribeImages", {"Images": [{"ImageId": "ami-1", "RootDeviceName": "/dev/xvda"}]})
    assert instances.root_device(aws.ec2, "ami-1") == "/dev/xvda"


@pytest.mark.parametrize("images", [[], [{"ImageId": "ami-1"}]])
def test_root_device_defaults_to_sda1(aws: e.Ec2Clients, images: list[Any]) -> None:
    inject_reply(aws.ec2, "DescribeImages", {"Images": images})
    assert instances.root_device(aws.ec2, "ami-1") == "/dev/sda1"


# --------------------------------------------------------------------------------------------------
# running and starting


def _run(aws: e.Ec2Clients, launched: list[str], phases: list[str] | None = None) -> str:
    """run_instance for 'sales' with a fresh group and key pair; ``launched`` gets on_launched's ids."""
    seen = phases if phases is not None else []
    vpc = network.default_vpc(aws.ec2, REGION)
    sg = network.create_security_group(aws.ec2, spec(), vpc)
    aws.ec2.create_key_pair(KeyName="mcpctl-sales")
    return instances.run_instance(
        aws.ec2,
        spec(),
        vpc_id=vpc,
        ami_id=ami_for(aws, "amd64"),
        sg_id=sg,
        key_name="mcpctl-sales",
        device="/dev/sda1",
        user_data="#cloud-config\n",
        report=lambda _p, d: seen.append(d),
        on_launched=launched.append,
    )


def test_run_instance_launches_one_tagged_instance(aws: e.Ec2Clients) -> None:
    launched: list[str] = []
    iid = _run(aws, launched)
    assert launched == [iid]
    raw = instances.describe_raw(aws.ec2, iid)
    assert tags_of(raw) == {
        "mcpctl:profile": "sales",
        "mcpctl:owner": "ann@laptop",
        "mcpctl:created-by": "mcpctl " + __version__,
        "Name": "mcpctl-sales",
    }
    inst = instances.to_instance(raw)
    assert inst.key_name == "mcpctl-sales"
    (group,) = groups_named(aws, "mcpctl-sales")
    assert group["GroupId"] in inst.security_group_ids


def test_run_instance_without_a_default_subnet(aws: e.Ec2Clients) -> None:
    vpc = network.default_vpc(aws.ec2, REGION)
    for subnet in aws.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]:
        aws.ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    launched: list[str] = []
    with pytest.raises(CloudError, match=f"default VPC {vpc} in {REGION} has no default subnet") as err:
        _run(aws, launched)
    assert err.value.hint and "create-default-subnet" in err.value.hint
    assert launched == []
    assert instances.tagged_instances(aws.ec2, "sales", e.LIVE_STATES) == []


def test_run_instance_tries_every_zone_then_gives_aws_error(aws: e.Ec2Clients) -> None:
    zones = {
        s["AvailabilityZone"]
        for s in aws.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    }
    calls = inject_error(aws.ec2, "RunInstances", "Unsupported")
    launched: list[str] = []
    phases: list[str] = []
    with pytest.raises(ClientError, match="Unsupported"):
        _run(aws, launched, phases)
    assert calls == [len(zones)] and len(zones) > 1
    assert launched == []
    assert {d.split()[-1] for d in phases if d.startswith("t3.small in ")} == zones


def test_run_instance_stops_at_an_error_another_zone_cannot_fix(aws: e.Ec2Clients) -> None:
    calls = inject_error(aws.ec2, "RunInstances", "InstanceLimitExceeded")
    with pytest.raises(ClientError, match="InstanceLimitExceeded"):
        _run(aws, [])
    assert calls == [1]


def test_start_instance_starts_a_stopped_instance(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    iid = bare_instance(aws)
    aws.ec2.stop_instances(InstanceIds=[iid])
    stopped = instances.describe(aws.ec2, iid)
    assert stopped.state == "stopped"
    phases: list[tuple[str, str]] = []
    started = instances.start_instance(
        aws.ec2, stopped, pacing, pacing.clock() + pacing.timeout_s, lambda p, d: phases.append((p, d))
    )
    assert started.instance_id == iid and started.state == "running"
    assert instances.describe(aws.ec2, iid).state == "running"
    assert ("start", f"starting {iid}") in phases


def test_start_instance_leaves_a_running_instance_alone(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    iid = bare_instance(aws)
    calls = inject_error(aws.ec2, "StartInstances", "IncorrectInstanceState")
    running = instances.describe(aws.ec2, iid)
    again = instances.start_instance(
        aws.ec2, running, pacing, pacing.clock() + pacing.timeout_s, lambda *_: None
    )
    assert again.state == "running" and calls == [0]
