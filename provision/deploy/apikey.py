"""The API key of a deployment: generated here, kept in Secrets Manager and in a local 0600 file.

The service receives it from Secrets Manager (ECS ``secrets``; the Lambda handler reads the secret at
cold start), ``mcpctl connect`` reads the local file. The key itself never appears in a log line, a
plan, a ``--json`` answer or a task definition: only the secret's ARN does.
"""

from __future__ import annotations

from pathlib import Path
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any

from provision.deploy.aws_errors import unless_missing
from provision.deploy.model import Change, Spec, is_ours, secret_name, tag_list, tags
from provision.errors import CloudError, ProfileError
from provision.files import atomic_write

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient


def key_path(keys: Path, name: str) -> Path:
    """The local file holding deployment ``name``'s API key."""
    return keys / f"{name}.api-key"


def new_key() -> str:
    """A fresh API key: 256 random bits, URL-safe (it travels in an HTTP header)."""
    return token_urlsafe(32)


def find_secret(secrets: SecretsManagerClient, name: str) -> dict[str, Any] | None:
    """The description of deployment ``name``'s secret, or None.

    Raises:
        CloudError: a secret of that name exists without the deployment's tag, or is scheduled for
            deletion.
    """
    found = unless_missing(lambda: secrets.describe_secret(SecretId=secret_name(name)))
    if found is None:
        return None
    if not is_ours(found.get("Tags"), name):
        raise CloudError(
            f"secret {secret_name(name)} exists but was not created by mcpctl for '{name}'",
            hint="delete or rename it, or deploy under another name",
        )
    if found.get("DeletedDate"):
        raise CloudError(
            f"secret {secret_name(name)} is scheduled for deletion",
            hint=f"restore it (aws secretsmanager restore-secret --secret-id {secret_name(name)}) or wait "
            "until it is gone, then re-run",
        )
    return dict(found)


def _write_local(path: Path, key: str) -> None:
    try:
        atomic_write(path, key.encode("ascii") + b"\n")
    except OSError as exc:
        raise ProfileError(
            f"cannot write the API key file {path}: {exc.strerror or exc}", hint="check the directory"
        ) from exc


def read_local(path: Path) -> str | None:
    """The key saved in ``path``, or None when there is no such file."""
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(
            f"cannot read the API key file {path}: {exc}", hint="remove it and re-run deploy"
        ) from exc


def ensure_api_key(
    secrets: SecretsManagerClient, spec: Spec, shape: Any, keys: Path, changes: list[Change]
) -> str:
    """Make sure the deployment's key exists in Secrets Manager and locally; return the secret's ARN.

    A new key is written locally first, so no secret ever exists whose value nobody kept. An existing
    secret whose local copy is missing (another machine deployed it) is read back into the file.
    """
    path = key_path(keys, spec.name)
    found = find_secret(secrets, spec.name)
    if found is not None:
        if read_local(path) is None:
            _write_local(path, secrets.get_secret_value(SecretId=found["ARN"])["SecretString"])
            changes.append(Change("api-key", "saved", str(path)))
        return str(found["ARN"])
    key = read_local(path) or new_key()
    _write_local(path, key)
    arn = secrets.create_secret(
        Name=secret_name(spec.name),
        Description=f"mcpctl {spec.name}: the API key clients send",
        SecretString=key,
        Tags=tag_list(tags(spec, spec.name, shape)),
    )["ARN"]
    changes.append(Change("secret", "created", secret_name(spec.name)))
    return arn


def delete_secret(secrets: SecretsManagerClient, name: str) -> str | None:
    """Delete deployment ``name``'s secret at once (no recovery window); its name, or None if absent.

    No recovery window: the local copy is removed with it, and a pending deletion would block the
    next deployment of the same name for up to 30 days.
    """
    found = unless_missing(lambda: secrets.describe_secret(SecretId=secret_name(name)))
    if found is None:
        return None
    if not is_ours(found.get("Tags"), name):
        return None
    secrets.delete_secret(SecretId=found["ARN"], ForceDeleteWithoutRecovery=True)
    return secret_name(name)
