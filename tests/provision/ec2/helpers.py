"""What the EC2 tests share: the spec and launch they use, fault injection, and readers of the moto account.

moto fakes AWS; what is tested is our functions. moto accepts requests real EC2 would refuse and
ignores ClientToken, so the RunInstances requests we send are captured and checked as data too.
Faults moto cannot produce (quota, capacity, permission, DependencyViolation) are injected with a
botocore ``before-call`` handler, which answers instead of moto for that one operation. The handlers
a test registers are removed after it by the ``_unhook`` fixture of this directory's conftest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provision import ec2 as e

REGION = "us-east-1"
MY_IP = "203.0.113.7"


class FakeClock:
    """A clock that only moves when slept on: deadlines are reached without real waiting."""

    def __init__(self, step: float = 10.0) -> None:
        self.now, self.step, self.sleeps = 0.0, step, 0

    def clock(self) -> float:
        return self.now

    def sleep(self, _seconds: float) -> None:
        self.sleeps += 1
        self.now += self.step


def fast_pacing(clock: FakeClock) -> e.Pacing:
    """Pacing on ``clock``: no pause between polls, a deadline the fake clock reaches in 12 sleeps."""
    return e.Pacing(poll_s=0, timeout_s=120, clock=clock.clock, sleep=clock.sleep)


def moto_env(mp: pytest.MonkeyPatch, region: str) -> None:
    """Point boto3 at moto: dummy credentials in ``region``, whatever the developer's AWS settings."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        mp.delenv(var, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", region)
    # moto's ~1300 built-in images make every reset slow; tests register the few they need.
    mp.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


# botocore event handlers registered by the running test; removed after it (the clients are shared).
_HOOKS: list[tuple[Any, str, Callable[..., Any]]] = []


def remove_hooks() -> None:
    """Unregister every handler the running test registered."""
    while _HOOKS:
        client, event, handler = _HOOKS.pop()
        client.meta.events.unregister(event, handler)


def _hook(client: Any, event: str, handler: Callable[..., Any], *, first: bool = False) -> None:
    if first:  # injected faults must answer before the conftest's published-parameter handler
        client.meta.events.register_first(event, handler)
    else:
        client.meta.events.register(event, handler)
    _HOOKS.append((client, event, handler))


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


def inject_reply(client: Any, operation: str, reply: dict[str, Any]) -> list[int]:
    """Make ``operation`` answer ``reply`` (for answers moto cannot give). Returns a counter."""
    calls = [0]
    service = client.meta.service_model.service_id.hyphenize()

    def handler(**_: Any) -> tuple[_Http, dict[str, Any]]:
        calls[0] += 1
        return _Http(200), {**reply, "ResponseMetadata": {}}

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


def bare_instance(clients: e.Ec2Clients, profile: str | None = "sales", arch: str = "amd64") -> str:
    """Launch a plain instance straight through the API (tagged for ``profile`` unless None); its id."""
    tags: Any = [{"ResourceType": "instance", "Tags": [{"Key": "mcpctl:profile", "Value": profile}]}]
    reply = clients.ec2.run_instances(
        ImageId=ami_for(clients, arch),
        MinCount=1,
        MaxCount=1,
        InstanceType="t4g.small" if arch == "arm64" else "t3.small",
        TagSpecifications=tags if profile is not None else [],
    )
    return reply["Instances"][0]["InstanceId"]
