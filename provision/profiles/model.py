"""The profile: one remote host mcpctl manages, and what each of its fields may hold.

A :class:`Profile` validates every field on its own terms (names that become file names, hosts and users
that end up on ssh command lines, absolute paths, column mappings the server accepts), so a profile that
exists is one mcpctl can use. :func:`new_profile` and :func:`describe_validation` put pydantic's errors
in our words: the field, and why.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcp_sales.errors import InvalidInput
from mcp_sales.mapping import parse_column_overrides
from provision.errors import ProfileError

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
NAME_RULE = "must be 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
# The addresses a sandbox profile may name: the sandbox listens on 127.0.0.1 only.
SANDBOX_HOSTS = ("127.0.0.1", "localhost")


def check_name(name: str) -> str:
    """Return ``name`` if it may name a profile (it becomes a file name), else raise.

    Raises:
        ProfileError: It is not 1-63 characters of a-z, 0-9, '-' and '_'.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ProfileError(f"{name!r} is not a valid profile name", hint=f"a name {NAME_RULE}")
    return name


def _expand_absolute(value: Any) -> Any:
    """Expand ``~`` and insist on an absolute path: a relative one would depend on the current directory."""
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise ValueError(f"must be an absolute path or start with ~ (got {str(value)!r})")
        return path
    return value


def default_remote_dir(user: str, name: str) -> str:
    """Return where profile ``name`` installs by default: ``/home/USER/mcpctl/NAME`` (root: ``/root/...``)."""
    home = "/root" if user == "root" else f"/home/{user}"
    return f"{home}/mcpctl/{name}"


class Ec2Settings(BaseModel):
    """What mcpctl needs to find, reuse and clean up the EC2 instance behind an ``ec2`` profile."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    region: str | None = None
    instance_type: str | None = None
    instance_id: str | None = None
    security_group_id: str | None = None
    key_name: str | None = None
    ssh_cidr: str | None = None
    volume_gb: int | None = Field(default=None, ge=1, strict=True)
    autostop_minutes: int | None = Field(default=None, ge=0, strict=True)


class HttpSettings(BaseModel):
    """The HTTP server of a profile (``mcpctl provision NAME --http``, or a deployment reached by URL).

    On a host the server listens on ``127.0.0.1:port`` only (reached through SSH); ``url`` is set for a
    deployment reached directly over HTTPS (a load balancer, a function URL). The API key is never
    stored here: it lives in a 0600 file of its own (``key_file``, default under the keys directory).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    port: int = Field(default=8765, strict=True)  # on the host's 127.0.0.1
    local_port: int | None = Field(default=None, strict=True)  # `mcpctl tunnel`'s default local port
    url: str | None = None  # https://.../mcp of a deployment reached without SSH
    key_file: Path | None = None  # None: keys_dir()/NAME.api-key
    service: Literal["systemd", "process"] | None = None  # how the host runs it (set by provision)

    @field_validator("port", "local_port")
    @classmethod
    def _valid_http_port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError("must be between 1 and 65535")
        return value

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if any(c in value for c in " \t\n\"'"):
            raise ValueError("must be a URL without spaces or quotes")
        parts = urlsplit(value)
        # The key travels in a header: only TLS may carry it off this machine.
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
        if not parts.hostname or not (parts.scheme == "https" or loopback):
            raise ValueError("must be an https:// URL (the API key must not cross a network in clear)")
        return value

    @field_validator("key_file", mode="before")
    @classmethod
    def _key_path(cls, value: Any) -> Any:
        return _expand_absolute(value)


class Profile(BaseModel):
    """One remote host mcpctl manages, stored as ``profiles/NAME.toml``.

    Unknown keys are an error, so a typo in the file is reported instead of silently ignored.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str  # also the file name and the known_hosts file name
    kind: Literal["host", "sandbox", "ec2"] = "host"
    host: str | None = None  # None only for an ec2 profile whose instance has no address yet
    port: int = Field(default=22, strict=True)
    user: str
    identity_file: Path | None = None  # None: the default keys in ~/.ssh
    host_key_alias: str | None = None  # pin/look up the host key under this name (EC2: IPs change)
    remote_dir: str = ""  # absolute; never stays empty: _default_remote_dir derives it
    use_agent: bool = False  # let the ssh-agent sign (needed for passphrase-protected keys)
    use_ssh_config: bool = False  # read ~/.ssh/config (ProxyJump, Host aliases)
    connect_timeout: float = 10.0  # seconds for TCP + SSH handshake + login
    keepalive_interval: float = 15.0  # seconds; a dead link is noticed after 3 missed keepalives
    data: list[Path] = Field(default_factory=list)  # local data files synced to the host
    server_args: list[str] = Field(default_factory=list)  # extra arguments for the server
    columns: dict[str, str] = Field(default_factory=dict)  # field -> source column (--column f=SOURCE)
    ec2: Ec2Settings | None = None
    http: HttpSettings | None = None  # the HTTP server (`provision --http`), when there is one

    @model_validator(mode="before")
    @classmethod
    def _default_remote_dir(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("remote_dir"):
            name, user = data.get("name"), data.get("user")
            if isinstance(name, str) and isinstance(user, str) and user:
                data = {**data, "remote_dir": default_remote_dir(user, name)}
        return data

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(NAME_RULE)
        return value

    @field_validator("port")
    @classmethod
    def _valid_port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be between 1 and 65535")
        return value

    @field_validator("host", "host_key_alias")
    @classmethod
    def _valid_host(cls, value: str | None) -> str | None:
        # These end up in known_hosts lines and ssh command lines: no spaces, no option-like values.
        if value is not None and value.startswith("-"):
            raise ValueError("must not start with '-' (ssh would read it as an option)")
        if value is not None and (not value or any(c in value for c in " \t\n,@/")):
            raise ValueError("must be a host name or IP address (no spaces, '@', '/' or ',')")
        return value

    @field_validator("user")
    @classmethod
    def _valid_user(cls, value: str) -> str:
        if value.startswith("-"):
            raise ValueError("must not start with '-' (ssh would read it as an option)")
        if not value or any(c in value for c in " \t\n@:/"):
            raise ValueError("must be a user name (no spaces, '@', ':' or '/')")
        return value

    @field_validator("identity_file", mode="before")
    @classmethod
    def _identity_path(cls, value: Any) -> Any:
        return _expand_absolute(value)

    @field_validator("data", mode="before")
    @classmethod
    def _data_paths(cls, value: Any) -> Any:
        return [_expand_absolute(item) for item in value] if isinstance(value, list) else value

    @field_validator("remote_dir")
    @classmethod
    def _valid_remote_dir(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
            raise ValueError("must be an absolute POSIX path below / such as /home/USER/mcpctl/NAME")
        if any(ord(c) < 32 for c in value):
            raise ValueError("must not contain control characters")
        return str(path)

    @field_validator("connect_timeout", "keepalive_interval")
    @classmethod
    def _positive_seconds(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be a number of seconds greater than 0")
        return value

    @field_validator("columns")
    @classmethod
    def _valid_columns(cls, value: dict[str, str]) -> dict[str, str]:
        # The server reads each pair as `--column FIELD=COLUMN`: its own parser decides what a profile
        # may hold (an empty column unmaps an optional field), in the server's spelling of the field.
        for field in value:
            if "=" in field:  # "a=b" = "c" would reach the server as the field a, column "b=c"
                raise ValueError(f"{field!r} is not a field name (it contains '=')")
        try:
            return parse_column_overrides([f"{field}={source}" for field, source in value.items()])
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _host_required(self) -> Profile:
        # An ec2 profile is saved before its instance has an address; every other kind needs one.
        if self.host is None and self.kind != "ec2":
            raise ValueError("field 'host' is required for a profile of kind " + repr(self.kind))
        return self

    def to_toml(self) -> str:
        """Serialise to TOML (``None`` values are left out: TOML has no null)."""
        header = f"# mcpctl profile '{self.name}': edit freely, unknown keys are rejected.\n"
        return header + tomlkit.dumps(self.model_dump(mode="json", exclude_none=True))


def describe_validation(exc: ValidationError) -> str:
    """Turn pydantic's errors into ``field 'x': reason`` phrases, one per problem."""
    phrases = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            allowed = (
                Ec2Settings.model_fields
                if loc.startswith("ec2.")
                else HttpSettings.model_fields
                if loc.startswith("http.")
                else Profile.model_fields
            )
            close = difflib.get_close_matches(str(error["loc"][-1]), list(allowed), n=1)
            reason = f"unknown key (did you mean '{close[0]}'?)" if close else "unknown key"
        elif kind == "missing":
            reason = "is required"
        elif kind == "value_error":
            reason = str(error["ctx"]["error"])
        else:
            reason = error["msg"][:1].lower() + error["msg"][1:]
        phrases.append(f"field '{loc}': {reason}" if loc else reason)
    return "; ".join(phrases)


def new_profile(**fields: Any) -> Profile:
    """Build a profile from keyword fields (e.g. command-line options), reporting problems as ours.

    Raises:
        ProfileError: A field is invalid (the message names it and says why).
    """
    try:
        return Profile.model_validate(fields)
    except ValidationError as exc:
        name = fields.get("name", "?")
        raise ProfileError(
            f"invalid profile '{name}': {describe_validation(exc)}", hint="fix the option"
        ) from exc
