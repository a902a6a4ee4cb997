"""The local record of a deployment: where it runs and how a client reaches it.

``deployments/NAME.toml`` beside the profiles directory (0600). ``mcpctl destroy`` reads it to find
the region; ``mcpctl connect`` reads the URL and the API key file from it (:func:`endpoint`). It never
holds the key itself, only the path of the 0600 file that does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import tomlkit
from pydantic import BaseModel, ConfigDict, ValidationError

from provision.errors import ProfileError
from provision.files import atomic_write
from provision.profiles import check_name, config_dir
from provision.profiles.dirs import ensure_dir
from provision.profiles.model import describe_validation

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


class Deployment(BaseModel):
    """One deployment mcpctl made (``mcpctl deploy ecs|lambda NAME``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: Literal["ecs", "lambda"]
    region: str
    url: str  # the MCP endpoint clients use (``.../mcp``)
    api_key_file: Path  # 0600 file holding the key; the key itself is never stored here
    image: str
    data: str
    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    load_balancer_dns: str | None = None
    insecure_http: bool = False


def deployments_dir() -> Path:
    """Return (and create, 0700) the directory of deployment records.

    Raises:
        ProfileError: it cannot be created.
    """
    return ensure_dir(config_dir() / "deployments")


def record_path(name: str) -> Path:
    return deployments_dir() / f"{check_name(name)}.toml"


def save_deployment(record: Deployment) -> Path:
    """Write the record atomically (0600) and return its path.

    Raises:
        ProfileError: it cannot be written.
    """
    path = record_path(record.name)
    text = f"# mcpctl deployment '{record.name}': written by `mcpctl deploy`, removed by `mcpctl destroy`.\n"
    text += tomlkit.dumps(record.model_dump(mode="json", exclude_none=True))
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot write {path}: {exc.strerror or exc}", hint="check the directory") from exc
    return path


def find_deployment(name: str) -> Deployment | None:
    """The record of deployment ``name``, or None when there is none.

    Raises:
        ProfileError: the file exists but cannot be read or is malformed.
    """
    path = record_path(name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"cannot read {path}: {exc}", hint="fix the file or remove it") from exc
    try:
        return Deployment.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {describe_validation(exc)}", hint="fix the file or remove it") from exc


def remove_deployment(name: str) -> Path | None:
    """Delete the record; its path, or None when there was none.

    Raises:
        ProfileError: it cannot be removed.
    """
    path = record_path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProfileError(f"cannot remove {path}: {exc.strerror or exc}", hint="remove it by hand") from exc
    return path


def endpoint(name: str) -> tuple[str, Path] | None:
    """``(url, api_key_file)`` of deployment ``name`` for ``mcpctl connect``, or None."""
    record = find_deployment(name)
    return None if record is None else (record.url, record.api_key_file)
