"""The IAM policy in docs/EC2.md lists exactly what the EC2 modules call."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3

from tests.provision.ec2.helpers import (
    REGION,
)

REPO = Path(__file__).resolve().parents[3]


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
