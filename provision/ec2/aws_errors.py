"""botocore errors -> one actionable :class:`~provision.errors.CloudError`, naming the IAM action.

AWS errors enter mcpctl only through the EC2 modules, and each public function there runs its AWS
calls inside :func:`translated`, so callers only ever see the mcpctl error tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from provision.errors import CloudError, McpctlError

if TYPE_CHECKING:  # botocore is imported lazily at run time: `mcpctl --help` must not load it
    from botocore.exceptions import ClientError

# The IAM service of each operation we call on a non-EC2 client (everything else is ec2:).
_IAM_SERVICE = {"GetParameter": "ssm"}
_DENIED = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}
_BAD_CREDENTIALS = {
    "AuthFailure",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "SignatureDoesNotMatch",
}


def iam_action(operation: str) -> str:
    """The IAM action of an API operation we call: ``RunInstances`` -> ``ec2:RunInstances``."""
    return f"{_IAM_SERVICE.get(operation, 'ec2')}:{operation}"


def translated(region: str, instance_type: str | None = None) -> AbstractContextManager[None]:
    """Translate botocore errors raised inside the block into CloudError (McpctlErrors pass through).

    Raises:
        CloudError: a botocore error was raised in the block.
    """
    return translating(lambda exc: translate_aws_error(exc, region, instance_type))


@contextmanager
def translating(translate: Callable[[BaseException], CloudError | None]) -> Iterator[None]:
    """Raise ``translate(exc)`` for an error of the block; McpctlErrors, and what it maps to None, pass."""
    try:
        yield
    except McpctlError:
        raise
    except Exception as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from exc


def translate_aws_error(
    exc: BaseException, region: str, instance_type: str | None = None
) -> CloudError | None:
    """One clear CloudError for a botocore exception, or None if ``exc`` is not from botocore."""
    from botocore import exceptions as bx

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return CloudError(
            "no AWS credentials found", hint="run `aws configure` or `aws sso login`, or set AWS_PROFILE"
        )
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return CloudError(
            f"cannot reach the AWS API in region {region!r}",
            hint="check the region name and your network connection",
        )
    if isinstance(exc, bx.ClientError):
        return _client_error(exc, region, instance_type)
    if isinstance(exc, bx.BotoCoreError):
        return CloudError(
            f"AWS call failed in {region}: {exc}", hint="check your AWS credentials and network, then re-run"
        )
    return None


def _client_error(exc: ClientError, region: str, instance_type: str | None) -> CloudError:
    err = exc.response.get("Error", {})
    code, msg, op = err.get("Code", ""), err.get("Message", ""), exc.operation_name
    what = instance_type or "this instance type"
    if code in _DENIED:
        return CloudError(
            f"AWS denied {iam_action(op)}: your credentials lack that permission",
            hint="add it to your IAM policy (docs/EC2.md lists every action mcpctl uses); "
            "`aws sts decode-authorization-message` explains an encoded denial",
        )
    if code in _BAD_CREDENTIALS:
        return CloudError(
            "AWS rejected your credentials (expired or invalid)",
            hint="refresh them (`aws sso login`) or check AWS_PROFILE / AWS_ACCESS_KEY_ID",
        )
    if code in ("InstanceLimitExceeded", "VcpuLimitExceeded"):
        return CloudError(
            f"your account's on-demand instance (vCPU) quota in {region} is used up",
            hint="stop or destroy other instances, or request a higher 'Running On-Demand Standard "
            "instances' quota in the Service Quotas console",
        )
    if code == "InsufficientInstanceCapacity":
        return CloudError(
            f"AWS has no spare {what} capacity in {region} right now (every zone tried)",
            hint="retry in a few minutes, or choose another --instance-type or --region",
        )
    if code == "Unsupported":
        return CloudError(
            f"{what} is not offered in the zones of {region} that were tried",
            hint="choose another --instance-type (e.g. t3.small) or --region",
        )
    if code == "ParameterNotFound":
        return CloudError(
            f"Canonical publishes no Ubuntu 24.04 AMI parameter in region {region}",
            hint="choose another --region",
        )
    if code == "OptInRequired":
        return CloudError(
            f"region {region} is not enabled for your AWS account",
            hint="enable it in the account settings, or choose another --region",
        )
    if code == "DependencyViolation":
        return CloudError(
            "a security group is still in use by a network interface",
            hint="wait a minute for terminated instances to release it, then re-run destroy",
        )
    return CloudError(
        f"AWS {op} failed in {region}: {code}: {msg}".rstrip(": "),
        hint="docs/EC2.md lists the permissions and settings mcpctl needs; fix what AWS names, then re-run",
    )
