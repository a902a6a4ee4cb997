"""The HTTP server as an OAuth 2.1 resource server: verify JWT access tokens, describe itself (RFC 9728).

The server never issues tokens; an authorization server (Cognito, Keycloak, Auth0, Entra ID...) does.
We check the signature with the issuer's published keys (RS256/ES256 only: ``none`` and HMAC are refused
whatever the header says), ``iss``, ``exp``/``nbf`` with a small leeway, the audience (``aud``, or
Cognito's ``client_id``) and the required scopes (``scope`` or ``scp``).

Keys come from ``jwks_url`` or the issuer's discovery document, fetched with an async HTTP client so a
slow issuer never blocks the event loop, and are cached. An unknown ``kid`` (the issuer rotated its
keys) triggers a refetch, at most one per ``refetch_interval``: made-up key ids cannot hammer the issuer.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httpx2
import jwt

logger = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")  # asymmetric only: HS* would let anyone holding the JWKS sign tokens
DEFAULT_LEEWAY = 30.0  # seconds of clock skew tolerated on exp/nbf/iat
DEFAULT_REFETCH_INTERVAL = 30.0  # seconds: the least time between two fetches caused by unknown key ids
DEFAULT_KEYS_TTL = 3600.0  # seconds: keys are refreshed this often so a key the issuer dropped stops working
DEFAULT_FETCH_TIMEOUT = 10.0  # seconds for one request to the issuer
MAX_DOCUMENT_BYTES = 512 * 1024  # a JWKS or discovery document is a few KB; more is not an issuer's answer
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
COGNITO_ISSUER = re.compile(r"cognito-idp(-fips)?\.[a-z0-9-]+\.amazonaws\.com")

AudienceClaim = Literal["aud", "client_id"]
TokenError = Literal["invalid_token", "insufficient_scope"]


class OAuthConfigError(ValueError):
    """The OAuth settings cannot work; ``str(err)`` says which one and what to give instead."""


@dataclass(frozen=True)
class OAuthSettings:
    """Which tokens the server accepts.

    Attributes:
        issuer: The authorization server's issuer URL, exactly as tokens carry it in ``iss`` (Cognito:
            ``https://cognito-idp.REGION.amazonaws.com/POOL_ID``). https, or http on loopback for tests.
        audience: The value tokens must be issued for: matched against ``aud``, or against ``client_id``
            when ``audience_claim`` is ``"client_id"`` (a Cognito app client id).
        scopes: Scopes a token must all hold (Cognito resource-server scopes look like ``sales/read``).
        jwks_url: Where the issuer publishes its keys; None discovers it from the issuer's metadata.
        resource_url: This server's public MCP URL (``https://sales.example.com/mcp``): published as the
            resource in the metadata, accepted in ``aud`` as well; needed behind a TLS terminator,
            where the request's own URL is not what clients use.
        audience_claim: ``"aud"`` (the standard, RFC 9068) or ``"client_id"`` for Cognito access
            tokens, which carry no ``aud``; with ``"client_id"`` a token whose ``token_use`` is not
            ``access`` (a Cognito ID token) is refused too. None (the default) picks ``"client_id"``
            for a Cognito user pool issuer (``cognito-idp.*.amazonaws.com``) and ``"aud"`` otherwise;
            read the choice from :attr:`audience_claim_used`.
        leeway: Seconds of clock skew tolerated on ``exp`` and ``nbf``.
    """

    issuer: str
    audience: str
    scopes: tuple[str, ...] = ()
    jwks_url: str | None = None
    resource_url: str | None = None
    audience_claim: AudienceClaim | None = None
    leeway: float = DEFAULT_LEEWAY

    def __post_init__(self) -> None:
        _check_url("--oauth-issuer", self.issuer)
        if self.jwks_url is not None:
            _check_url("the JWKS URL", self.jwks_url)
        if self.resource_url is not None and urlsplit(self.resource_url).scheme not in ("http", "https"):
            raise OAuthConfigError(
                f"the resource URL {self.resource_url!r} is not an http(s) URL; give the server's public"
                " MCP URL, e.g. https://sales.example.com/mcp"
            )
        if not self.audience.strip():
            raise OAuthConfigError(
                "--oauth-audience is empty; give the audience your issuer puts in tokens (for Cognito,"
                " the app client id with the client_id audience claim)"
            )
        if self.audience_claim not in (None, "aud", "client_id"):
            raise OAuthConfigError(
                f"the audience claim {self.audience_claim!r} is not supported; use 'aud' or 'client_id'"
            )
        if any(not s or any(c.isspace() or c in '"\\' for c in s) for s in self.scopes):
            raise OAuthConfigError(
                f"the scopes {list(self.scopes)!r} hold an empty one or one with spaces or quotes;"
                " give each scope as one word, e.g. --oauth-scope sales/read"
            )
        if not 0 <= self.leeway <= 300:
            raise OAuthConfigError(f"a leeway of {self.leeway} s is out of range; use 0 to 300 seconds")

    @property
    def audience_claim_used(self) -> AudienceClaim:
        """The claim holding the audience: as configured, else by the issuer's kind."""
        if self.audience_claim is not None:
            return self.audience_claim
        return "client_id" if COGNITO_ISSUER.fullmatch(urlsplit(self.issuer).hostname or "") else "aud"


def _check_url(what: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS:
        return  # a test issuer on this machine: nothing crosses a network
    raise OAuthConfigError(
        f"{what} {url!r} is not an https URL; keys fetched over plain http could be replaced on the way,"
        " so give the https URL (http only works on localhost)"
    )


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for.

    Attributes:
        subject: The ``sub`` claim (for a machine client, often its client id).
        scopes: The scopes the token grants.
        expires_at: The ``exp`` claim, seconds since the epoch.
        client_id: The client the token was issued to, when the token says (``client_id`` or ``azp``).
    """

    subject: str
    scopes: frozenset[str]
    expires_at: int
    client_id: str | None = None


class TokenRejected(Exception):
    """A token was refused; ``error`` is the RFC 6750 code and ``description`` one sentence for the client.

    ``status_code`` is the HTTP status to answer: 401 for ``invalid_token``, 403 for
    ``insufficient_scope``; ``scope`` holds the scopes the client should ask for, if any.
    """

    def __init__(self, error: TokenError, description: str, *, scope: tuple[str, ...] = ()) -> None:
        super().__init__(description)
        self.error: TokenError = error
        self.description = description
        self.scope = scope
        self.status_code = 403 if error == "insufficient_scope" else 401


class IssuerUnavailable(TokenRejected):
    """The issuer's keys could not be fetched, so no token can be checked: answer 503, not 401."""

    def __init__(self, description: str) -> None:
        super().__init__("invalid_token", description)
        self.status_code = 503


class JwtVerifier:
    """Verifies bearer tokens against one issuer; share one per process (it holds the key cache).

    Args:
        settings: What to accept.
        refetch_interval: The least seconds between two key fetches caused by an unknown ``kid``.
        keys_ttl: Seconds after which the keys are fetched again on the next token.
        fetch_timeout: Seconds for each request to the issuer.
        clock: Monotonic seconds (tests pass their own to step over the intervals without sleeping).
    """

    def __init__(
        self,
        settings: OAuthSettings,
        *,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL,
        keys_ttl: float = DEFAULT_KEYS_TTL,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.refetch_interval = refetch_interval
        self.keys_ttl = keys_ttl
        self.fetch_timeout = fetch_timeout
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._jwks_url = settings.jwks_url
        self._lock = anyio.Lock()
        audiences = [settings.audience]
        if settings.audience_claim_used == "aud" and settings.resource_url:
            audiences.append(settings.resource_url)
        self._audiences = tuple(audiences)

    async def verify(self, token: str) -> Identity:
        """Return who ``token`` speaks for.

        Raises:
            TokenRejected: The token is malformed, forged, expired, not for us or lacks a scope.
            IssuerUnavailable: No keys could be fetched from the issuer (a subclass: 503).
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected(
                "invalid_token", "the bearer token is not a JWT; send an access token"
            ) from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRejected(
                "invalid_token",
                f"tokens signed with {str(alg)[:20]!r} are not accepted; the issuer must sign with"
                f" {' or '.join(ALGORITHMS)}",
            )
        kid = header.get("kid")
        key = await self._key_for(kid if isinstance(kid, str) else None, alg)
        claims = self._decode(token, key, alg)
        self._check_audience(claims)
        granted = token_scopes(claims)
        missing = tuple(s for s in self.settings.scopes if s not in granted)
        if missing:
            raise TokenRejected(
                "insufficient_scope",
                f"the token lacks the scope {' '.join(missing)}; ask the issuer for a token with it",
                scope=self.settings.scopes,
            )
        client = claims.get("client_id", claims.get("azp"))
        return Identity(
            subject=str(claims.get("sub") or client or ""),
            scopes=granted,
            expires_at=int(claims["exp"]),
            client_id=client if isinstance(client, str) else None,
        )

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        issuer = self.settings.issuer
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                issuer=[issuer, issuer.rstrip("/")] if issuer.endswith("/") else issuer,
                leeway=self.settings.leeway,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            reason = "the token has expired; get a new one from the issuer"
        except jwt.ImmatureSignatureError:
            reason = "the token is not valid yet (nbf/iat in the future); check the clocks"
        except jwt.InvalidIssuerError:
            reason = f"the token was not issued by {issuer}; get one from that issuer"
        except jwt.MissingRequiredClaimError as exc:
            reason = f"the token has no {exc.claim!r} claim; send an access token from {issuer}"
        except jwt.InvalidSignatureError:
            reason = "the token's signature does not match the issuer's key; get a new token"
        except jwt.PyJWTError as exc:
            reason = f"the token is invalid ({type(exc).__name__}); get a new one from the issuer"
        raise TokenRejected("invalid_token", reason)

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        settings = self.settings
        if settings.audience_claim_used == "client_id":
            if claims.get("token_use", "access") != "access":
                reason = "this is not an access token (token_use); send the access token"
            elif claims.get("client_id") != settings.audience:
                reason = "the token was issued to another client (client_id); use this server's app client"
            else:
                return
            raise TokenRejected("invalid_token", reason)
        aud = claims.get("aud")
        given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if any(a in self._audiences for a in given if isinstance(a, str)):
            return
        if aud is None and "client_id" in claims:
            reason = (
                "the token names no audience (aud) but a client_id, as Cognito access tokens do; the"
                " server must check client_id (--oauth-audience-claim client_id) for such tokens"
            )
        else:
            reason = f"the token is not meant for this server (aud); ask for audience {settings.audience}"
        raise TokenRejected("invalid_token", reason)

    # --- keys -------------------------------------------------------------------------------------

    def _stale(self) -> bool:
        return self._fetched_at is None or self.clock() - self._fetched_at >= self.keys_ttl

    async def _key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        key = None if self._stale() else self._pick(kid, alg)
        if key is not None:
            return key
        async with self._lock:
            # Requests that waited here while another fetched find the new keys without fetching again.
            key = None if self._stale() else self._pick(kid, alg)
            return key or await self._refresh_and_pick(kid, alg)

    async def _refresh_and_pick(self, kid: str | None, alg: str) -> jwt.PyJWK:
        since = None if self._fetched_at is None else self.clock() - self._fetched_at
        if since is None or self._stale() or since >= self.refetch_interval:
            try:
                await self._fetch_keys()
            except IssuerUnavailable:
                if not self._keys:
                    raise
                # Keep serving with the keys we have: the issuer being down must not lock everyone out.
                logger.warning("keeping %d cached signing keys: the issuer did not answer", len(self._keys))
        elif not self._keys:
            raise IssuerUnavailable(
                f"the issuer's keys could not be fetched; the next try is within {self.refetch_interval:g} s"
            )
        key = self._pick(kid, alg)
        if key is None:
            raise TokenRejected(
                "invalid_token",
                "the token's signing key (kid) is not one the issuer publishes; get a new token",
            )
        return key

    def _pick(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            kid = next(iter(self._keys))  # an issuer with a single key may leave kid out
        key = None if kid is None else self._keys.get(kid)
        return key if key is not None and key.algorithm_name == alg else None

    async def _fetch_keys(self) -> None:
        self._fetched_at = self.clock()  # before the request: a failure counts against the rate limit too
        url = self._jwks_url or await self._discover_jwks_url()
        self._jwks_url = url
        document = await self._get_json(url)
        raw = document.get("keys")
        if not isinstance(raw, list):
            raise IssuerUnavailable(f"the issuer's JWKS at {url} has no 'keys' list; check the JWKS URL")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in raw:
            key = _usable_key(entry)
            if key is not None:
                keys[key.key_id or ""] = key
        if not keys:
            raise IssuerUnavailable(f"the issuer's JWKS at {url} holds no RS256 or ES256 signing key")
        added = keys.keys() - self._keys.keys()
        if self._keys and added:
            logger.info("the issuer's signing keys changed: %d new", len(added))
        self._keys = keys
        self._fetched_at = self.clock()

    async def _discover_jwks_url(self) -> str:
        issuer = self.settings.issuer.rstrip("/")
        parts = urlsplit(issuer)
        origin = f"{parts.scheme}://{parts.netloc}"
        candidates = [
            f"{issuer}/.well-known/openid-configuration",
            f"{origin}/.well-known/oauth-authorization-server{parts.path}",  # RFC 8414 §3.1
            f"{issuer}/.well-known/oauth-authorization-server",
        ]
        failures: list[str] = []
        for url in dict.fromkeys(candidates):
            try:
                document = await self._get_json(url)
            except IssuerUnavailable as exc:
                failures.append(exc.description)
                continue
            if str(document.get("issuer", "")).rstrip("/") != issuer:
                raise IssuerUnavailable(
                    f"the metadata at {url} is for issuer {document.get('issuer')!r}, not"
                    f" {self.settings.issuer}; check --oauth-issuer"
                )
            jwks_uri = document.get("jwks_uri")
            if isinstance(jwks_uri, str):
                try:
                    _check_url("the issuer's jwks_uri", jwks_uri)
                except OAuthConfigError as exc:
                    raise IssuerUnavailable(str(exc)) from None
                return jwks_uri
        last = failures[-1] if failures else "none answered"
        raise IssuerUnavailable(
            f"found no metadata with a jwks_uri under {issuer}/.well-known/ ({last});"
            " check --oauth-issuer, or give the JWKS URL"
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        # Loading the CA bundle takes a few hundred ms: once per process, and off the event loop.
        tls = await anyio.to_thread.run_sync(_tls_context)
        try:
            async with httpx2.AsyncClient(
                verify=tls, timeout=self.fetch_timeout, follow_redirects=False
            ) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except httpx2.HTTPError as exc:
            raise IssuerUnavailable(f"cannot reach the issuer at {url} ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise IssuerUnavailable(f"the issuer answered {response.status_code} for {url}")
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise IssuerUnavailable(
                f"the issuer's answer for {url} is larger than {MAX_DOCUMENT_BYTES} bytes"
            )
        try:
            document = response.json()
        except ValueError:
            raise IssuerUnavailable(f"the issuer's answer for {url} is not JSON") from None
        if not isinstance(document, dict):
            raise IssuerUnavailable(f"the issuer's answer for {url} is not a JSON object")
        return document


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx2.create_ssl_context()


def _usable_key(entry: object) -> jwt.PyJWK | None:
    """A signing key of the JWKS that verifies RS256 or ES256, or None to skip it."""
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK(entry)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None  # a malformed key, or a type or curve we do not verify with: others may still do
    return key if key.algorithm_name in ALGORITHMS else None


def token_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes a token grants: ``scope`` (space-separated) and/or ``scp`` (a list or a string)."""
    granted: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            granted.update(value.split())
        elif isinstance(value, list):
            granted.update(v for v in value if isinstance(v, str))
    return frozenset(granted)


# --- what clients read: RFC 9728 metadata and the WWW-Authenticate challenge ---------------------


def resource_metadata_url(resource_url: str) -> str:
    """The RFC 9728 metadata URL of a resource: ``/.well-known/oauth-protected-resource`` + its path.

    ``https://h/mcp`` -> ``https://h/.well-known/oauth-protected-resource/mcp``.
    """
    parts = urlsplit(resource_url)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource{path}"


def protected_resource_metadata(settings: OAuthSettings, resource_url: str) -> dict[str, Any]:
    """The RFC 9728 document for this server; the configured ``resource_url`` wins over the request's."""
    return {
        "resource": settings.resource_url or resource_url,
        "authorization_servers": [settings.issuer],
        "scopes_supported": list(settings.scopes),
        "bearer_methods_supported": ["header"],
        "resource_signing_alg_values_supported": list(ALGORITHMS),
        "resource_name": "mcp-sales",
    }


_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')


def _quoted(value: str) -> str:
    # A header value must not break out of its quotes or its line, whatever a message holds.
    return '"' + _UNSAFE.sub(lambda m: "'" if m.group() == '"' else " ", value) + '"'


def www_authenticate(
    settings_or_metadata_url: OAuthSettings | str,
    error: TokenError | None = None,
    description: str | None = None,
    scope: tuple[str, ...] | str | None = None,
) -> str:
    """The ``WWW-Authenticate`` value of a 401/403: ``Bearer resource_metadata="...", error="...", ...``.

    Args:
        settings_or_metadata_url: The metadata URL itself, or the settings (their ``resource_url``
            gives it; without one the challenge names no metadata URL).
        error: ``invalid_token`` or ``insufficient_scope``; None when no token was sent (RFC 6750 §3.1).
        description: One sentence for the client's developer.
        scope: The scopes to ask for; by default the settings' required scopes.
    """
    if isinstance(settings_or_metadata_url, OAuthSettings):
        settings = settings_or_metadata_url
        metadata_url = resource_metadata_url(settings.resource_url) if settings.resource_url else None
        scope = settings.scopes if scope is None else scope
    else:
        metadata_url = settings_or_metadata_url
    params: list[str] = []
    if metadata_url:
        params.append(f"resource_metadata={_quoted(metadata_url)}")
    if error:
        params.append(f"error={_quoted(error)}")
    if description:
        params.append(f"error_description={_quoted(description)}")
    scopes = scope.split() if isinstance(scope, str) else list(scope or ())
    if scopes:
        params.append(f"scope={_quoted(' '.join(scopes))}")
    return "Bearer " + ", ".join(params) if params else "Bearer"
