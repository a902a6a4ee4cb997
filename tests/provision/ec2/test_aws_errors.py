"""provision.ec2.aws_errors: botocore errors become one CloudError naming the IAM action."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from provision import ec2 as e
from provision.ec2.aws_errors import iam_action, translated
from provision.errors import CloudError, McpctlError, ProfileError
from tests.provision.ec2.helpers import (
    REGION,
    inject_error,
    spec,
)

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


def _client_error(code: str, operation: str = "RunInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "boom"}}, operation)


def test_iam_action_names_the_service() -> None:
    assert iam_action("RunInstances") == "ec2:RunInstances"
    assert iam_action("DescribeSecurityGroups") == "ec2:DescribeSecurityGroups"
    assert iam_action("GetParameter") == "ssm:GetParameter"


@pytest.mark.parametrize(
    ("code", "operation", "expected"),
    [
        ("AccessDeniedException", "GetParameter", "AWS denied ssm:GetParameter"),
        ("AuthFailure", "DescribeVpcs", "expired or invalid"),
        ("DependencyViolation", "DeleteSecurityGroup", "still in use"),
    ],
)
def test_translate_more_client_errors(code: str, operation: str, expected: str) -> None:
    err = e.translate_aws_error(_client_error(code, operation), REGION)
    assert err is not None and expected in str(err)


def test_translate_names_the_region_and_type_it_is_given() -> None:
    err = e.translate_aws_error(_client_error("InsufficientInstanceCapacity"), "eu-west-1", "t4g.nano")
    assert err is not None and err.message.startswith("AWS has no spare t4g.nano capacity in eu-west-1")
    untyped = e.translate_aws_error(_client_error("InsufficientInstanceCapacity"), "eu-west-1")
    assert untyped is not None and "no spare this instance type capacity" in untyped.message


def test_translate_other_botocore_errors() -> None:
    err = e.translate_aws_error(BotoCoreError(), REGION)
    assert isinstance(err, CloudError) and err.message.startswith(f"AWS call failed in {REGION}: ")


def test_translated_turns_botocore_errors_into_cloud_errors() -> None:
    cause = _client_error("VcpuLimitExceeded")
    with pytest.raises(CloudError, match=f"quota in {REGION}") as err, translated(REGION, "t3.small"):
        raise cause
    assert err.value.__cause__ is cause


def test_translated_lets_other_errors_through() -> None:
    ours = ProfileError("bad profile")
    with pytest.raises(McpctlError) as err, translated(REGION):
        raise ours
    assert err.value is ours
    with pytest.raises(KeyError), translated(REGION):
        raise KeyError("not from AWS")
