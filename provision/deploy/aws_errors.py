"""botocore errors of the deploy modules -> one actionable CloudError naming the IAM action.

The EC2 room's translation covers credentials, endpoints and generic failures; here a denial names the
action of the right service (``ecs:CreateService``, not ``ec2:CreateService``) and points at
docs/DEPLOY.md, where the policy a deployment needs is listed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cache
from typing import TypeVar

from provision.ec2.aws_errors import translate_aws_error, translating
from provision.errors import CloudError

# The IAM prefix of each boto3 service the deploy modules call, in lookup order.
_SERVICES = {
    "ec2": "ec2",
    "ecs": "ecs",
    "elbv2": "elasticloadbalancing",
    "iam": "iam",
    "secretsmanager": "secretsmanager",
    "logs": "logs",
    "application-autoscaling": "application-autoscaling",
    "lambda": "lambda",
    "sts": "sts",
    "acm": "acm",
}
_DENIED = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}
_T = TypeVar("_T")


@cache
def _operations() -> dict[str, str]:
    import botocore.session

    session = botocore.session.get_session()
    found: dict[str, str] = {}
    for service, prefix in reversed(_SERVICES.items()):  # earlier services win a shared name
        for operation in session.get_service_model(service).operation_names:
            found[operation] = prefix
    return found


def iam_action(operation: str) -> str:
    """``CreateService`` -> ``ecs:CreateService`` (the service whose API has that operation)."""
    return f"{_operations().get(operation, 'unknown')}:{operation}"


def translated(region: str) -> AbstractContextManager[None]:
    """Translate botocore errors raised inside the block into CloudError (McpctlErrors pass through).

    Raises:
        CloudError: a botocore error was raised in the block.
    """
    return translating(lambda exc: _translate(exc, region))


def _translate(exc: BaseException, region: str) -> CloudError | None:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, msg, op = err.get("Code", ""), err.get("Message", ""), exc.operation_name
        if code in _DENIED:
            return CloudError(
                f"AWS denied {iam_action(op)}: your credentials lack that permission",
                hint="add it to your IAM policy (docs/DEPLOY.md lists every action a deployment uses)",
            )
        if code not in ("AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken"):
            return CloudError(
                f"AWS {op} failed in {region}: {code}: {msg}".rstrip(": "),
                hint="fix what AWS names (docs/DEPLOY.md lists what a deployment needs), then re-run",
            )
    return translate_aws_error(exc, region)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def unless_missing(call: Callable[[], _T]) -> _T | None:
    """``call()``, or None when AWS answers that its resource does not exist (ResourceNotFoundException)."""
    from botocore.exceptions import ClientError

    try:
        return call()
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
