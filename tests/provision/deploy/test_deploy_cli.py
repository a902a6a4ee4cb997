"""``mcpctl deploy ecs|lambda`` and ``mcpctl destroy`` through the command line (in-process, moto):
the plan and --dry-run, refusals before any AWS call, the key never printed, destroy of a deployment."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from provision.cli import app
from provision.deploy import DeployClients
from tests.provision.deploy.helpers import (
    DATA,
    IMAGE,
    MY_CIDR,
    REGION,
    certificate,
    key_file,
    tagged_everywhere,
)

BASE = ["--image", IMAGE, "--data", DATA, "--region", REGION]


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_a_public_listener_without_a_certificate_is_refused_before_any_aws_call(
    cloud: DeployClients, keys: Path
) -> None:
    result = run("deploy", "ecs", "sales", *BASE, "--allowed-cidr", MY_CIDR)
    assert result.exit_code == 1
    assert "a public HTTPS listener needs a certificate; pass --cert-arn" in result.stderr
    assert tagged_everywhere(cloud) == []


def test_bad_data_and_bad_bounds_say_what_to_pass(cloud: DeployClients, keys: Path) -> None:
    result = run("deploy", "lambda", "sales", "--image", IMAGE, "--data", "sales.csv", "--region", REGION)
    assert result.exit_code == 1 and "is not an S3 object; pass the object's URI" in result.stderr
    bounds = run("deploy", "ecs", "sales", *BASE, "--insecure-http-internal", "--replicas", "5", "--max", "3")
    assert bounds.exit_code == 1 and "<= --max (3)" in bounds.stderr


def test_dry_run_prints_the_plan_and_its_cost_and_changes_nothing(cloud: DeployClients, keys: Path) -> None:
    cert = certificate(cloud)
    result = run(
        "deploy", "ecs", "sales", *BASE, "--cert-arn", cert, "--allowed-cidr", MY_CIDR, "--dry-run", "--json"
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and plan["allowed_cidr"] == MY_CIDR and plan["hourly_usd"] > 0.1
    assert {s["action"] for s in plan["steps"]} == {"create", "ensure"}
    assert any(f"HTTPS:443 with {cert}" in s["detail"] for s in plan["steps"])
    assert "June 2026" in plan["cost_note"]
    assert tagged_everywhere(cloud) == [] and not key_file(keys).exists()


def test_deploy_then_destroy_through_the_cli_never_prints_the_key(cloud: DeployClients, keys: Path) -> None:
    cert = certificate(cloud)
    options = ["--cert-arn", cert, "--allowed-cidr", MY_CIDR, "--no-wait", "--domain", "mcp.example.com"]
    deployed = run("deploy", "ecs", "sales", *BASE, *options, "--json")
    assert deployed.exit_code == 0, deployed.stderr
    record = json.loads(deployed.stdout)
    assert record["url"] == "https://mcp.example.com/mcp" and record["api_key_file"] == str(key_file(keys))
    key = key_file(keys).read_text().strip()
    assert key not in deployed.stdout and key not in deployed.stderr
    assert "plan for sales (ecs)" in deployed.stderr
    destroyed = run("destroy", "sales", "--yes", "--json")
    assert destroyed.exit_code == 0, destroyed.stderr
    assert any(item.startswith("load balancer") for item in json.loads(destroyed.stdout)["aws"])
    assert tagged_everywhere(cloud) == [] and not key_file(keys).exists()


def test_destroy_of_an_unknown_name_is_the_ec2_answer(cloud: DeployClients, keys: Path) -> None:
    result = run("destroy", "nothing", "--yes")
    assert result.exit_code == 2 and "no profile named 'nothing'" in result.stderr


def test_an_internal_test_deployment_takes_a_private_range_not_the_callers_address(
    cloud: DeployClients, keys: Path
) -> None:
    refused = run("deploy", "ecs", "sales", *BASE, "--insecure-http-internal", "--dry-run")
    assert refused.exit_code == 1 and "pass --allowed-cidr with your clients' private range" in refused.stderr
    planned = run(
        "deploy",
        "ecs",
        "sales",
        *BASE,
        "--insecure-http-internal",
        "--allowed-cidr",
        "172.31.0.0/16",
        "--dry-run",
    )
    assert planned.exit_code == 0, planned.stderr
    assert "no TLS; the load balancer is internal" in planned.stderr
    assert "HTTP:80 on an INTERNAL load balancer" in planned.stderr
