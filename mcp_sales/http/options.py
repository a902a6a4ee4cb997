"""The ``serve`` options for HTTP (``--transport``, ``--host``, ``--port``, auth, TLS, limits).

Standard library only: the stdio server builds its parser from here too and must stay fast to start.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_sales.http.settings import HttpSettings

TRANSPORTS = ("stdio", "streamable-http", "sse")


def _count(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value} is not {what} from {low} to {high}")
        return number

    return parse


def _path(value: str) -> Path:
    return Path(value).expanduser().resolve()


def add_http_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTP (with --transport streamable-http or sse)")
    group.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="stdio",
        help="stdio (default), streamable-http (/mcp) or sse",
    )
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    group.add_argument(
        "--port",
        type=_count(0, 65535, "a port"),
        default=8000,
        help="port (default 8000; 0 picks a free one)",
    )
    group.add_argument(
        "--stateless", action="store_true", help="no sessions, JSON responses: any replica answers"
    )
    group.add_argument(
        "--workers",
        type=_count(1, 64, "a worker count"),
        default=1,
        metavar="N",
        help="server processes sharing the port (default 1; needs --stateless)",
    )
    group.add_argument(
        "--api-key-file",
        type=_path,
        default=None,
        metavar="FILE",
        help="accepted API keys, one per line (# comments); re-read when it changes. "
        "MCP_API_KEY adds one more",
    )
    group.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback address without any authentication",
    )
    group.add_argument(
        "--ssl-certfile",
        type=_path,
        default=os.environ.get("SSL_CERTFILE") or None,
        metavar="FILE",
        help="TLS certificate (PEM; env SSL_CERTFILE)",
    )
    group.add_argument(
        "--ssl-keyfile",
        type=_path,
        default=os.environ.get("SSL_KEYFILE") or None,
        metavar="FILE",
        help="TLS private key (PEM; env SSL_KEYFILE)",
    )
    group.add_argument(
        "--oauth-issuer", default=None, metavar="URL", help="accept OAuth access tokens from URL"
    )
    group.add_argument("--oauth-audience", default=None, metavar="AUD", help="the tokens' required audience")
    group.add_argument(
        "--oauth-scope",
        action="append",
        default=[],
        metavar="S",
        help="a scope every token must carry; repeatable",
    )
    group.add_argument(
        "--oauth-audience-claim",
        choices=("aud", "client_id"),
        default="aud",
        help="where tokens name their audience: aud (default) or client_id (Amazon Cognito access tokens)",
    )
    group.add_argument(
        "--oauth-jwks-url", default=None, metavar="URL", help="the issuer's JWKS (default: from its metadata)"
    )
    group.add_argument(
        "--oauth-resource",
        default=None,
        metavar="URL",
        help="this server's public URL, e.g. https://sales.example.com/mcp",
    )
    group.add_argument(
        "--max-body-bytes",
        type=_count(1024, 1 << 30, "a size in bytes"),
        default=None,
        metavar="N",
        help="largest request body accepted (default 1 MiB)",
    )
    group.add_argument(
        "--request-timeout",
        type=_count(1, 3600, "a number of seconds"),
        default=None,
        metavar="S",
        help="seconds a client has to send a whole request (default 10); slower ones are cut",
    )
    group.add_argument(
        "--max-sessions",
        type=_count(1, 1_000_000, "a session count"),
        default=None,
        metavar="N",
        help="open sessions per process (default 1000)",
    )


def settings_from_args(args: argparse.Namespace) -> HttpSettings:
    """The HTTP settings the parsed options describe (keys from ``MCP_API_KEY`` are added later)."""
    from mcp_sales.http.settings import (
        DEFAULT_HEADER_TIMEOUT_S,
        DEFAULT_MAX_BODY_BYTES,
        DEFAULT_MAX_SESSIONS,
        HttpSettings,
    )

    return HttpSettings(
        transport=args.transport,
        host=args.host,
        port=args.port,
        stateless=args.stateless,
        workers=args.workers,
        api_key_file=args.api_key_file,
        insecure_no_auth=args.insecure_no_auth,
        oauth_issuer=args.oauth_issuer,
        oauth_audience=args.oauth_audience,
        oauth_scopes=tuple(args.oauth_scope),
        oauth_jwks_url=args.oauth_jwks_url,
        oauth_resource_url=args.oauth_resource,
        oauth_audience_claim=args.oauth_audience_claim,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        max_body_bytes=args.max_body_bytes or DEFAULT_MAX_BODY_BYTES,
        max_sessions=args.max_sessions or DEFAULT_MAX_SESSIONS,
        header_timeout_s=args.request_timeout or DEFAULT_HEADER_TIMEOUT_S,
        log_level=args.log_level,
    )


def stdio_misfit(args: argparse.Namespace) -> str | None:
    """The sentence for HTTP options given to the stdio server (a forgotten ``--transport``), or None."""
    if getattr(args, "transport", "stdio") != "stdio":
        return None
    parser = argparse.ArgumentParser(add_help=False)
    add_http_options(parser)
    given = [
        action.option_strings[0]
        for action in parser._actions
        if action.dest != "transport" and getattr(args, action.dest, action.default) != action.default
    ]
    if not given:
        return None
    verb = "applies" if len(given) == 1 else "apply"
    return (
        f"{', '.join(given)} only {verb} to an HTTP server; add --transport streamable-http (or sse), "
        "or leave them out for stdio"
    )
