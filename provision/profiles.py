"""Profiles (one TOML file per remote host) and the local directories mcpctl keeps its files in.

Layout (``MCPCTL_HOME`` replaces both roots with ``$MCPCTL_HOME/config`` and ``$MCPCTL_HOME/state``)::

    ~/.config/mcpctl/profiles/NAME.toml      the profile (XDG_CONFIG_HOME honoured)
    ~/.local/state/mcpctl/known_hosts/NAME   the profile's pinned host key (XDG_STATE_HOME honoured)
    ~/.local/state/mcpctl/keys/              private keys mcpctl generated (0700)
    ~/.local/state/mcpctl/logs/              log files

Every directory mcpctl creates is 0700 and every file it writes is 0600: they can hold key paths,
instance ids and host keys, which are nobody else's business.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table

from provision.errors import ProfileError, ProfileNotFound
from provision.files import atomic_write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
NAME_RULE = "must be 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
_DIR_MODE = 0o700
_FILE_MODE = 0o600


# --------------------------------------------------------------------------------------------- paths


def _ensure_dir(path: Path, *, private: bool = False) -> Path:
    """Create ``path`` (0700) if needed; with ``private``, also tighten an existing directory to 0700."""
    try:
        path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        if private and (path.stat().st_mode & 0o777) != _DIR_MODE:
            path.chmod(_DIR_MODE)
    except OSError as exc:
        raise ProfileError(
            f"cannot create the directory {path}: {exc.strerror or exc}",
            hint="make it writable or set MCPCTL_HOME to a writable directory",
        ) from exc
    return path


def _home_override() -> Path | None:
    value = os.environ.get("MCPCTL_HOME")
    return Path(value).expanduser().absolute() if value else None


def _xdg_base(variable: str, default: str) -> Path:
    # The XDG spec says relative values are invalid and must be ignored.
    value = os.environ.get(variable)
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / default


def config_dir() -> Path:
    """Return (and create) the config directory: ``$MCPCTL_HOME/config`` or ``~/.config/mcpctl``.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    home = _home_override()
    return _ensure_dir(home / "config" if home else _xdg_base("XDG_CONFIG_HOME", ".config") / "mcpctl")


def state_dir() -> Path:
    """Return (and create) the state directory: ``$MCPCTL_HOME/state`` or ``~/.local/state/mcpctl``.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    home = _home_override()
    return _ensure_dir(
        home / "state" if home else _xdg_base("XDG_STATE_HOME", ".local/state") / "mcpctl", private=True
    )


def profiles_dir() -> Path:
    """Return (and create) the directory holding ``NAME.toml`` profiles.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    return _ensure_dir(config_dir() / "profiles")


def known_hosts_path(name: str) -> Path:
    """Return the path of profile ``name``'s own known_hosts file (its directory is created).

    Raises:
        ProfileError: If ``name`` is not a valid profile name or the directory cannot be created.
    """
    _check_name(name)
    return _ensure_dir(state_dir() / "known_hosts", private=True) / name


def log_dir() -> Path:
    """Return (and create, 0700) the directory for log files.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    return _ensure_dir(state_dir() / "logs", private=True)


def keys_dir() -> Path:
    """Return (and create, 0700) the directory for private keys mcpctl generates.

    Raises:
        ProfileError: If the directory cannot be created.
    """
    return _ensure_dir(state_dir() / "keys", private=True)


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600: :func:`provision.files.atomic_write`.

    Raises:
        OSError: If the file cannot be written (the caller translates it, knowing what the file is).
    """
    atomic_write(path, data)


# --------------------------------------------------------------------------------------------- model


def _check_name(name: str) -> str:
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
        if value is not None and (not value or value.startswith("-") or any(c in value for c in " \t\n,@/")):
            raise ValueError("must be a host name or IP address (no spaces, '@', '/' or ',')")
        return value

    @field_validator("user")
    @classmethod
    def _valid_user(cls, value: str) -> str:
        if not value or value.startswith("-") or any(c in value for c in " \t\n@:/"):
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
        for field, source in value.items():
            if not field or "=" in field or not source:
                raise ValueError(f"{field!r} = {source!r} must map a field name (no '=') to a column name")
        return value

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


# ---------------------------------------------------------------------------------------- sandbox

# The addresses a sandbox profile may name: the sandbox listens on 127.0.0.1 only.
SANDBOX_HOSTS = ("127.0.0.1", "localhost")


# ------------------------------------------------------------------------------------- load and save


def _profile_path(name: str) -> Path:
    return profiles_dir() / f"{_check_name(name)}.toml"


def _describe_validation(exc: ValidationError) -> str:
    """Turn pydantic's errors into ``field 'x': reason`` phrases, one per problem."""
    phrases = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            allowed = Ec2Settings.model_fields if loc.startswith("ec2.") else Profile.model_fields
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


def parse_profile(text: str, *, name: str, source: Path) -> Profile:
    """Parse a profile from TOML text; ``source`` names the file in error messages.

    Raises:
        ProfileError: On a TOML syntax error (with its line) or an invalid field (with its name).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: invalid TOML: {exc}", hint="fix the file or remove it") from exc
    data.setdefault("name", name)
    if data["name"] != name:
        raise ProfileError(
            f"{source}: field 'name': {data['name']!r} does not match the file name",
            hint=f"set it to '{name}' or rename the file",
        )
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(
            f"{source}: {_describe_validation(exc)}", hint="fix the file or remove it"
        ) from exc


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
            f"invalid profile '{name}': {_describe_validation(exc)}", hint="fix the option"
        ) from exc


def list_profiles() -> list[str]:
    """Return the names of all saved profiles, sorted.

    Raises:
        ProfileError: If the profiles directory cannot be created.
    """
    return sorted(p.stem for p in profiles_dir().glob("*.toml") if NAME_PATTERN.fullmatch(p.stem))


def _missing(name: str) -> ProfileNotFound:
    existing = ", ".join(list_profiles()) or "none yet"
    return ProfileNotFound(
        name, hint=f"create it with `mcpctl provision {name} --host user@host` (existing: {existing})"
    )


def load_profile(name: str) -> Profile:
    """Load ``profiles/NAME.toml``.

    Raises:
        ProfileNotFound: No such profile exists (the hint lists the existing ones).
        ProfileError: The name is invalid, or the file is malformed (the message names the file and the
            line or field).
    """
    path = _profile_path(name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _missing(name) from None
    except OSError as exc:
        raise ProfileError(
            f"cannot read {path}: {exc.strerror or exc}", hint="check its permissions"
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"{path}: not UTF-8 text ({exc.reason})", hint="fix the file or remove it"
        ) from exc
    return parse_profile(text, name=name, source=path)


def save_profile(profile: Profile) -> Path:
    """Write the profile atomically (temporary file + rename), mode 0600, and return its path.

    A file that exists is updated, not rewritten: only the keys whose values changed are written, so
    the user's comments, key order and formatting survive (the file says "edit freely").

    Raises:
        ProfileError: If the file cannot be read or written.
    """
    path = _profile_path(profile.name)
    try:
        old_text: str | None = path.read_bytes().decode("utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        old_text = None  # nothing worth keeping: write a fresh file
    except OSError as exc:
        raise ProfileError(
            f"cannot read {path}: {exc.strerror or exc}", hint="check its permissions"
        ) from exc
    try:
        atomic_write(path, profile_text(profile, old_text).encode("utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot write {path}: {exc.strerror or exc}", hint="check the directory") from exc
    return path


def profile_text(profile: Profile, old_text: str | None = None) -> str:
    """The TOML text of ``profile``: ``old_text`` with only what changed rewritten, or a fresh file.

    Text that is not TOML (or none) gives a fresh file with the header comment.
    """
    if old_text is not None:
        try:
            document = tomlkit.parse(old_text)
        except TOMLKitError:
            return profile.to_toml()
        _update_table(document, _saved_values(document, profile.name), _values(profile))
        return document.as_string()
    return profile.to_toml()


def _values(profile: Profile) -> dict[str, Any]:
    """The profile as TOML values (``None`` left out: TOML has no null)."""
    return profile.model_dump(mode="json", exclude_none=True)


def _saved_values(document: tomlkit.TOMLDocument, name: str) -> dict[str, Any]:
    """What the document means as a profile (defaults filled in), or {} when it is not a valid one.

    Comparing meanings, not text, leaves a value alone that the user wrote differently (``~/key`` for
    ``/home/ann/key``, a remote_dir left to its default).
    """
    values = {"name": name, **document.unwrap()}
    try:
        return _values(Profile.model_validate(values))
    except ValidationError:
        return {}  # not a profile we can read: every key is written anew


def _update_table(table: Any, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Set in ``table`` (a tomlkit container) each key whose value differs between ``old`` and ``new``.

    Keys that ``new`` does not have (a value that became ``None``, a key the model does not know) are
    removed; a nested table is updated key by key so that its own comments stay too.
    """
    for key, value in new.items():
        if key in old and old[key] == value:
            continue
        current = table.get(key)
        if isinstance(value, dict) and isinstance(current, Table):
            previous = old.get(key)
            _update_table(current, previous if isinstance(previous, dict) else {}, value)
        else:
            table[key] = value
    for key in [k for k in table if k not in new]:
        del table[key]


def remove_profile(name: str, *, missing_ok: bool = False) -> None:
    """Delete the profile and its known_hosts file.

    Raises:
        ProfileNotFound: Neither exists (unless ``missing_ok``).
        ProfileError: A file cannot be removed.
    """
    removed = False
    for path in (_profile_path(name), known_hosts_path(name)):
        try:
            path.unlink()
            removed = True
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ProfileError(
                f"cannot remove {path}: {exc.strerror or exc}", hint="remove it by hand"
            ) from exc
    if not removed and not missing_ok:
        raise _missing(name)


def parse_host_spec(spec: str, *, default_port: int = 22) -> tuple[str, str, int]:
    """Split ``[ssh://][user@]host[:port]`` (IPv6 as ``[::1]:2222``) into ``(user, host, port)``.

    A missing user is the local user name (what ``ssh`` does); a missing port is ``default_port``.

    Raises:
        ProfileError: If the spec is malformed.
    """
    problem = f"'{spec}' is not a valid host"
    how = "use user@host or user@host:port (IPv6: user@[::1]:22)"
    rest = spec.strip().removeprefix("ssh://")
    user, at, hostport = rest.rpartition("@")
    if not at:
        user = getpass.getuser()
    port_text: str | None = None
    if hostport.startswith("["):
        host, bracket, tail = hostport[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ProfileError(problem, hint=how)
        port_text = tail[1:] if tail else None
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host = hostport  # a bare name, or a bare IPv6 address (no port possible without brackets)
    if port_text is None:
        port = default_port
    elif port_text.isdigit():
        port = int(port_text)
    else:
        raise ProfileError(problem, hint=how)
    bad = " \t\n@/,"
    if (
        not host
        or not user
        or host.startswith("-")
        or user.startswith("-")
        or any(c in host for c in bad)
        or any(c in user for c in bad + ":")
        or not 1 <= port <= 65535
    ):
        raise ProfileError(problem, hint=how)
    return user, host, port
