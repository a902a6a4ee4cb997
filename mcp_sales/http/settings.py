"""What the HTTP server is told at start-up, and how it reaches ``--workers`` processes.

Worker processes are started fresh (uvicorn spawns them), so the settings travel in an environment
variable as JSON. Secrets never do: API keys come from ``MCP_API_KEY`` or the key file, which every
worker reads itself.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcp_sales.server import ServerConfig

Transport = Literal["streamable-http", "sse"]

SETTINGS_ENV = "MCP_SALES_HTTP_SETTINGS"
API_KEY_ENV = "MCP_API_KEY"

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # MCP requests are small JSON: 1 MiB leaves room for large arguments
DEFAULT_MAX_SESSIONS = 1000
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_KEEP_ALIVE_S = 5


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP server's settings (everything but the data options, which live in ``ServerConfig``).

    ``api_keys`` holds keys given directly (``MCP_API_KEY``); ``api_key_file`` is re-read whenever it
    changes. ``json_response`` None means "as ``stateless``": JSON bodies when stateless, SSE streams
    otherwise. ``header_timeout_s`` bounds how long a client may take to send a whole request.
    """

    transport: Transport = "streamable-http"
    host: str = "127.0.0.1"
    port: int = 8000
    stateless: bool = False
    json_response: bool | None = None
    workers: int = 1
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    api_key_file: Path | None = None
    insecure_no_auth: bool = False
    oauth_issuer: str | None = None
    oauth_audience: str | None = None
    oauth_scopes: tuple[str, ...] = ()
    oauth_jwks_url: str | None = None
    oauth_resource_url: str | None = None
    oauth_audience_claim: Literal["aud", "client_id"] = "aud"
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_sessions: int = DEFAULT_MAX_SESSIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    keep_alive_s: int = DEFAULT_KEEP_ALIVE_S
    log_level: str = "INFO"

    @property
    def json_responses(self) -> bool:
        return self.stateless if self.json_response is None else self.json_response

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    @property
    def oauth(self) -> bool:
        return self.oauth_issuer is not None

    @property
    def has_auth(self) -> bool:
        return bool(self.api_keys) or self.api_key_file is not None or self.oauth

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def with_env_keys(settings: HttpSettings) -> HttpSettings:
    """``settings`` plus the key in ``MCP_API_KEY``, if set."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key or key in settings.api_keys:
        return settings
    return dataclasses.replace(settings, api_keys=(*settings.api_keys, key))


# --- to and from the environment (for --workers) ---------------------------------------------------


def dump(config: ServerConfig, settings: HttpSettings) -> str:
    """Both configurations as JSON, without the API keys."""
    http = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "api_keys"}
    server = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return json.dumps({"server": server, "http": http}, default=_jsonable)


def load(text: str) -> tuple[ServerConfig, HttpSettings]:
    """The inverse of :func:`dump` (keys are added by the caller from the environment)."""
    raw = json.loads(text)
    server: dict[str, Any] = raw["server"]
    http: dict[str, Any] = raw["http"]
    for name in ("data_path", "cache_dir"):
        if server.get(name) is not None:
            server[name] = Path(server[name])
    for name in ("api_key_file", "ssl_certfile", "ssl_keyfile"):
        if http.get(name) is not None:
            http[name] = Path(http[name])
    http["oauth_scopes"] = tuple(http.get("oauth_scopes") or ())
    return ServerConfig(**server), HttpSettings(**http)


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
