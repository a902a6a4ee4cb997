"""provision.ec2.power against moto: find, start, stop and verified destroy of a profile's instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provision import ec2 as e
from provision.errors import CloudError
from tests.provision.ec2.helpers import (
    REGION,
    FakeClock,
    ami_for,
    bare_instance,
    groups_named,
    inject_error,
    key_pairs,
    run,
    spec,
)

# --------------------------------------------------------------------------------------------------
# find, start, stop


def test_stop_and_start(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    first = run(aws, tmp_path, pacing)
    assert e.stop("sales", REGION, clients=aws, pacing=pacing).state == "stopped"
    assert e.stop("sales", REGION, clients=aws, pacing=pacing).state == "stopped"  # no-op
    started = e.start("sales", REGION, clients=aws, pacing=pacing)
    assert started.state == "running"
    assert started.instance_id == first.instance.instance_id
    assert started.public_ip  # a fresh address; the host-key alias does not depend on it
    with pytest.raises(CloudError, match="no EC2 instance"):
        e.start("other", REGION, clients=aws, pacing=pacing)


def test_two_tagged_instances_are_an_error_naming_both(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    ids = []
    for _ in range(2):
        reply = aws.ec2.run_instances(
            ImageId=ami_for(aws, "amd64"),
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.small",
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "mcpctl:profile", "Value": "sales"}]}
            ],
        )
        ids.append(reply["Instances"][0]["InstanceId"])

    with pytest.raises(CloudError) as err:
        run(aws, tmp_path, pacing)
    assert all(i in str(err.value) for i in ids)
    with pytest.raises(CloudError, match=ids[0]):
        e.find_instance("sales", REGION, clients=aws)


def test_find_instance_sees_only_the_profiles_live_instance(aws: e.Ec2Clients) -> None:
    assert e.find_instance("sales", REGION, clients=aws) is None
    gone = bare_instance(aws)
    aws.ec2.terminate_instances(InstanceIds=[gone])
    bare_instance(aws, profile="other")
    bare_instance(aws, profile=None)
    assert e.find_instance("sales", REGION, clients=aws) is None
    stopped = bare_instance(aws)
    aws.ec2.stop_instances(InstanceIds=[stopped])
    found = e.find_instance("sales", REGION, clients=aws)
    assert found is not None and (found.instance_id, found.state) == (stopped, "stopped")


def test_stop_without_an_instance_says_how_to_launch_one(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    bare_instance(aws, profile="other")
    with pytest.raises(
        CloudError, match=f"no EC2 instance in {REGION} is tagged mcpctl:profile=sales"
    ) as err:
        e.stop("sales", REGION, clients=aws, pacing=pacing)
    assert err.value.hint == "launch one with `mcpctl provision sales --ec2`"


def test_stop_reports_and_an_already_stopped_instance_is_left_alone(
    aws: e.Ec2Clients, pacing: e.Pacing
) -> None:
    iid = bare_instance(aws)
    phases: list[tuple[str, str]] = []
    stopped = e.stop("sales", REGION, clients=aws, pacing=pacing, on_phase=lambda p, d: phases.append((p, d)))
    assert (stopped.instance_id, stopped.state) == (iid, "stopped")
    assert ("stop", f"stopping {iid}") in phases

    calls = inject_error(aws.ec2, "StopInstances", "IncorrectInstanceState")
    phases.clear()
    again = e.stop("sales", REGION, clients=aws, pacing=pacing, on_phase=lambda p, d: phases.append((p, d)))
    assert again.state == "stopped" and calls == [0]
    assert phases == [("stop", f"{iid} is already stopped")]


def test_power_errors_come_translated(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    bare_instance(aws)
    inject_error(aws.ec2, "StopInstances", "UnauthorizedOperation")
    with pytest.raises(CloudError, match="AWS denied ec2:StopInstances"):
        e.stop("sales", REGION, clients=aws, pacing=pacing)


# --------------------------------------------------------------------------------------------------
# destroy


def test_destroy_leaves_nothing_tagged(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    first = run(aws, tmp_path, pacing)
    run(aws, tmp_path, pacing, spec(profile="keepme"))  # another profile: must survive
    report = e.destroy("sales", REGION, clients=aws, pacing=pacing)

    assert report.instances == (first.instance.instance_id,)
    assert report.security_groups == (first.security_group_id,)
    assert report.key_pairs == ("mcpctl-sales",)
    state = aws.ec2.describe_instances(InstanceIds=[first.instance.instance_id])["Reservations"][0]
    assert state["Instances"][0]["State"]["Name"] == "terminated"
    tag: list[Any] = [{"Name": "tag:mcpctl:profile", "Values": ["sales"]}]
    assert aws.ec2.describe_security_groups(Filters=tag)["SecurityGroups"] == []
    assert aws.ec2.describe_key_pairs(Filters=tag)["KeyPairs"] == []
    assert e.find_instance("sales", REGION, clients=aws) is None
    assert e.find_instance("keepme", REGION, clients=aws) is not None
    assert [k["KeyName"] for k in key_pairs(aws)] == ["mcpctl-keepme"]

    assert e.destroy("sales", REGION, clients=aws, pacing=pacing) == e.DestroyReport((), (), ())


def test_destroy_retries_while_the_group_is_still_in_use(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing, fake_clock: FakeClock
) -> None:
    first = run(aws, tmp_path, pacing)
    busy = inject_error(aws.ec2, "DeleteSecurityGroup", "DependencyViolation", times=2)
    report = e.destroy("sales", REGION, clients=aws, pacing=pacing)
    assert busy == [2] and fake_clock.sleeps >= 2
    assert report.security_groups == (first.security_group_id,)
    assert groups_named(aws, "mcpctl-sales") == []


def test_destroy_gives_up_on_a_group_that_stays_in_use(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    run(aws, tmp_path, pacing)
    inject_error(aws.ec2, "DeleteSecurityGroup", "DependencyViolation")
    with pytest.raises(CloudError, match="still in use"):
        e.destroy("sales", REGION, clients=aws, pacing=pacing)


def test_destroy_ignores_untagged_lookalikes(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    vpc = aws.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    aws.ec2.create_security_group(GroupName="mcpctl-sales", Description="not ours", VpcId=vpc)
    assert e.destroy("sales", REGION, clients=aws, pacing=pacing) == e.DestroyReport((), (), ())
    assert len(groups_named(aws, "mcpctl-sales")) == 1
    # and launch refuses to adopt it
    with pytest.raises(CloudError, match="not created by mcpctl"):
        run(aws, tmp_path, pacing)


def test_destroy_names_what_is_still_left_at_the_deadline(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    # A tagged volume is nothing destroy deletes (the instance's own goes with it): it must be reported.
    volume = aws.ec2.create_volume(
        Size=8,
        AvailabilityZone=f"{REGION}a",
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "mcpctl:profile", "Value": "sales"}]}],
    )["VolumeId"]
    with pytest.raises(CloudError, match=f"AWS still lists for profile sales: volume {volume}"):
        e.destroy("sales", REGION, clients=aws, pacing=pacing)
