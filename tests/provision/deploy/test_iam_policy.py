"""The IAM policy in docs/DEPLOY.md lists exactly what the deploy modules call (plus what AWS requires
around those calls: tagging at creation, passing the roles, the services' linked roles)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parents[3]
# The variable each client goes by in provision/deploy (``c.ecs``, ``ecs``, ...): boto3 service, IAM prefix.
CLIENTS = {
    "ec2": ("ec2", "ec2"),
    "ecs": ("ecs", "ecs"),
    "elbv2": ("elbv2", "elasticloadbalancing"),
    "iam": ("iam", "iam"),
    "secrets": ("secretsmanager", "secretsmanager"),
    "logs": ("logs", "logs"),
    "autoscaling": ("application-autoscaling", "application-autoscaling"),
    "lambda_": ("lambda", "lambda"),
    "sts": ("sts", "sts"),
    "acm": ("acm", "acm"),
}
# Required by AWS around our calls, never called by name: tags given at creation need the tagging
# action, the roles are passed to ECS and Lambda, and ECS, the load balancer and autoscaling create
# their service-linked roles on first use in an account.
IMPLIED = {
    "ec2:CreateTags",
    "ecs:TagResource",
    "elasticloadbalancing:AddTags",
    "logs:TagResource",
    "secretsmanager:TagResource",
    "iam:TagRole",
    "lambda:TagResource",
    "iam:PassRole",
    "iam:CreateServiceLinkedRole",
}

# Helpers of provision/ec2/network.py the deploy modules call, and the one action each uses.
BORROWED = {"default_vpc": {"ec2:DescribeVpcs"}, "delete_security_group": {"ec2:DeleteSecurityGroup"}}


def policy_actions() -> set[str]:
    doc = (REPO / "docs" / "DEPLOY.md").read_text()
    block = re.search(r"```json\n(.*?)```", doc, re.S)
    assert block, "docs/DEPLOY.md has no ```json policy block"
    actions: set[str] = set()
    for statement in json.loads(block.group(1))["Statement"]:
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def called_actions() -> set[str]:
    source = "\n".join(path.read_text() for path in sorted((REPO / "provision" / "deploy").glob("*.py")))
    assert "def deploy_ecs(" in source and "def destroy(" in source
    clients: dict[str, Any] = {
        var: boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        for var, (service, _) in CLIENTS.items()
    }
    actions = set()
    names = "|".join(CLIENTS)
    for var, method in re.findall(rf"\b({names})\.([a-z_]+)\(", source):
        # ``ecs.find_cluster(`` is our module provision.deploy.ecs, not the client: only operations count
        api = clients[var].meta.method_to_api_mapping.get(method)
        if api:
            actions.add(f"{CLIENTS[var][1]}:{api}")
    for var, method in re.findall(rf"\b({names})\.get_paginator\(\"([a-z_]+)\"\)", source):
        actions.add(f"{CLIENTS[var][1]}:{clients[var].meta.method_to_api_mapping[method]}")
    for helper, borrowed in BORROWED.items():
        if f"{helper}(" in source:
            actions |= borrowed
    return actions


def test_iam_policy_lists_every_action_the_deploy_modules_call() -> None:
    called = called_actions()
    assert {"ecs:CreateService", "elasticloadbalancing:CreateListener", "lambda:CreateFunction"} <= called
    assert len(called) >= 60
    listed = policy_actions()
    assert called - listed == set(), "add these to the policy in docs/DEPLOY.md"
    assert listed - called == IMPLIED, "the policy grants actions the deploy modules do not use"


def test_the_borrowed_ec2_helpers_call_what_the_policy_says() -> None:
    source = (REPO / "provision" / "ec2" / "network.py").read_text()
    assert "ec2.describe_vpcs(" in source.split("def default_vpc(", 1)[1].split("\ndef ", 1)[0]
    assert (
        "ec2.delete_security_group(" in source.split("def delete_security_group(", 1)[1].split("\ndef ", 1)[0]
    )
