"""provision.ec2.model: the spec and the values the EC2 modules share."""

from __future__ import annotations

import dataclasses

import pytest

from provision import __version__
from provision import ec2 as e
from provision.ec2.model import spec_tags, tag_value
from provision.errors import CloudError, ProfileError
from tests.provision.ec2.helpers import (
    REGION,
    spec,
)


def test_spec_validation() -> None:
    with pytest.raises(ProfileError):
        spec(profile="bad name")
    with pytest.raises(ProfileError):
        spec(volume_gb=4)
    with pytest.raises(ProfileError):
        spec(instance_type="large")
    with pytest.raises(ProfileError):
        spec(autostop_minutes=-1)
    assert spec().name == "mcpctl-sales"
    assert "@" in e.Ec2Spec(profile="x", region=REGION).owner


def test_spec_accepts_the_edges() -> None:
    assert spec(volume_gb=8).volume_gb == 8
    assert spec(volume_gb=16384).volume_gb == 16384
    assert spec(autostop_minutes=0).autostop_minutes == 0
    assert spec(profile="a.b_c-1").name == "mcpctl-a.b_c-1"
    with pytest.raises(ProfileError):
        spec(volume_gb=16385)
    with pytest.raises(ProfileError):
        spec(profile="x" * 64)


def test_spec_tags_find_the_profile_again() -> None:
    tags = spec_tags(spec())
    assert tags == [
        {"Key": "mcpctl:profile", "Value": "sales"},
        {"Key": "mcpctl:owner", "Value": "ann@laptop"},
        {"Key": "mcpctl:created-by", "Value": "mcpctl " + __version__},
    ]
    assert tag_value(tags, e.TAG_PROFILE) == "sales"
    assert tag_value(tags, "Name") is None
    assert tag_value([], e.TAG_PROFILE) is None


_INSTANCE = e.Ec2Instance(
    instance_id="i-0abc",
    state="running",
    instance_type="t3.small",
    arch="amd64",
    public_ip="198.51.100.5",
    public_dns=None,
    availability_zone="us-east-1a",
    vpc_id="vpc-1",
    image_id="ami-1",
    key_name="mcpctl-sales",
    security_group_ids=("sg-1",),
    launch_time=None,
)


def test_public_endpoint_is_the_public_ip_as_ubuntu() -> None:
    assert e.public_endpoint(_INSTANCE) == e.SshEndpoint("198.51.100.5", 22, "ubuntu")


def test_public_endpoint_without_an_address_is_an_error() -> None:
    with pytest.raises(CloudError, match="instance i-0abc has no public IP address"):
        e.public_endpoint(dataclasses.replace(_INSTANCE, public_ip=None))


def test_host_key_alias_follows_the_instance_not_its_address() -> None:
    assert e.host_key_alias("sales", "i-0abc") == "mcpctl-sales-i-0abc"
    assert e.host_key_alias("sales", "i-0abc") != e.host_key_alias("sales", "i-0def")
