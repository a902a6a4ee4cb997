"""deploy lambda against moto: the function's request (the secret's ARN, never the key), its URL and
the two grants, the idempotent re-run, the failure cleanup, destroy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.deploy import DeployClients, deploy_lambda, destroy_deployment, find_deployment, plan_lambda
from provision.ec2.model import Pacing
from provision.errors import CloudError
from tests.provision.deploy.helpers import capture, count_calls, key_file, lambda_spec, tagged_everywhere
from tests.provision.ec2.helpers import inject_error


def test_the_function_gets_the_secrets_arn_and_a_url_only_the_key_opens(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    functions = capture(cloud.lambda_, "CreateFunction")
    urls = capture(cloud.lambda_, "CreateFunctionUrlConfig")
    grants = capture(cloud.lambda_, "AddPermission")
    result = deploy_lambda(lambda_spec(), clients=cloud, keys=keys, pacing=pacing)
    (request,) = functions
    key = key_file(keys).read_text().strip()
    assert request["PackageType"] == "Image" and request["ImageConfig"]["Command"] == [
        "mcp_sales.http.lambda_handler.handler"
    ]
    variables = request["Environment"]["Variables"]
    assert variables["MCP_API_KEY_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert "MCP_API_KEY" not in variables and key not in json.dumps(request)
    assert variables["MCP_SALES_DATA"] == "s3://sales-bucket/exports/sales.parquet"
    assert urls[0]["AuthType"] == "NONE" and urls[0]["InvokeMode"] == "BUFFERED"
    assert {(g["Action"], g.get("FunctionUrlAuthType"), g.get("InvokedViaFunctionUrl")) for g in grants} == {
        ("lambda:InvokeFunctionUrl", "NONE", None),
        ("lambda:InvokeFunction", None, True),
    }
    assert result.record.url.endswith("/mcp") and result.record.shape == "lambda"
    role = cloud.iam.get_role_policy(RoleName="mcpctl-sales-fn", PolicyName="mcpctl")["PolicyDocument"]
    reads = [s for s in role["Statement"] if s["Action"] == "s3:GetObject"]
    assert [s["Resource"] for s in reads] == ["arn:aws:s3:::sales-bucket/exports/sales.parquet"]


def test_rerun_creates_nothing_and_plan_says_keep(cloud: DeployClients, keys: Path, pacing: Pacing) -> None:
    deploy_lambda(lambda_spec(), clients=cloud, keys=keys, pacing=pacing)
    before = sorted(tagged_everywhere(cloud))
    plan = plan_lambda(lambda_spec(), cloud)
    assert [s.action for s in plan.steps if s.resource != "function-url"] == ["keep"] * 4
    verbs = ("Create", "Put", "Add", "Update")
    calls = [count_calls(c, verbs) for c in (cloud.lambda_, cloud.iam, cloud.secrets, cloud.logs)]
    again = deploy_lambda(lambda_spec(), clients=cloud, keys=keys, pacing=pacing)
    assert again.changes == () and [c for found in calls for c in found] == []
    assert sorted(tagged_everywhere(cloud)) == before


def test_a_new_image_updates_the_function_in_place(cloud: DeployClients, keys: Path, pacing: Pacing) -> None:
    deploy_lambda(lambda_spec(), clients=cloud, keys=keys, pacing=pacing)
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mcp-sales:1.1"
    again = deploy_lambda(lambda_spec(image=image), clients=cloud, keys=keys, pacing=pacing)
    assert [(c.resource, c.action) for c in again.changes] == [("function", "updated")]
    code = cloud.lambda_.get_function(FunctionName="mcpctl-sales")["Code"]
    assert code["ImageUri"] == image


def test_a_failed_first_deploy_removes_what_it_created(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    inject_error(cloud.lambda_, "CreateFunctionUrlConfig", "AccessDeniedException")
    with pytest.raises(CloudError, match=r"AWS denied lambda:CreateFunctionUrlConfig") as info:
        deploy_lambda(lambda_spec(), clients=cloud, keys=keys, pacing=pacing)
    assert info.value.hint and "everything this first deploy created was removed" in info.value.hint
    assert tagged_everywhere(cloud) == []
    assert find_deployment("sales") is None


def test_destroy_removes_the_function_and_everything_else(
    cloud: DeployClients, keys: Path, pacing: Pacing
) -> None:
    deploy_lambda(lambda_spec(), clients=cloud, keys=keys, pacing=pacing)
    result = destroy_deployment("sales", clients_for=lambda _r: cloud, keys=keys, pacing=pacing)
    assert "function mcpctl-sales" in result.aws and "IAM role mcpctl-sales-fn" in result.aws
    assert tagged_everywhere(cloud) == [] and not key_file(keys).exists()
