"""The IAM roles of a deployment, each allowed exactly what its side needs and nothing else.

- the ECS *execution* role (used by the ECS agent): pull the image, write the log group, read the
  API key secret to inject it into the container;
- the ECS *task* role (used by the server): read the one S3 object holding the data;
- the Lambda role: write the log group, read the secret, read the one S3 object.

The documents are built by plain functions so tests read exactly what is sent.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from provision.deploy.aws_errors import error_code
from provision.deploy.model import Change, DataObject, Spec, aws_name, is_ours, log_group_name, tag_list, tags
from provision.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_iam.client import IAMClient

_ECR = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)")
POLICY_NAME = "mcpctl"


def execution_role_name(name: str) -> str:
    return aws_name(name, "exec", limit=64)


def task_role_name(name: str) -> str:
    return aws_name(name, "task", limit=64)


def lambda_role_name(name: str) -> str:
    return aws_name(name, "fn", limit=64)


def trust_policy(service: str) -> dict[str, Any]:
    """Who may assume the role: the one AWS service that runs the deployment."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def log_group_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:logs:{region}:{account}:log-group:{log_group_name(name)}:*"


def _logs(region: str, account: str, name: str) -> dict[str, Any]:
    return {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": log_group_arn(region, account, name),
    }


def _secret(secret_arn: str) -> dict[str, Any]:
    return {
        "Sid": "ReadApiKey",
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": secret_arn,
    }


def _data(data: DataObject) -> dict[str, Any]:
    return {"Sid": "ReadDataObject", "Effect": "Allow", "Action": "s3:GetObject", "Resource": data.arn}


def _ecr_pull(image: str) -> list[dict[str, Any]]:
    match = _ECR.match(image)
    if not match:
        return []  # a public registry needs no ECR permission
    account, region, repo = match.groups()
    return [
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {
            "Sid": "PullImage",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            "Resource": f"arn:aws:ecr:{region}:{account}:repository/{repo}",
        },
    ]


def execution_policy(spec: Spec, account: str, secret_arn: str) -> dict[str, Any]:
    """The ECS agent's rights: pull the image, write the logs, read the API key to inject it."""
    statements = [*_ecr_pull(spec.image), _logs(spec.region, account, spec.name), _secret(secret_arn)]
    return {"Version": "2012-10-17", "Statement": statements}


def task_policy(spec: Spec) -> dict[str, Any]:
    """The server's rights inside a task: read the one data object."""
    return {"Version": "2012-10-17", "Statement": [_data(spec.data)]}


def lambda_policy(spec: Spec, account: str, secret_arn: str) -> dict[str, Any]:
    """The function's rights: write its logs, read the API key and the one data object."""
    statements = [_logs(spec.region, account, spec.name), _secret(secret_arn), _data(spec.data)]
    return {"Version": "2012-10-17", "Statement": statements}


def find_role(iam: IAMClient, role: str, name: str) -> str | None:
    """The ARN of role ``role`` if it is deployment ``name``'s, None if absent.

    Raises:
        CloudError: a role of that name exists without the deployment's tag.
    """
    from botocore.exceptions import ClientError

    try:
        found = iam.get_role(RoleName=role)["Role"]
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise
    if not is_ours(iam.list_role_tags(RoleName=role).get("Tags"), name):
        raise CloudError(
            f"IAM role {role} exists but was not created by mcpctl for '{name}'",
            hint="delete or rename it, or deploy under another name",
        )
    return found["Arn"]


def ensure_role(
    iam: IAMClient,
    spec: Spec,
    role: str,
    service: str,
    policy: dict[str, Any],
    shape: Any,
    changes: list[Change],
) -> str:
    """Find or create ``role`` (assumable by ``service``) and make its one inline policy ``policy``."""
    from botocore.exceptions import ClientError

    arn = find_role(iam, role, spec.name)
    if arn is None:
        arn = iam.create_role(
            RoleName=role,
            AssumeRolePolicyDocument=json.dumps(trust_policy(service)),
            Description=f"mcpctl {spec.name}",
            Tags=tag_list(tags(spec, spec.name, shape)),
        )["Role"]["Arn"]
        changes.append(Change("iam-role", "created", role))
    try:
        current = iam.get_role_policy(RoleName=role, PolicyName=POLICY_NAME)["PolicyDocument"]
        have: Any = json.loads(current) if isinstance(current, str) else current
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        have = None
    if have != policy:
        iam.put_role_policy(RoleName=role, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
        changes.append(Change("iam-policy", "set", f"{role}/{POLICY_NAME}"))
    return arn


def delete_role(iam: IAMClient, role: str, name: str) -> bool:
    """Delete deployment ``name``'s role ``role`` and its inline policies; False if it was absent."""
    from botocore.exceptions import ClientError

    try:
        if not is_ours(iam.list_role_tags(RoleName=role).get("Tags"), name):
            return False  # a same-named role without our tag is not ours to delete
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return False
        raise
    for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        iam.delete_role_policy(RoleName=role, PolicyName=policy)
    iam.delete_role(RoleName=role)
    return True
