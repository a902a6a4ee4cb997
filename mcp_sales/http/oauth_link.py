"""The OAuth resource-server side, adapted to this package's auth middleware: bearer tokens checked by
``mcp_sales.http.oauth.JwtVerifier``, ``WWW-Authenticate`` challenges pointing at the RFC 9728 metadata,
and the metadata routes themselves."""

from __future__ import annotations

import datetime as dt
import importlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Scope

from mcp_sales.http.auth import Challenge, Principal, Rejected, TokenCheck
from mcp_sales.http.settings import HttpSettings

METADATA_PATH = "/.well-known/oauth-protected-resource"


def _host_url(scope: Scope) -> str:
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return f"{scope.get('scheme', 'http')}://{host}"


class OAuthLink:
    """Everything the app needs from the OAuth module, built once from the settings."""

    def __init__(self, settings: HttpSettings, endpoint_path: str) -> None:
        self.oauth: Any = importlib.import_module("mcp_sales.http.oauth")
        self.endpoint_path = endpoint_path
        self.fixed_resource = settings.oauth_resource_url
        self.settings: Any = self.oauth.OAuthSettings(
            issuer=settings.oauth_issuer,
            audience=settings.oauth_audience or settings.oauth_resource_url or "",
            scopes=tuple(settings.oauth_scopes),
            jwks_url=settings.oauth_jwks_url,
            resource_url=settings.oauth_resource_url,
        )
        self.verifier: Any = self.oauth.JwtVerifier(self.settings)

    def resource_url(self, scope: Scope) -> str:
        return self.fixed_resource or _host_url(scope) + self.endpoint_path

    def metadata_url(self, scope: Scope) -> str:
        resource = self.resource_url(scope)
        path = resource.split("://", 1)[-1].partition("/")[2]
        return _host_url(scope) + METADATA_PATH + (f"/{path}" if path else "")

    def token_check(self) -> TokenCheck:
        async def check(token: str) -> Principal:
            try:
                identity = await self.verifier.verify(token)
            except self.oauth.TokenRejected as exc:
                insufficient = exc.error == "insufficient_scope"
                raise Rejected(
                    403 if insufficient else 401,
                    str(exc.error),
                    str(exc.description),
                    scope=" ".join(self.settings.scopes) if insufficient else None,
                ) from None
            expires = identity.expires_at
            if isinstance(expires, dt.datetime):
                expires = int(expires.timestamp())
            return Principal(
                name=f"sub:{identity.subject}",
                scopes=tuple(identity.scopes),
                subject=str(identity.subject),
                issuer=str(self.settings.issuer),
                expires_at=int(expires) if expires is not None else None,
            )

        return check

    def challenge(self) -> Challenge:
        def header(scope: Scope, error: str | None, description: str | None, needed: str | None) -> str:
            return str(self.oauth.www_authenticate(self.metadata_url(scope), error, description, needed))

        return header

    def routes(self) -> list[Route]:
        async def metadata(request: Request) -> JSONResponse:
            document = self.oauth.protected_resource_metadata(self.settings, self.resource_url(request.scope))
            return JSONResponse(document, headers={"cache-control": "public, max-age=3600"})

        suffix = self.endpoint_path.lstrip("/")
        return [
            Route(METADATA_PATH, metadata, methods=["GET"]),
            Route(f"{METADATA_PATH}/{suffix}", metadata, methods=["GET"]),
        ]
