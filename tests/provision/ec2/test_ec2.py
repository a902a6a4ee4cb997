"""provision.ec2 against moto: launch, idempotency, cleanup, lifecycle, destroy, error translation.

moto fakes AWS; what is tested is our functions. moto accepts requests real EC2 would refuse and
ignores ClientToken, so the RunInstances requests we send are captured and checked as data too.
Faults moto cannot produce (quota, capacity, permission, DependencyViolation) are injected with a
botocore ``before-call`` handler, which answers instead of moto for that one operation.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from provision import __version__
from provision import ec2 as e
from provision.ec2 import keys as ec2_keys
from provision.ec2.cloudinit import USER_DATA_LIMIT
from provision.errors import CloudError, ConnectError, McpctlError, ProfileError

REGION = "us-east-1"
MY_IP = "203.0.113.7"
REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------------------------------
# fixtures and helpers


class FakeClock:
    """A clock that only moves when slept on: deadlines are reached without real waiting."""

    def __init__(self, step: float = 10.0) -> None:
        self.now, self.step, self.sleeps = 0.0, step, 0

    def clock(self) -> float:
        return self.now

    def sleep(self, _seconds: float) -> None:
        self.sleeps += 1
        self.now += self.step


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pacing(fake_clock: FakeClock) -> e.Pacing:
    return e.Pacing(poll_s=0, timeout_s=120, clock=fake_clock.clock, sleep=fake_clock.sleep)


# botocore event handlers registered by the running test; removed after it (the clients are shared).
_HOOKS: list[tuple[Any, str, Callable[..., Any]]] = []


def _hook(client: Any, event: str, handler: Callable[..., Any], *, first: bool = False) -> None:
    if first:  # injected faults must answer before the conftest's published-parameter handler
        client.meta.events.register_first(event, handler)
    else:
        client.meta.events.register(event, handler)
    _HOOKS.append((client, event, handler))


@pytest.fixture(autouse=True)
def _unhook() -> Iterator[None]:
    """Remove the event handlers a test registered (the module's clients are shared)."""
    yield
    while _HOOKS:
        client, event, handler = _HOOKS.pop()
        client.meta.events.unregister(event, handler)


def ami_for(clients: e.Ec2Clients, arch: str) -> str:
    return clients.ssm.get_parameter(Name=e.AMI_PARAMETER.format(arch=arch))["Parameter"]["Value"]


class _Http:
    """The little of an HTTP response botocore reads when a before-call handler answers."""

    def __init__(self, status_code: int = 400) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""


def inject_error(
    client: Any, operation: str, code: str, *, times: int | None = None, message: str = "injected"
) -> list[int]:
    """Make ``operation`` fail with ``code`` (the first ``times`` calls, or always). Returns a counter."""
    calls = [0]
    service = client.meta.service_model.service_id.hyphenize()

    def handler(**_: Any) -> tuple[_Http, dict[str, Any]] | None:
        if times is not None and calls[0] >= times:
            return None
        calls[0] += 1
        return _Http(), {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}

    _hook(client, f"before-call.{service}.{operation}", handler, first=True)
    return calls


def capture_run_instances(clients: e.Ec2Clients) -> list[dict[str, Any]]:
    """Record the parameters of every RunInstances request (before botocore base64-encodes UserData)."""
    seen: list[dict[str, Any]] = []

    def handler(params: dict[str, Any], **_: Any) -> None:
        seen.append(json.loads(json.dumps(params, default=str)))

    _hook(clients.ec2, "provide-client-params.ec2.RunInstances", handler)
    return seen


def spec(**kw: Any) -> e.Ec2Spec:
    values: dict[str, Any] = {
        "profile": "sales",
        "region": REGION,
        "ssh_cidr": f"{MY_IP}/32",
        "owner": "ann@laptop",
    }
    values.update(kw)
    return e.Ec2Spec(**values)


def run(
    clients: e.Ec2Clients, keys: Path, pacing: e.Pacing, s: e.Ec2Spec | None = None, **kw: Any
) -> e.Ec2Launch:
    kw.setdefault("ssh_probe", lambda _h, _p, _t: True)
    return e.launch(s or spec(), keys, clients=clients, pacing=pacing, **kw)


def tags_of(obj: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in obj.get("Tags", [])}


def live_instances(clients: e.Ec2Clients, profile: str = "sales") -> list[Any]:
    reply = clients.ec2.describe_instances(
        Filters=[
            {"Name": "tag:mcpctl:profile", "Values": [profile]},
            {"Name": "instance-state-name", "Values": list(e.LIVE_STATES)},
        ]
    )
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def ingress(clients: e.Ec2Clients, sg_id: str) -> list[tuple[str, Any, Any, str]]:
    group = clients.ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"][0]
    rules = []
    for p in group["IpPermissions"]:
        for r in p.get("IpRanges", []):
            rules.append((p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), r["CidrIp"]))
    return sorted(rules)


def key_pairs(clients: e.Ec2Clients) -> list[Any]:
    return clients.ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]


def groups_named(clients: e.Ec2Clients, name: str) -> list[Any]:
    return clients.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])[
        "SecurityGroups"
    ]


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


def test_mcpctl_key_pair_that_differs_is_replaced(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    other = e.ensure_client_key(tmp_path / "elsewhere", "sales")
    aws.ec2.import_key_pair(
        KeyName="mcpctl-sales",
        PublicKeyMaterial=other.public_line.encode(),
        TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": [{"Key": "mcpctl:profile", "Value": "sales"}]}
        ],
    )
    result = run(aws, tmp_path / "keys", pacing)
    assert ("key-pair", "replaced") in {(c.resource, c.action) for c in result.changes}
    (kp,) = key_pairs(aws)
    assert kp["PublicKey"].split()[1] == result.key.public_line.split()[1] != other.public_line.split()[1]


def test_foreign_key_pair_with_our_name_is_refused(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    other = e.ensure_client_key(tmp_path / "elsewhere", "sales")
    aws.ec2.import_key_pair(KeyName="mcpctl-sales", PublicKeyMaterial=other.public_line.encode())
    with pytest.raises(McpctlError, match="not created by mcpctl"):
        run(aws, tmp_path / "keys", pacing)
    assert not live_instances(aws)
    (kp,) = key_pairs(aws)  # untouched
    assert kp["PublicKey"].split()[1] == other.public_line.split()[1]


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


def test_world_open_ssh_is_refused_before_anything_is_created(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    for cidr in ("0.0.0.0/0", "::/0", "10.0.0.0/16"):
        with pytest.raises(ProfileError, match="refusing"):
            run(aws, tmp_path, pacing, spec(ssh_cidr=cidr))
    assert key_pairs(aws) == [] and groups_named(aws, "mcpctl-sales") == []
    assert not (tmp_path / "mcpctl-sales").exists()


def test_normalize_cidr() -> None:
    assert e.normalize_cidr("203.0.113.7") == "203.0.113.7/32"
    assert e.normalize_cidr(" 2001:db8::1 ") == "2001:db8::1/128"
    assert e.normalize_cidr("198.51.100.0/24") == "198.51.100.0/24"
    assert e.normalize_cidr("0.0.0.0/0", allow_world=True) == "0.0.0.0/0"
    with pytest.raises(ProfileError, match="refusing"):
        e.normalize_cidr("198.51.100.0/23")
    with pytest.raises(ProfileError, match="not an IP"):
        e.normalize_cidr("my-laptop")


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


# --------------------------------------------------------------------------------------------------
# error translation


def test_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probe: no network
    clients = e.make_clients(REGION, boto3.Session())
    with pytest.raises(CloudError, match="no AWS credentials") as err:
        e.find_instance("sales", REGION, clients=clients)
    assert "aws sso login" in str(err.value)


def test_missing_ami_parameter_names_the_region(aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing) -> None:
    other = e.make_clients("eu-north-1")  # the fixture seeded only us-east-1
    with pytest.raises(CloudError, match=r"Ubuntu 24\.04 AMI parameter in region eu-north-1") as err:
        e.launch(spec(region="eu-north-1"), tmp_path, clients=other, pacing=pacing, ssh_probe=lambda *_: True)
    assert err.value.hint and "--region" in err.value.hint


def test_denied_ssm_names_the_ssm_action(aws: e.Ec2Clients, tmp_path: Path) -> None:
    inject_error(aws.ssm, "GetParameter", "AccessDeniedException")
    with pytest.raises(CloudError, match="AWS denied ssm:GetParameter"):
        e.plan(spec(), tmp_path, clients=aws)


@pytest.mark.parametrize(
    ("code", "operation", "expected"),
    [
        ("UnauthorizedOperation", "RunInstances", "AWS denied ec2:RunInstances"),
        ("AccessDenied", "TerminateInstances", "AWS denied ec2:TerminateInstances"),
        ("InstanceLimitExceeded", "RunInstances", "quota"),
        ("VcpuLimitExceeded", "RunInstances", "quota"),
        ("InsufficientInstanceCapacity", "RunInstances", "no spare t3.small capacity"),
        ("Unsupported", "RunInstances", "t3.small is not offered"),
        ("ParameterNotFound", "GetParameter", "no Ubuntu 24.04 AMI parameter"),
        ("ExpiredToken", "DescribeInstances", "expired or invalid"),
        ("OptInRequired", "DescribeInstances", "not enabled"),
        ("Weird", "DescribeVpcs", "AWS DescribeVpcs failed in us-east-1: Weird: boom"),
    ],
)
def test_translate_client_errors(code: str, operation: str, expected: str) -> None:
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": code, "Message": "boom"}}, operation)
    err = e.translate_aws_error(exc, REGION, "t3.small")
    assert err is not None and expected in str(err)
    assert isinstance(err, CloudError) and err.exit_code == CloudError.exit_code


def test_translate_leaves_foreign_errors_alone() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    assert e.translate_aws_error(ValueError("x"), REGION) is None
    assert "no AWS credentials" in str(e.translate_aws_error(NoCredentialsError(), REGION))
    unreachable = e.translate_aws_error(EndpointConnectionError(endpoint_url="https://x"), "mars-1")
    assert unreachable is not None and "mars-1" in str(unreachable)


# --------------------------------------------------------------------------------------------------
# client key


def test_client_key_is_generated_once_and_private(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = e.ensure_client_key(keys, "sales")
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert (keys / "mcpctl-sales.pub").read_text().strip() == first.public_line
    assert first.public_line.startswith("ssh-ed25519 ")
    first.path.chmod(0o644)
    second = e.ensure_client_key(keys, "sales")
    assert second == first
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600  # tightened: OpenSSH would refuse it


def test_unreadable_client_key_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "mcpctl-sales").write_text("not a key")
    with pytest.raises(McpctlError, match="cannot read the SSH client key"):
        e.ensure_client_key(tmp_path, "sales")


# --------------------------------------------------------------------------------------------------
# waiting for SSH


def _serve_once(payload: bytes) -> tuple[int, threading.Thread]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.sendall(payload)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", True),
        (b"a pre-banner line\r\nSSH-2.0-x\r\n", True),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", False),
        (b"SSH-2.0-no newline yet", False),
    ],
)
def test_ssh_banner_probe(payload: bytes, expected: bool) -> None:
    port, thread = _serve_once(payload)
    assert e.ssh_banner_probe("127.0.0.1", port, 2.0) is expected
    thread.join(2)


def test_ssh_banner_probe_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        assert e.ssh_banner_probe("127.0.0.1", port, 1.0) is False


def test_wait_ssh_polls_until_the_banner(pacing: e.Pacing, fake_clock: FakeClock) -> None:
    answers = iter([False, False, True])
    seen: list[tuple[str, int]] = []

    def probe(host: str, port: int, _t: float) -> bool:
        seen.append((host, port))
        return next(answers)

    e.wait_ssh("198.51.100.1", 22, probe=probe, pacing=pacing)
    assert seen == [("198.51.100.1", 22)] * 3
    assert fake_clock.sleeps == 2


def test_wait_ssh_deadline(pacing: e.Pacing) -> None:
    with pytest.raises(ConnectError, match=r"198\.51\.100\.1:22"):
        e.wait_ssh("198.51.100.1", probe=lambda _h, _p, _t: False, pacing=pacing)


# --------------------------------------------------------------------------------------------------
# the IAM policy in docs/EC2.md lists exactly what the EC2 modules call


def _policy_actions() -> set[str]:
    doc = (REPO / "docs" / "EC2.md").read_text()
    block = re.search(r"```json\n(.*?)```", doc, re.S)
    assert block, "docs/EC2.md has no ```json policy block"
    policy = json.loads(block.group(1))
    actions: set[str] = set()
    for statement in policy["Statement"]:
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def _called_actions() -> set[str]:
    # Every module of the AWS room below the profile-level layer (provisioning, lifecycle).
    profile_level = {"provisioning.py", "lifecycle.py"}
    source = "\n".join(
        path.read_text()
        for path in sorted((REPO / "provision" / "ec2").glob("*.py"))
        if path.name not in profile_level
    )
    assert "def launch(" in source and "def run_instance(" in source
    clients = {
        "ec2": boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"),
        "ssm": boto3.client("ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"),
    }
    actions = set()
    for service, method in re.findall(r"\b(ec2|ssm)\.([a-z_]+)\(", source):
        if method == "get_waiter":
            continue
        api = clients[service].meta.method_to_api_mapping.get(method)
        assert api, f"{service}.{method} is not a boto3 {service} operation"
        actions.add(f"{service}:{api}")
    waiters = set(re.findall(r'"(instance_[a-z]+)"', source))
    assert waiters >= {"instance_running", "instance_stopped", "instance_terminated"}
    for waiter in waiters:
        operation = clients["ec2"].get_waiter(waiter).config.operation  # type: ignore[attr-defined]
        actions.add(f"ec2:{operation}")
    return actions


def test_iam_policy_lists_every_action_the_ec2_modules_call() -> None:
    called = _called_actions()
    assert len(called) >= 15 and "ec2:RunInstances" in called and "ssm:GetParameter" in called
    listed = _policy_actions()
    assert called - listed == set(), "add these to the policy in docs/EC2.md"
    # CreateTags is required by TagSpecifications even though it is never called directly.
    assert listed - called == {"ec2:CreateTags"}, "the policy grants actions the EC2 modules do not use"


def test_key_match_falls_back_to_the_ec2_fingerprint(tmp_path: Path) -> None:
    # Without PublicKey in the answer, EC2's fingerprint of an imported ed25519 key is the OpenSSH one.
    import asyncssh

    key = e.ensure_client_key(tmp_path, "sales")
    fingerprint = asyncssh.read_private_key(key.path).get_fingerprint("sha256")  # "SHA256:..."
    assert ec2_keys.same_key(ec2_keys.RemoteKey(None, fingerprint, True), key)
    assert ec2_keys.same_key(ec2_keys.RemoteKey(None, fingerprint.removeprefix("SHA256:") + "=", True), key)
    other = e.ensure_client_key(tmp_path / "other", "sales")
    assert not ec2_keys.same_key(ec2_keys.RemoteKey(None, fingerprint, True), other)
    assert not ec2_keys.same_key(ec2_keys.RemoteKey(other.public_line.split()[1], None, True), key)
