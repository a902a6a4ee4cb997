"""provision.ec2.launching against moto: plan, tag-idempotent launch and resume, cleanup of a failed launch.

moto accepts requests real EC2 would refuse and ignores ClientToken, so the RunInstances requests we send
are captured and checked as data too (see ``helpers.capture_run_instances``).
"""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from provision import __version__
from provision import ec2 as e
from provision.ec2.cloudinit import USER_DATA_LIMIT
from provision.errors import CloudError, ConnectError, McpctlError, ProfileError
from tests.provision.ec2.helpers import (
    MY_IP,
    REGION,
    FakeClock,
    ami_for,
    capture_run_instances,
    groups_named,
    ingress,
    inject_error,
    key_pairs,
    live_instances,
    run,
    spec,
    tags_of,
)

# --------------------------------------------------------------------------------------------------
# launch


def test_fresh_launch_creates_key_pair_group_and_tagged_instance(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    phases: list[tuple[str, str]] = []
    result = run(aws, tmp_path / "keys", pacing, on_phase=lambda p, d: phases.append((p, d)))

    # key pair: the local public key was imported, the private file is 0600
    key_file = tmp_path / "keys" / "mcpctl-sales"
    assert result.key.path == key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    (kp,) = key_pairs(aws)
    assert kp["KeyName"] == "mcpctl-sales"
    assert kp["PublicKey"].split()[1] == result.key.public_line.split()[1]
    assert tags_of(kp)["mcpctl:profile"] == "sales"

    # security group: exactly our /32 on port 22
    (group,) = groups_named(aws, "mcpctl-sales")
    assert group["GroupId"] == result.security_group_id
    assert ingress(aws, result.security_group_id) == [("tcp", 22, 22, f"{MY_IP}/32")]
    assert tags_of(group)["mcpctl:profile"] == "sales"

    # instance: running, tagged, its volume tagged too
    (inst,) = live_instances(aws)
    assert inst["InstanceId"] == result.instance.instance_id
    assert result.instance.state == "running" and result.instance.public_ip
    assert result.instance.key_name == "mcpctl-sales"
    assert result.security_group_id in result.instance.security_group_ids
    assert tags_of(inst) == {
        "mcpctl:profile": "sales",
        "mcpctl:owner": "ann@laptop",
        "mcpctl:created-by": "mcpctl " + __version__,
        "Name": "mcpctl-sales",
    }
    (volume,) = aws.ec2.describe_volumes(Filters=[{"Name": "tag:mcpctl:profile", "Values": ["sales"]}])[
        "Volumes"
    ]
    assert volume["Encrypted"] and volume["VolumeType"] == "gp3" and volume["Size"] == 16

    # the host key to pin is the one in the instance's user-data, under an instance-id alias
    raw = aws.ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
    user_data = base64.b64decode(raw["UserData"]["Value"]).decode()
    assert result.host_key_line and result.host_key_line in user_data
    assert result.host_key_alias == f"mcpctl-sales-{inst['InstanceId']}"

    assert {(c.resource, c.action) for c in result.changes} >= {
        ("key-pair", "created"),
        ("security-group", "created"),
        ("ssh-rule", "authorized"),
        ("instance", "created"),
    }
    assert [p for p, _ in phases][-1] == "ssh"


def test_run_instances_request_is_hardened(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    sent = capture_run_instances(aws)
    run(aws, tmp_path, pacing, spec(instance_type="t4g.small", volume_gb=20, autostop_minutes=45))

    (req,) = sent
    assert req["MetadataOptions"]["HttpTokens"] == "required"
    (bdm,) = req["BlockDeviceMappings"]
    assert bdm["Ebs"] == {
        "VolumeSize": 20,
        "VolumeType": "gp3",
        "Encrypted": True,
        "DeleteOnTermination": True,
    }
    resource_types = {t["ResourceType"]: tags_of(t) for t in req["TagSpecifications"]}
    assert resource_types.keys() == {"instance", "volume"}
    assert all(t["mcpctl:profile"] == "sales" for t in resource_types.values())
    assert len(req["UserData"].encode()) < USER_DATA_LIMIT
    assert "mcpctl-idle.timer" in req["UserData"]
    assert re.fullmatch(r"[0-9a-f]{32}", req["ClientToken"])
    assert req["InstanceInitiatedShutdownBehavior"] == "stop"
    assert req["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is True
    # t4g is Graviton: the arm64 AMI parameter, not the amd64 one
    assert req["ImageId"] == ami_for(aws, "arm64") != ami_for(aws, "amd64")
    assert req["InstanceType"] == "t4g.small"


def test_rerun_reuses_everything(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    sent = capture_run_instances(aws)
    first = run(aws, tmp_path, pacing)
    second = run(aws, tmp_path, pacing)

    assert len(sent) == 1
    assert len(live_instances(aws)) == 1
    assert second.instance.instance_id == first.instance.instance_id
    assert second.security_group_id == first.security_group_id
    assert second.key.public_line == first.key.public_line
    assert len(key_pairs(aws)) == 1
    assert [(c.resource, c.action) for c in second.changes] == [("instance", "reused")]
    # a lost known_hosts entry can be re-pinned: the key comes back from the user-data
    assert second.host_key_line == first.host_key_line
    assert second.host_key_alias == first.host_key_alias


def test_rerun_with_new_address_moves_the_rule_and_revokes_strays(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    first = run(aws, tmp_path, pacing)
    sg = first.security_group_id
    aws.ec2.authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    second = run(aws, tmp_path, pacing, spec(ssh_cidr="198.51.100.9"))

    assert ingress(aws, sg) == [("tcp", 22, 22, "198.51.100.9/32")]
    actions = [(c.action, c.detail) for c in second.changes if c.resource == "ssh-rule"]
    assert ("authorized", "tcp/22 from 198.51.100.9/32") in actions
    assert ("revoked", f"tcp/22-22 from {MY_IP}/32") in actions
    assert ("revoked", "tcp/80-80 from 0.0.0.0/0") in actions
    assert len(live_instances(aws)) == 1


def test_stopped_instance_is_started_not_duplicated(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    first = run(aws, tmp_path, pacing)
    stopped = e.stop("sales", REGION, clients=aws, pacing=pacing)
    assert stopped.state == "stopped"

    again = run(aws, tmp_path, pacing)
    assert again.instance.instance_id == first.instance.instance_id
    assert again.instance.state == "running"
    assert ("instance", "started") in {(c.resource, c.action) for c in again.changes}
    assert len(live_instances(aws)) == 1


@pytest.mark.parametrize("minutes", [45, 0])
def test_rerun_reads_the_autostop_back_from_the_user_data(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing, minutes: int
) -> None:
    first = run(aws, tmp_path, pacing, spec(autostop_minutes=minutes))
    # the spec of a later run does not change the instance: what it runs is in its user-data
    again = run(aws, tmp_path, pacing, spec(autostop_minutes=30))
    assert first.autostop_minutes == again.autostop_minutes == minutes


def test_rerun_without_the_client_key_is_refused(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    first = run(aws, tmp_path, pacing)
    first.key.path.unlink()
    with pytest.raises(
        McpctlError, match=f"instance {first.instance.instance_id} exists but its SSH client key"
    ):
        run(aws, tmp_path, pacing)
    # nothing was undone: the instance and its key pair stay for when the key file is restored
    assert [i["InstanceId"] for i in live_instances(aws)] == [first.instance.instance_id]
    assert len(key_pairs(aws)) == 1


# --------------------------------------------------------------------------------------------------
# failures clean up what this run created, and only that


def test_failed_launch_removes_what_it_created(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    inject_error(aws.ec2, "RunInstances", "InstanceLimitExceeded")
    phases: list[str] = []
    with pytest.raises(CloudError, match="quota") as err:
        run(aws, tmp_path, pacing, on_phase=lambda p, _d: phases.append(p))
    assert "Service Quotas" in str(err.value)
    assert key_pairs(aws) == []
    assert groups_named(aws, "mcpctl-sales") == []
    assert live_instances(aws) == []
    assert "cleanup" in phases


def test_failed_launch_keeps_preexisting_resources(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    key = e.ensure_client_key(tmp_path, "sales")
    tag: list[Any] = [{"Key": "mcpctl:profile", "Value": "sales"}]
    aws.ec2.import_key_pair(
        KeyName="mcpctl-sales",
        PublicKeyMaterial=key.public_line.encode(),
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag}],
    )
    vpc = aws.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    sg = aws.ec2.create_security_group(
        GroupName="mcpctl-sales",
        Description="earlier run",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tag}],
    )["GroupId"]
    inject_error(aws.ec2, "RunInstances", "UnauthorizedOperation")

    with pytest.raises(CloudError, match="ec2:RunInstances"):
        run(aws, tmp_path, pacing)
    assert [k["KeyName"] for k in key_pairs(aws)] == ["mcpctl-sales"]
    assert [g["GroupId"] for g in groups_named(aws, "mcpctl-sales")] == [sg]


def test_instance_that_never_answers_ssh_is_terminated(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing, fake_clock: FakeClock
) -> None:
    with pytest.raises(ConnectError, match="SSH banner"):
        run(aws, tmp_path, pacing, ssh_probe=lambda _h, _p, _t: False)
    assert fake_clock.sleeps >= 120 / fake_clock.step  # it polled until the deadline, on the fake clock
    assert live_instances(aws) == []
    assert key_pairs(aws) == []
    assert groups_named(aws, "mcpctl-sales") == []


def test_no_capacity_in_one_zone_tries_the_next(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    sent = capture_run_instances(aws)
    failed = inject_error(aws.ec2, "RunInstances", "InsufficientInstanceCapacity", times=1)
    result = run(aws, tmp_path, pacing)
    assert failed == [1] and len(sent) == 2
    assert sent[0]["ClientToken"] != sent[1]["ClientToken"]
    assert sent[0]["NetworkInterfaces"][0]["SubnetId"] != sent[1]["NetworkInterfaces"][0]["SubnetId"]
    assert result.instance.state == "running"


def test_no_capacity_anywhere_is_a_clear_error(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    inject_error(aws.ec2, "RunInstances", "InsufficientInstanceCapacity")
    with pytest.raises(CloudError, match=r"no spare t3\.small capacity"):
        run(aws, tmp_path, pacing)
    assert key_pairs(aws) == [] and groups_named(aws, "mcpctl-sales") == []


# --------------------------------------------------------------------------------------------------
# who may reach port 22


def test_world_open_ssh_is_refused_before_anything_is_created(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    for cidr in ("0.0.0.0/0", "::/0", "10.0.0.0/16"):
        with pytest.raises(ProfileError, match="refusing"):
            run(aws, tmp_path, pacing, spec(ssh_cidr=cidr))
    assert key_pairs(aws) == [] and groups_named(aws, "mcpctl-sales") == []
    assert not (tmp_path / "mcpctl-sales").exists()


def test_caller_ip_is_detected_and_shown(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    phases: list[tuple[str, str]] = []
    result = run(
        aws,
        tmp_path,
        pacing,
        spec(ssh_cidr=None),
        ip_lookup=lambda: "192.0.2.44",
        on_phase=lambda p, d: phases.append((p, d)),
    )
    assert result.ssh_cidr == "192.0.2.44/32"
    assert ingress(aws, result.security_group_id) == [("tcp", 22, 22, "192.0.2.44/32")]
    assert any(p == "caller-ip" and "192.0.2.44" in d for p, d in phases)


# --------------------------------------------------------------------------------------------------
# plan (--dry-run)


def test_plan_changes_nothing_and_prices_the_type(aws: e.Ec2Clients, tmp_path: Path) -> None:
    p = e.plan(spec(instance_type="t4g.small"), tmp_path, clients=aws)
    assert [(s.resource, s.action) for s in p.steps] == [
        ("key-pair", "create"),
        ("security-group", "create"),
        ("ssh-rule", "authorize"),
        ("instance", "create"),
    ]
    assert p.arch == "arm64" and p.ami_id == ami_for(aws, "arm64")
    assert p.ssh_cidr == f"{MY_IP}/32"
    assert p.hourly_usd == pytest.approx(0.0168)
    assert p.monthly_usd is not None and 12 < p.monthly_usd < 20
    assert "pproximate" in p.cost_note
    assert key_pairs(aws) == [] and groups_named(aws, "mcpctl-sales") == [] and not live_instances(aws)
    assert not (tmp_path / "mcpctl-sales").exists()

    unknown = e.plan(spec(instance_type="m5.24xlarge"), tmp_path, clients=aws)
    assert unknown.hourly_usd is None and unknown.monthly_usd is None
    assert "No built-in price" in unknown.cost_note


def test_plan_after_launch_reuses(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    first = run(aws, tmp_path, pacing)
    e.stop("sales", REGION, clients=aws, pacing=pacing)
    p = e.plan(spec(ssh_cidr="198.51.100.9/32"), tmp_path, clients=aws)
    steps = [(s.resource, s.action) for s in p.steps]
    assert steps == [
        ("key-pair", "reuse"),
        ("security-group", "reuse"),
        ("ssh-rule", "authorize"),
        ("ssh-rule", "revoke"),
        ("instance", "start"),
    ]
    assert first.instance.instance_id in p.steps[-1].detail
