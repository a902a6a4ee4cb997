"""The Lambda shape: one function from the container image's ``lambda`` target, and its function URL.

The function answers stateless streamable HTTP with JSON responses (a buffered function URL cannot
hold an SSE stream open). The URL's auth type is NONE because the server checks the API key itself,
on every request, against the key it read from Secrets Manager at cold start; AWS requires both
``lambda:InvokeFunctionUrl`` and ``lambda:InvokeFunction`` grants for such a URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.deploy.aws_errors import error_code, unless_missing
from provision.deploy.model import (
    API_KEY_SECRET_ENV,
    DATA_ENV,
    Change,
    LambdaSpec,
    aws_name,
    log_group_name,
    tags,
)
from provision.ec2.model import Pacing
from provision.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

#: The only writable directory of a Lambda function: the data's local copy and its cache live there.
LAMBDA_CACHE_DIR = "/tmp"  # noqa: S108 - Lambda's own scratch space, private to the function
HANDLER = "mcp_sales.http.lambda_handler.handler"
URL_STATEMENTS = ("mcpctl-url", "mcpctl-url-invoke")


def function_name(name: str) -> str:
    return aws_name(name, limit=64)


def function_request(spec: LambdaSpec, role_arn: str, secret_arn: str) -> dict[str, Any]:
    """The CreateFunction request (without tags): the key's *secret ARN* in the environment, never the key."""
    return {
        "FunctionName": function_name(spec.name),
        "PackageType": "Image",
        "Code": {"ImageUri": spec.image},
        "Role": role_arn,
        "MemorySize": spec.memory,
        "Timeout": spec.timeout_s,
        "ImageConfig": {"Command": [HANDLER]},
        "Environment": {
            "Variables": {
                API_KEY_SECRET_ENV: secret_arn,
                DATA_ENV: spec.data.uri,
                "MCP_SALES_CACHE_DIR": LAMBDA_CACHE_DIR,
            }
        },
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": log_group_name(spec.name)},
    }


def find_function(lambda_: LambdaClient, name: str) -> dict[str, Any] | None:
    """The deployment's function (its ``Configuration`` and ``Tags``), or None."""
    found = unless_missing(lambda: lambda_.get_function(FunctionName=function_name(name)))
    if found is None:
        return None
    if (found.get("Tags") or {}).get("mcpctl:profile") != name:
        raise CloudError(
            f"Lambda function {function_name(name)} exists but was not created by mcpctl for '{name}'",
            hint="delete or rename it, or deploy under another name",
        )
    return dict(found)


def _wait_ready(lambda_: LambdaClient, name: str, pacing: Pacing) -> None:
    deadline = pacing.clock() + pacing.timeout_s
    while True:
        config = lambda_.get_function_configuration(FunctionName=function_name(name))
        state, update = config.get("State", "Active"), config.get("LastUpdateStatus", "Successful")
        if state == "Failed" or update == "Failed":
            reason = config.get("StateReason") or config.get("LastUpdateStatusReason") or "no reason given"
            raise CloudError(
                f"Lambda could not prepare {function_name(name)}: {reason}",
                hint="check that --image is the image's lambda target and that Lambda may pull it",
            )
        if state == "Active" and update == "Successful":
            return
        if pacing.clock() >= deadline:
            raise CloudError(
                f"Lambda function {function_name(name)} was still {state} after {pacing.timeout_s:.0f} s",
                hint="re-run deploy to keep waiting",
            )
        pacing.sleep(pacing.poll_s)


def _create(lambda_: LambdaClient, request: dict[str, Any], spec: LambdaSpec, pacing: Pacing) -> None:
    from botocore.exceptions import ClientError

    deadline = pacing.clock() + pacing.timeout_s
    while True:
        try:
            lambda_.create_function(**request, Tags=tags(spec, spec.name, "lambda"))
            return
        except ClientError as exc:
            # A role created seconds ago is not assumable yet (IAM is eventually consistent).
            if error_code(exc) != "InvalidParameterValueException" or pacing.clock() >= deadline:
                raise
        pacing.sleep(pacing.poll_s)


def ensure_function(
    lambda_: LambdaClient, spec: LambdaSpec, request: dict[str, Any], pacing: Pacing, changes: list[Change]
) -> str:
    """Create the function, or bring the existing one to ``request``; returns its ARN."""
    found = find_function(lambda_, spec.name)
    if found is None:
        _create(lambda_, request, spec, pacing)
        changes.append(Change("function", "created", function_name(spec.name)))
    else:
        config, code = found["Configuration"], found.get("Code", {})
        if code.get("ImageUri") != spec.image:
            lambda_.update_function_code(FunctionName=function_name(spec.name), ImageUri=spec.image)
            changes.append(Change("function", "updated", f"image {spec.image}"))
            _wait_ready(lambda_, spec.name, pacing)
        wanted = {k: request[k] for k in ("Role", "MemorySize", "Timeout", "Environment")}
        have = {k: config.get(k) for k in ("Role", "MemorySize", "Timeout")}
        have["Environment"] = {"Variables": (config.get("Environment") or {}).get("Variables", {})}
        if have != wanted:
            lambda_.update_function_configuration(FunctionName=function_name(spec.name), **wanted)
            changes.append(Change("function", "updated", "configuration"))
    _wait_ready(lambda_, spec.name, pacing)
    return str(lambda_.get_function_configuration(FunctionName=function_name(spec.name))["FunctionArn"])


def ensure_url(lambda_: LambdaClient, name: str, changes: list[Change]) -> str:
    """The function URL (created if missing) and the two grants that let anyone reach the function.

    Anyone may *reach* it; only a request with the API key gets an answer beyond 401.
    """
    from botocore.exceptions import ClientError

    fn = function_name(name)
    try:
        url = lambda_.get_function_url_config(FunctionName=fn)["FunctionUrl"]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        url = lambda_.create_function_url_config(FunctionName=fn, AuthType="NONE", InvokeMode="BUFFERED")[
            "FunctionUrl"
        ]
        changes.append(Change("function-url", "created", url))
    present = _statement_ids(lambda_, fn)
    if URL_STATEMENTS[0] not in present:
        lambda_.add_permission(
            FunctionName=fn,
            StatementId=URL_STATEMENTS[0],
            Action="lambda:InvokeFunctionUrl",
            Principal="*",
            FunctionUrlAuthType="NONE",
        )
        changes.append(
            Change("permission", "added", "lambda:InvokeFunctionUrl (the URL; the app checks the key)")
        )
    if URL_STATEMENTS[1] not in present:
        lambda_.add_permission(
            FunctionName=fn,
            StatementId=URL_STATEMENTS[1],
            Action="lambda:InvokeFunction",
            Principal="*",
            InvokedViaFunctionUrl=True,
        )
        changes.append(Change("permission", "added", "lambda:InvokeFunction via the URL only"))
    return url


def _statement_ids(lambda_: LambdaClient, fn: str) -> set[str]:
    import json

    found = unless_missing(lambda: lambda_.get_policy(FunctionName=fn))
    if found is None:
        return set()
    policy = json.loads(found["Policy"])
    return {str(s.get("Sid")) for s in policy.get("Statement", [])}


def delete_function(lambda_: LambdaClient, name: str) -> bool:
    """Delete the deployment's function URL and function; False if there was no such function of ours."""
    found = unless_missing(lambda: lambda_.get_function(FunctionName=function_name(name)))
    if found is None or (found.get("Tags") or {}).get("mcpctl:profile") != name:
        return False
    unless_missing(lambda: lambda_.delete_function_url_config(FunctionName=function_name(name)))
    lambda_.delete_function(FunctionName=function_name(name))
    return True
