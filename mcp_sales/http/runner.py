"""Run the HTTP server with uvicorn: one process, or ``--workers N`` processes sharing one socket.

Start-up problems (no auth on a public address, an unreadable key file or certificate) are refused
here with one sentence before anything listens. With ``--port 0`` the kernel picks the port; the line
``mcp-sales listening on http://HOST:PORT`` on stderr says which (tools and tests read it).

Workers are fresh processes (uvicorn spawns them): they rebuild the app from :func:`app_from_env`,
which reads the settings from ``MCP_SALES_HTTP_SETTINGS`` (JSON, no secrets) and the keys from
``MCP_API_KEY`` and the key file, as the parent does.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette

from mcp_sales.http import settings as settings_io
from mcp_sales.http.keys import parse_key_file
from mcp_sales.http.protocol import GuardedConfig, GuardedH11Protocol
from mcp_sales.http.settings import SETTINGS_ENV, HttpSettings, with_env_keys
from mcp_sales.http.tls import WARN_DAYS, certificate_expiry
from mcp_sales.server import ServerConfig

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 10  # open SSE streams would otherwise hold a shutdown forever
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StartupError(ValueError):
    """The server cannot start as configured; the message says what to change."""


def configure_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format=LOG_FORMAT, force=True)


def preflight(settings: HttpSettings) -> HttpSettings:
    """``settings`` with ``MCP_API_KEY`` added, once every start-up rule holds.

    Raises:
        StartupError: with the one sentence to show.
    """
    settings = with_env_keys(settings)
    if not settings.has_auth and not settings.loopback and not settings.insecure_no_auth:
        raise StartupError(
            f"refusing to serve on {settings.host} without authentication: set MCP_API_KEY, pass "
            "--api-key-file FILE or --oauth-issuer URL, or pass --insecure-no-auth if something in front "
            "of this server authenticates every request"
        )
    if settings.stateless and settings.transport != "streamable-http":
        raise StartupError(
            "--stateless applies to --transport streamable-http only; drop it or change transport"
        )
    if settings.workers > 1 and not settings.stateless:
        raise StartupError(
            f"--workers {settings.workers} needs --stateless: a session lives in one process and its next "
            "request may reach another; add --stateless (streamable HTTP) or run one worker"
        )
    if settings.oauth:
        from mcp_sales.http.oauth_link import oauth_settings

        try:
            oauth_settings(settings)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
    if settings.api_key_file is not None:
        try:
            parse_key_file(settings.api_key_file)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        if settings.api_key_file.stat().st_mode & 0o077:
            log.warning("the API key file %s is readable by other users; chmod 600 it", settings.api_key_file)
    if not settings.has_auth:
        log.warning(
            "serving on %s without authentication: anyone who can connect can call the tools", settings.host
        )
    if (settings.ssl_keyfile is None) != (settings.ssl_certfile is None):
        raise StartupError(
            "TLS needs both --ssl-certfile and --ssl-keyfile (or SSL_CERTFILE and SSL_KEYFILE)"
        )
    if settings.ssl_certfile is not None:
        try:
            expiry = certificate_expiry(settings.ssl_certfile)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        import datetime as dt

        days = (expiry - dt.datetime.now(dt.timezone.utc)).days
        if days < 0:
            raise StartupError(
                f"the certificate {settings.ssl_certfile} expired on {expiry:%Y-%m-%d}; renew it"
            )
        if days < WARN_DAYS:
            log.warning(
                "the certificate %s expires in %d days (%s); renew it",
                settings.ssl_certfile,
                days,
                f"{expiry:%Y-%m-%d}",
            )
    return settings


def app_from_env() -> Starlette:
    """The app of one worker process, from the settings the parent put in the environment."""
    from mcp_sales.http.app import build_app

    config, settings = settings_io.load(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_level)
    return build_app(config, settings)


def _uvicorn_config(app: Any, settings: HttpSettings, **extra: Any) -> GuardedConfig:
    return GuardedConfig(
        app,
        host=settings.host,
        port=settings.port,
        http=GuardedH11Protocol,
        lifespan="on",
        access_log=False,  # ours names the caller and never the query string
        log_config=None,  # keep our logging set-up
        log_level=settings.log_level.lower(),
        server_header=False,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        request_timeout_s=settings.header_timeout_s,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        **extra,
    )


def _announce(sock: socket.socket, settings: HttpSettings) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.tls else "http"
    print(f"mcp-sales listening on {scheme}://{shown}:{port}", file=sys.stderr, flush=True)


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server, announcing the address once it accepts connections."""

    def __init__(self, config: uvicorn.Config, settings: HttpSettings) -> None:
        super().__init__(config)
        self.settings = settings

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            _announce(sockets[0], self.settings)


def run(config: ServerConfig, settings: HttpSettings) -> int:
    """Serve until SIGINT/SIGTERM; the exit code (2 for a refused start-up)."""
    configure_logging(settings.log_level)
    try:
        settings = preflight(settings)
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    if settings.workers == 1:
        from mcp_sales.http.app import build_app

        try:
            app = build_app(config, settings)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
        uv_config = _uvicorn_config(app, settings)
        sock = uv_config.bind_socket()
        server = _AnnouncingServer(uv_config, settings)
        server.run(sockets=[sock])
        return 0 if server.started else 1
    from uvicorn.supervisors import Multiprocess

    os.environ[SETTINGS_ENV] = settings_io.dump(config, settings)
    uv_config = _uvicorn_config(
        "mcp_sales.http.runner:app_from_env", settings, factory=True, workers=settings.workers
    )
    sock = uv_config.bind_socket()
    _announce(sock, settings)
    Multiprocess(uv_config, sockets=[sock]).run()
    return 0
