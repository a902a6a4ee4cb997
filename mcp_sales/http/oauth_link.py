"""The OAuth resource-server side (``mcp_sales.http.oauth``) wired into this package's auth middleware:
bearer tokens that are not API keys go to the ``JwtVerifier``; refusals carry a ``WWW-Authenticate``
challenge naming the RFC 9728 metadata, which is served here too."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Scope

from mcp_sales.http.auth import Challenge, Principal, Rejected, TokenCheck
from mcp_sales.http.oauth import (
    JwtVerifier,
    OAuthSettings,
    TokenError,
    TokenRejected,
    protected_resource_metadata,
    resource_metadata_url,
    www_authenticate,
)
from mcp_sales.http.settings import HttpSettings

METADATA_PATH = "/.well-known/oauth-protected-resource"


def oauth_settings(settings: HttpSettings) -> OAuthSettings:
    """The verifier's settings from ours. Raises ``OAuthConfigError`` (one sentence) when they cannot work."""
    assert settings.oauth_issuer is not None
    return OAuthSettings(
        issuer=settings.oauth_issuer,
        audience=settings.oauth_audience or settings.oauth_resource_url or "",
        scopes=tuple(settings.oauth_scopes),
        jwks_url=settings.oauth_jwks_url,
        resource_url=settings.oauth_resource_url,
        audience_claim=settings.oauth_audience_claim,
    )


def _request_origin(scope: Scope) -> str:
    host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return f"{scope.get('scheme', 'http')}://{host}"


class OAuthLink:
    """The verifier (one per process: it caches the issuer's keys), challenges and metadata routes."""

    def __init__(self, settings: HttpSettings, endpoint_path: str) -> None:
        self.settings = oauth_settings(settings)
        self.verifier = JwtVerifier(self.settings)
        self.endpoint_path = endpoint_path

    def resource_url(self, scope: Scope) -> str:
        """This server's MCP URL: the configured one, else as the request reached us."""
        return self.settings.resource_url or _request_origin(scope) + self.endpoint_path

    def token_check(self) -> TokenCheck:
        async def check(token: str) -> Principal:
            try:
                identity = await self.verifier.verify(token)
            except TokenRejected as exc:
                raise Rejected(
                    exc.status_code, exc.error, exc.description, scope=" ".join(exc.scope) or None
                ) from None
            return Principal(
                name=f"sub:{identity.subject}",
                scopes=tuple(sorted(identity.scopes)),
                subject=identity.subject,
                issuer=self.settings.issuer,
                expires_at=identity.expires_at,
            )

        return check

    def challenge(self) -> Challenge:
        def header(scope: Scope, error: str | None, description: str | None, needed: str | None) -> str:
            token_error: TokenError | None = None
            if error in ("invalid_token", "insufficient_scope"):
                token_error = error  # type: ignore[assignment]
            metadata = resource_metadata_url(self.resource_url(scope))
            return www_authenticate(metadata, token_error, description, needed or self.settings.scopes)

        return header

    def routes(self) -> list[Route]:
        async def metadata(request: Request) -> JSONResponse:
            document = protected_resource_metadata(self.settings, self.resource_url(request.scope))
            return JSONResponse(document, headers={"cache-control": "public, max-age=3600"})

        return [
            Route(METADATA_PATH, metadata, methods=["GET"]),
            Route(METADATA_PATH + self.endpoint_path, metadata, methods=["GET"]),
        ]
