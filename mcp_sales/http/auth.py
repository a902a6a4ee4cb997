"""Authentication of every request but ``/health`` and the OAuth metadata: an API key
(``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) or, with ``--oauth-issuer``, an OAuth access token.

The authenticated principal is put where the SDK looks for it (``scope["user"]``, an
``AuthenticatedUser``), so a stateful session can only be continued with the credential that opened it.
Its name (a key id or the token's subject, never the secret) goes to the access log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_sales.http.keys import ApiKeys
from mcp_sales.http.responses import send_json_error

log = logging.getLogger(__name__)

PRINCIPAL_SCOPE_KEY = "mcp_sales.principal"
OPEN_PATHS = frozenset({"/health"})
OPEN_PREFIX = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class Principal:
    """Who sent a request: ``name`` is safe to log (``key:1a2b3c4d`` or ``sub:alice``)."""

    name: str
    scopes: tuple[str, ...] = ()
    subject: str | None = None
    issuer: str | None = None
    expires_at: int | None = None


class Rejected(Exception):
    """The request is refused: ``status`` 401 (no or bad credential) or 403 (too little scope)."""

    def __init__(self, status: int, error: str, description: str, scope: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.scope = scope


# Verifies a bearer token that is not an API key; raises Rejected (the OAuth adapter builds it).
TokenCheck = Callable[[str], Awaitable[Principal]]
# The WWW-Authenticate value for a refusal: (request scope, error or None, description or None, scope).
Challenge = Callable[[Scope, str | None, str | None, str | None], str]


def _bearer(headers: Headers) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, credential = value.strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


class Authenticator:
    """Decides who a request is from, or raises :class:`Rejected`."""

    def __init__(self, keys: ApiKeys, token_check: TokenCheck | None = None) -> None:
        self.keys = keys
        self.token_check = token_check

    @property
    def enabled(self) -> bool:
        return self.keys.configured or self.token_check is not None

    def _missing(self) -> str:
        how = "an API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        if self.token_check is not None:
            how += ", or an OAuth access token as 'Authorization: Bearer TOKEN'"
        return f"this endpoint needs credentials: send {how}"

    async def authenticate(self, headers: Headers) -> Principal:
        api_key = headers.get("x-api-key")
        bearer = _bearer(headers)
        if api_key is None and bearer is None:
            raise Rejected(401, "invalid_request", self._missing())
        for presented in (api_key, bearer):
            if presented is not None and (found := self.keys.match(presented.strip())) is not None:
                return Principal(name=found)
        if bearer is not None and self.token_check is not None:
            return await self.token_check(bearer)
        raise Rejected(401, "invalid_token", "the API key is not valid; check it, or ask for a current one")


class AuthMiddleware:
    """Refuses unauthenticated requests with 401 (JSON body, ``WWW-Authenticate``); lets the rest through."""

    def __init__(
        self, app: ASGIApp, authenticator: Authenticator, challenge: Challenge | None = None
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.challenge = challenge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.authenticator.enabled or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.authenticator.authenticate(Headers(scope=scope))
        except Rejected as exc:
            await self._refuse(scope, send, exc)
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal.name
        scope["auth"] = AuthCredentials(list(principal.scopes))
        scope["user"] = AuthenticatedUser(
            AccessToken(
                token=principal.name,  # the SDK never needs the secret itself
                client_id=principal.name,
                scopes=list(principal.scopes),
                expires_at=principal.expires_at,
                subject=principal.subject,
                claims={"iss": principal.issuer} if principal.issuer else None,
            )
        )
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, exc: Rejected) -> None:
        log.debug("refused %s %s: %s", scope["method"], scope["path"], exc.description)
        if self.challenge is not None:
            header = self.challenge(
                scope, None if exc.error == "invalid_request" else exc.error, exc.description, exc.scope
            )
        else:
            header = 'Bearer realm="mcp-sales"'
        await send_json_error(send, exc.status, exc.error, exc.description, {"www-authenticate": header})


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIX)
