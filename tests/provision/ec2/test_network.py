"""provision.ec2.network: the caller's address, the default VPC, the SSH-only security group."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from provision import ec2 as e
from provision.ec2 import network
from provision.errors import CloudError, ProfileError
from tests.provision.ec2.helpers import (
    MY_IP,
    REGION,
    FakeClock,
    groups_named,
    ingress,
    inject_error,
    spec,
    tags_of,
)

# --------------------------------------------------------------------------------------------------
# the SSH source range and the caller's address


def test_normalize_cidr() -> None:
    assert e.normalize_cidr("203.0.113.7") == "203.0.113.7/32"
    assert e.normalize_cidr(" 2001:db8::1 ") == "2001:db8::1/128"
    assert e.normalize_cidr("198.51.100.0/24") == "198.51.100.0/24"
    assert e.normalize_cidr("0.0.0.0/0", allow_world=True) == "0.0.0.0/0"
    with pytest.raises(ProfileError, match="refusing"):
        e.normalize_cidr("198.51.100.0/23")
    with pytest.raises(ProfileError, match="not an IP"):
        e.normalize_cidr("my-laptop")


def test_detect_public_ip() -> None:
    urls: list[tuple[str, float]] = []

    def fetch(url: str, timeout: float) -> str:
        urls.append((url, timeout))
        return "198.51.100.23\n"

    assert e.detect_public_ip(fetch, timeout_s=2) == "198.51.100.23"
    assert urls == [("https://checkip.amazonaws.com", 2)]
    with pytest.raises(CloudError, match="--ssh-cidr"):
        e.detect_public_ip(lambda _u, _t: "<html>blocked</html>")

    def offline(_u: str, _t: float) -> str:
        raise OSError("network unreachable")

    with pytest.raises(CloudError, match="public IP"):
        e.detect_public_ip(offline)


# --------------------------------------------------------------------------------------------------
# the rules of the security group, read without AWS


def test_split_rules_finds_our_exact_rule_and_nothing_stale() -> None:
    perms: list[Any] = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}
    ]
    assert network.split_rules(perms, "203.0.113.7/32") == (True, [])
    assert network.split_rules([], "203.0.113.7/32") == (False, [])


def test_split_rules_marks_every_other_grant_stale() -> None:
    perms: list[Any] = [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": "203.0.113.7/32"}, {"CidrIp": "198.51.100.9/32"}],
            "Ipv6Ranges": [{"CidrIpv6": "2001:db8::1/128"}],
        },
        # our address, but not on port 22: not our rule
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]},
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "PrefixListIds": [{"PrefixListId": "pl-1"}]},
    ]
    have, stale = network.split_rules(perms, "203.0.113.7/32")
    assert have
    assert stale == [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": "198.51.100.9/32"}],
            "Ipv6Ranges": [{"CidrIpv6": "2001:db8::1/128"}],
        },
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]},
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "PrefixListIds": [{"PrefixListId": "pl-1"}]},
    ]


def test_split_rules_without_our_rule() -> None:
    perms: list[Any] = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "198.51.100.9/32"}]}
    ]
    have, stale = network.split_rules(perms, "203.0.113.7/32")
    assert not have
    assert stale == perms


def test_describe_permission() -> None:
    assert (
        network.describe_permission(
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}
        )
        == "tcp/22-22 from 203.0.113.7/32"
    )
    everything: Any = {
        "IpProtocol": "-1",
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
        "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
        "UserIdGroupPairs": [{"GroupId": "sg-1"}],
        "PrefixListIds": [{"PrefixListId": "pl-1"}],
    }
    assert network.describe_permission(everything) == "all from 0.0.0.0/0, ::/0, sg-1, pl-1"


# --------------------------------------------------------------------------------------------------
# the default VPC and the security group, against moto


def _group(aws: e.Ec2Clients) -> tuple[str, list[Any]]:
    """The profile's security group, created in the default VPC with no rule yet: its id and rules."""
    vpc = network.default_vpc(aws.ec2, REGION)
    sg = network.create_security_group(aws.ec2, spec(), vpc)
    return sg, network.find_security_group(aws.ec2, spec(), vpc)[1]


def test_default_vpc(aws: e.Ec2Clients) -> None:
    aws.ec2.create_vpc(CidrBlock="10.9.0.0/16")  # not the default one
    (default,) = aws.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    assert network.default_vpc(aws.ec2, REGION) == default["VpcId"]


def test_no_default_vpc_is_a_clear_error(aws: e.Ec2Clients) -> None:
    vpc = network.default_vpc(aws.ec2, REGION)
    for subnet in aws.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]:
        aws.ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    aws.ec2.delete_vpc(VpcId=vpc)
    aws.ec2.create_vpc(CidrBlock="10.9.0.0/16")  # a VPC, but not a default one
    with pytest.raises(CloudError, match=f"region {REGION} has no default VPC") as err:
        network.default_vpc(aws.ec2, REGION)
    assert err.value.hint and "create-default-vpc" in err.value.hint


def test_security_group_is_created_tagged_and_found_again(aws: e.Ec2Clients) -> None:
    vpc = network.default_vpc(aws.ec2, REGION)
    assert network.find_security_group(aws.ec2, spec(), vpc) == (None, [])
    sg = network.create_security_group(aws.ec2, spec(), vpc)
    (group,) = groups_named(aws, "mcpctl-sales")
    assert group["GroupId"] == sg and group["VpcId"] == vpc
    assert tags_of(group)["mcpctl:profile"] == "sales"
    assert network.find_security_group(aws.ec2, spec(), vpc) == (sg, [])
    assert network.find_security_group(aws.ec2, spec(profile="other"), vpc) == (None, [])


def test_security_group_in_another_vpc_is_not_found(aws: e.Ec2Clients) -> None:
    other = aws.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    network.create_security_group(aws.ec2, spec(), other)
    assert network.find_security_group(aws.ec2, spec(), network.default_vpc(aws.ec2, REGION)) == (None, [])


def test_same_named_group_of_another_profile_is_refused(aws: e.Ec2Clients) -> None:
    vpc = network.default_vpc(aws.ec2, REGION)
    aws.ec2.create_security_group(
        GroupName="mcpctl-sales",
        Description="someone else's",
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "mcpctl:profile", "Value": "other"}]}
        ],
    )
    with pytest.raises(CloudError, match="not created by mcpctl for this profile"):
        network.find_security_group(aws.ec2, spec(), vpc)


def test_sync_ssh_rule_authorizes_the_callers_address(aws: e.Ec2Clients) -> None:
    sg, perms = _group(aws)
    phases: list[tuple[str, str]] = []
    changes = network.sync_ssh_rule(aws.ec2, sg, perms, f"{MY_IP}/32", lambda p, d: phases.append((p, d)))
    assert changes == [e.Change("ssh-rule", "authorized", f"tcp/22 from {MY_IP}/32")]
    assert ingress(aws, sg) == [("tcp", 22, 22, f"{MY_IP}/32")]
    assert phases == [("ssh-rule", f"allowed tcp/22 from {MY_IP}/32")]


def test_sync_ssh_rule_again_changes_nothing(aws: e.Ec2Clients) -> None:
    sg, perms = _group(aws)
    network.sync_ssh_rule(aws.ec2, sg, perms, f"{MY_IP}/32", lambda _p, _d: None)
    _, now = network.find_security_group(aws.ec2, spec(), network.default_vpc(aws.ec2, REGION))
    authorize = inject_error(aws.ec2, "AuthorizeSecurityGroupIngress", "UnauthorizedOperation")
    revoke = inject_error(aws.ec2, "RevokeSecurityGroupIngress", "UnauthorizedOperation")

    assert network.sync_ssh_rule(aws.ec2, sg, now, f"{MY_IP}/32", lambda _p, _d: None) == []
    assert authorize == [0] and revoke == [0]
    assert ingress(aws, sg) == [("tcp", 22, 22, f"{MY_IP}/32")]


def test_sync_ssh_rule_revokes_strays_and_keeps_ours(aws: e.Ec2Clients) -> None:
    sg, _ = _group(aws)
    aws.ec2.authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": f"{MY_IP}/32"}, {"CidrIp": "198.51.100.9/32"}],
            },
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        ],
    )
    _, perms = network.find_security_group(aws.ec2, spec(), network.default_vpc(aws.ec2, REGION))
    changes = network.sync_ssh_rule(aws.ec2, sg, perms, f"{MY_IP}/32", lambda _p, _d: None)

    assert ingress(aws, sg) == [("tcp", 22, 22, f"{MY_IP}/32")]
    assert sorted((c.action, c.detail) for c in changes) == [
        ("revoked", "tcp/22-22 from 198.51.100.9/32"),
        ("revoked", "tcp/443-443 from 0.0.0.0/0"),
    ]


def test_sync_ssh_rule_for_an_ipv6_address(aws: e.Ec2Clients) -> None:
    sg, perms = _group(aws)
    network.sync_ssh_rule(aws.ec2, sg, perms, f"{MY_IP}/32", lambda _p, _d: None)
    _, perms = network.find_security_group(aws.ec2, spec(), network.default_vpc(aws.ec2, REGION))
    changes = network.sync_ssh_rule(aws.ec2, sg, perms, "2001:db8::7/128", lambda _p, _d: None)

    assert [(c.action, c.detail) for c in changes] == [
        ("authorized", "tcp/22 from 2001:db8::7/128"),
        ("revoked", f"tcp/22-22 from {MY_IP}/32"),
    ]
    (group,) = groups_named(aws, "mcpctl-sales")
    v6 = [
        (p["IpProtocol"], p.get("FromPort"), r["CidrIpv6"])
        for p in group["IpPermissions"]
        for r in p.get("Ipv6Ranges", [])
    ]
    assert v6 == [("tcp", 22, "2001:db8::7/128")]
    assert ingress(aws, sg) == []


def test_deleting_a_group_that_is_gone_is_quiet(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    sg, _ = _group(aws)
    network.delete_security_group(aws.ec2, sg, pacing)
    assert groups_named(aws, "mcpctl-sales") == []
    network.delete_security_group(aws.ec2, sg, pacing)  # InvalidGroup.NotFound: already done


def test_deleting_a_group_gives_up_at_the_deadline(
    aws: e.Ec2Clients, pacing: e.Pacing, fake_clock: FakeClock
) -> None:
    sg, _ = _group(aws)
    inject_error(aws.ec2, "DeleteSecurityGroup", "DependencyViolation")
    with pytest.raises(ClientError) as err:
        network.delete_security_group(aws.ec2, sg, pacing, deadline=50)
    assert err.value.response["Error"]["Code"] == "DependencyViolation"
    assert fake_clock.sleeps >= 50 / fake_clock.step  # it kept retrying until the deadline, on the fake clock
    assert len(groups_named(aws, "mcpctl-sales")) == 1


def test_deleting_a_group_does_not_retry_other_errors(
    aws: e.Ec2Clients, pacing: e.Pacing, fake_clock: FakeClock
) -> None:
    sg, _ = _group(aws)
    calls = inject_error(aws.ec2, "DeleteSecurityGroup", "UnauthorizedOperation")
    with pytest.raises(ClientError, match="UnauthorizedOperation"):
        network.delete_security_group(aws.ec2, sg, pacing)
    assert calls == [1] and fake_clock.sleeps == 0
