"""The OAuth resource server against a real issuer this test runs: keys generated here, the JWKS and the
discovery document served over HTTP on 127.0.0.1 by a stdlib server in a thread, tokens minted with PyJWT.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mcp_sales.http.oauth import (
    Identity,
    IssuerUnavailable,
    JwtVerifier,
    OAuthConfigError,
    OAuthSettings,
    TokenRejected,
    protected_resource_metadata,
    resource_metadata_url,
    www_authenticate,
)
from mcp_sales.models import TopProductsResult
from tests.mcp_sales.http.helpers import HttpServer as ServerProcess
from tests.mcp_sales.http.helpers import expected_top, http_client, mcp_session, reference_frame

AUDIENCE = "https://sales.example.com/mcp"
SCOPE = "sales/read"
WAIT = 20  # seconds: bound on any one verification (an HTTP round trip to the local issuer)


class SigningKey:
    """A private key with its kid and algorithm, and the public JWK the issuer publishes for it."""

    def __init__(self, alg: str = "RS256") -> None:
        self.alg = alg
        self.kid = uuid.uuid4().hex[:12]
        if alg == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            public = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk: dict[str, Any] = {**public, "kid": self.kid, "alg": alg, "use": "sig"}


@functools.cache
def signing_key(role: str, alg: str = "RS256") -> SigningKey:
    """One key per role for the whole module: an RSA key takes a while to generate."""
    return SigningKey(alg)


class TestIssuer:
    """An authorization server's public side: discovery documents and a JWKS whose keys tests change.

    Attributes:
        keys: The keys published now (tests replace the list to rotate).
        hits: Requests per path.
        discovery: Which discovery document it serves: "openid", "oauth" (RFC 8414 only) or "none".
        gate: When set to an Event, JWKS requests wait for it (a slow issuer) and ``asked`` is set.
    """

    __test__ = False  # a helper, not a test class

    def __init__(self) -> None:
        self.keys: list[SigningKey] = [signing_key("main")]
        self.hits: Counter[str] = Counter()
        self.discovery = "openid"
        self.metadata_issuer: str | None = None
        self.gate: threading.Event | None = None
        self.junk: list[Any] = []  # JWKS entries published before the real keys
        self.asked = threading.Event()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.hits[self.path] += 1
                status, body = issuer.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pool"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        meta = {"issuer": self.metadata_issuer or self.url, "jwks_uri": f"{self.url}/jwks.json"}
        if path == "/pool/.well-known/openid-configuration" and self.discovery == "openid":
            return 200, meta
        if path == "/.well-known/oauth-authorization-server/pool" and self.discovery == "oauth":
            return 200, meta
        if path == "/pool/jwks.json":
            if self.gate is not None:
                self.asked.set()
                if not self.gate.wait(WAIT):
                    return 503, {}
            return 200, {"keys": [*self.junk, *(key.jwk for key in self.keys)]}
        return 404, {}

    def token(self, key: SigningKey | None = None, *, kid: str | None = None, **claims: Any) -> str:
        """A token signed with ``key`` (the first published one by default); ``claims`` override."""
        key = key or self.keys[0]
        now = int(time.time())
        body = {"iss": self.url, "sub": "analyst-1", "aud": AUDIENCE, "scope": SCOPE, "iat": now}
        body["exp"] = now + 300
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        headers = {} if kid == "" else {"kid": kid or key.kid}  # kid="" leaves the header without one
        return jwt.encode(body, key.private, algorithm=key.alg, headers=headers)


class Clock:
    """Monotonic time the test steps forward, so refetch intervals pass without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    server = TestIssuer()
    server.thread.start()
    yield server
    if server.gate is not None:
        server.gate.set()
    server.server.shutdown()
    server.server.server_close()


def settings(issuer: TestIssuer, **overrides: Any) -> OAuthSettings:
    values: dict[str, Any] = {"issuer": issuer.url, "audience": AUDIENCE, "scopes": (SCOPE,)}
    return OAuthSettings(**{**values, **overrides})


async def rejected(verifier: JwtVerifier, token: str) -> TokenRejected:
    with anyio.fail_after(WAIT), pytest.raises(TokenRejected) as caught:
        await verifier.verify(token)
    return caught.value


async def verified(verifier: JwtVerifier, token: str) -> Identity:
    with anyio.fail_after(WAIT):
        return await verifier.verify(token)


# --- verification ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_valid_token_names_its_subject_scopes_and_expiry(issuer: TestIssuer) -> None:
    verifier = JwtVerifier(settings(issuer))
    exp = int(time.time()) + 120
    identity = await verified(verifier, issuer.token(exp=exp, scope=f"{SCOPE} sales/forecast"))
    assert identity == Identity("analyst-1", frozenset({SCOPE, "sales/forecast"}), exp)
    # Keys were found by discovery once and are cached: a second token costs no request.
    await verified(verifier, issuer.token(sub="analyst-2"))
    assert issuer.hits == {"/pool/.well-known/openid-configuration": 1, "/pool/jwks.json": 1}
    await verified(verifier, issuer.token(kid=""))  # an issuer with one key may leave kid out


@pytest.mark.anyio
async def test_expired_future_and_unsigned_claims_are_refused(issuer: TestIssuer) -> None:
    verifier = JwtVerifier(settings(issuer))
    now = int(time.time())
    assert "expired" in (await rejected(verifier, issuer.token(exp=now - 120))).description
    await verified(verifier, issuer.token(exp=now - 5))  # within the leeway for clock skew
    assert "not valid yet" in (await rejected(verifier, issuer.token(nbf=now + 600))).description
    assert "'exp'" in (await rejected(verifier, issuer.token(exp=None))).description
    for bad in ("", "not-a-jwt", "a.b.c"):
        assert (await rejected(verifier, bad)).error == "invalid_token"


@pytest.mark.anyio
async def test_wrong_audience_and_wrong_issuer_are_refused(issuer: TestIssuer) -> None:
    verifier = JwtVerifier(settings(issuer))
    wrong_aud = await rejected(verifier, issuer.token(aud="https://other.example.com/mcp"))
    assert wrong_aud.error == "invalid_token" and wrong_aud.status_code == 401
    assert "aud" in wrong_aud.description and AUDIENCE in wrong_aud.description
    no_aud = await rejected(verifier, issuer.token(aud=None, client_id="4fs2kq0example", token_use="access"))
    assert "client_id" in no_aud.description  # a Cognito-shaped token: the operator is told the setting
    await verified(verifier, issuer.token(aud=["https://other.example.com", AUDIENCE]))
    wrong_iss = await rejected(verifier, issuer.token(iss="https://evil.example.com/pool"))
    assert "not issued by" in wrong_iss.description
    # The configured resource URL is accepted as an audience too (RFC 8707 resource indicators).
    by_resource = JwtVerifier(settings(issuer, audience="api://sales", resource_url=AUDIENCE))
    await verified(by_resource, issuer.token())
    await verified(by_resource, issuer.token(aud="api://sales"))


@pytest.mark.anyio
async def test_a_missing_scope_is_insufficient_scope_with_the_scopes_to_ask_for(issuer: TestIssuer) -> None:
    verifier = JwtVerifier(settings(issuer, scopes=(SCOPE, "sales/forecast")))
    refusal = await rejected(verifier, issuer.token(scope=SCOPE))
    assert refusal.error == "insufficient_scope" and refusal.status_code == 403
    assert "sales/forecast" in refusal.description and refusal.scope == (SCOPE, "sales/forecast")
    assert (await rejected(verifier, issuer.token(scope=None))).error == "insufficient_scope"
    # Entra ID and Okta put scopes in an `scp` list.
    ok = await verified(verifier, issuer.token(scope=None, scp=[SCOPE, "sales/forecast"]))
    assert ok.scopes == {SCOPE, "sales/forecast"}


@pytest.mark.anyio
async def test_cognito_access_tokens_are_matched_by_client_id(issuer: TestIssuer) -> None:
    client = "4fs2kq0example"
    verifier = JwtVerifier(settings(issuer, audience=client, audience_claim="client_id"))
    # A Cognito access token: no aud, client_id and token_use instead, scopes in `scope`.
    cognito = {"aud": None, "client_id": client, "token_use": "access", "sub": "d1e2"}
    identity = await verified(verifier, issuer.token(**cognito))
    assert identity.subject == "d1e2" and identity.client_id == client
    other = await rejected(verifier, issuer.token(**{**cognito, "client_id": "someone-else"}))
    assert "client_id" in other.description
    id_token = await rejected(verifier, issuer.token(**{**cognito, "token_use": "id", "aud": client}))
    assert "not an access token" in id_token.description


@pytest.mark.anyio
async def test_none_and_hmac_tokens_are_refused_before_any_key_is_fetched(issuer: TestIssuer) -> None:
    verifier = JwtVerifier(settings(issuer))
    claims = {"iss": issuer.url, "sub": "x", "aud": AUDIENCE, "scope": SCOPE, "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": issuer.keys[0].kid})
    assert "'none'" in (await rejected(verifier, unsigned)).description
    # HS256 keyed with public key material: what a verifier letting the token pick its algorithm accepts.
    secret = str(issuer.keys[0].jwk["n"]).encode()
    hmac_token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": issuer.keys[0].kid})
    assert "'HS256'" in (await rejected(verifier, hmac_token)).description
    assert issuer.hits == {}
    # A token signed with another key under a published kid fails its signature check.
    forged = issuer.token(signing_key("forger"), kid=issuer.keys[0].kid)
    assert "signature" in (await rejected(verifier, forged)).description


@pytest.mark.anyio
async def test_es256_keys_work_and_a_key_is_used_only_with_its_own_algorithm(issuer: TestIssuer) -> None:
    ec_key = signing_key("ec", "ES256")
    issuer.keys.append(ec_key)
    verifier = JwtVerifier(settings(issuer))
    await verified(verifier, issuer.token(ec_key))
    # An RS256 header naming the EC key's kid does not get that key.
    mixed = issuer.token(issuer.keys[0], kid=ec_key.kid)
    assert (await rejected(verifier, mixed)).error == "invalid_token"
    assert "kid" in (await rejected(verifier, issuer.token(kid=""))).description  # which of the two?


@pytest.mark.anyio
async def test_keys_the_verifier_cannot_use_are_skipped_not_fatal(issuer: TestIssuer) -> None:
    main = issuer.keys[0]
    issuer.junk = [
        "not a key",
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},  # a symmetric key: never usable
        {**main.jwk, "use": "enc"},  # an encryption key under the same kid
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {**main.jwk, "kid": "rs512", "alg": "RS512"},
    ]
    verifier = JwtVerifier(settings(issuer))
    await verified(verifier, issuer.token())
    assert (await rejected(verifier, issuer.token(kid="hmac"))).error == "invalid_token"
    issuer.junk = issuer.junk[:4]
    issuer.keys = []
    lonely = await rejected(JwtVerifier(settings(issuer)), issuer.token(main))
    assert isinstance(lonely, IssuerUnavailable) and "no RS256 or ES256" in lonely.description


@pytest.mark.anyio
async def test_an_unknown_kid_refetches_once_per_interval_not_per_token(issuer: TestIssuer) -> None:
    clock = Clock()
    verifier = JwtVerifier(settings(issuer), refetch_interval=30, clock=clock)
    await verified(verifier, issuer.token())
    stranger = signing_key("stranger")
    for _ in range(25):  # a flood of tokens under a key the issuer never published
        refusal = await rejected(verifier, issuer.token(stranger))
        assert "kid" in refusal.description
    assert issuer.hits["/pool/jwks.json"] == 1  # still within the interval: no request at all
    clock.now += 31
    for _ in range(25):
        await rejected(verifier, issuer.token(stranger, kid=uuid.uuid4().hex))
    assert issuer.hits["/pool/jwks.json"] == 2  # one refetch for the whole second flood
    await verified(verifier, issuer.token())  # the real key still works throughout


@pytest.mark.anyio
async def test_a_rotated_key_is_picked_up_and_a_dropped_one_stops_working(issuer: TestIssuer) -> None:
    clock = Clock()
    verifier = JwtVerifier(settings(issuer), refetch_interval=30, keys_ttl=3600, clock=clock)
    old = issuer.keys[0]
    await verified(verifier, issuer.token(old))
    new = signing_key("next")
    issuer.keys = [old, new]  # the issuer publishes the next key, then signs with it
    clock.now += 31
    assert (await verified(verifier, issuer.token(new))).subject == "analyst-1"
    assert issuer.hits["/pool/jwks.json"] == 2
    issuer.keys = [new]  # the old key is retired: after the cache's lifetime, its tokens stop working
    await verified(verifier, issuer.token(old))
    clock.now += 3600
    assert "kid" in (await rejected(verifier, issuer.token(old))).description
    await verified(verifier, issuer.token(new))
    assert issuer.hits["/pool/.well-known/openid-configuration"] == 1  # the JWKS URL was remembered


@pytest.mark.anyio
async def test_rfc8414_discovery_and_an_explicit_jwks_url(issuer: TestIssuer) -> None:
    issuer.discovery = "oauth"
    await verified(JwtVerifier(settings(issuer)), issuer.token())
    assert issuer.hits["/.well-known/oauth-authorization-server/pool"] == 1
    issuer.hits.clear()
    await verified(JwtVerifier(settings(issuer, jwks_url=f"{issuer.url}/jwks.json")), issuer.token())
    assert issuer.hits == {"/pool/jwks.json": 1}


@pytest.mark.anyio
async def test_an_unreachable_or_mismatched_issuer_is_503_not_401(issuer: TestIssuer) -> None:
    issuer.metadata_issuer = "https://elsewhere.example.com"
    refusal = await rejected(JwtVerifier(settings(issuer)), issuer.token())
    assert isinstance(refusal, IssuerUnavailable) and refusal.status_code == 503
    assert "elsewhere.example.com" in refusal.description
    issuer.discovery = "none"
    missing = await rejected(JwtVerifier(settings(issuer)), issuer.token())
    assert isinstance(missing, IssuerUnavailable) and "jwks_uri" in missing.description

    # Once keys are cached, an issuer that goes away does not lock anyone out.
    issuer.metadata_issuer, issuer.discovery = None, "openid"
    clock = Clock()
    verifier = JwtVerifier(settings(issuer), clock=clock)
    token = issuer.token()
    await verified(verifier, token)
    issuer.server.shutdown()
    issuer.server.server_close()
    clock.now += 7200
    await verified(verifier, token)
    cold = JwtVerifier(settings(issuer))
    down = await rejected(cold, token)
    assert isinstance(down, IssuerUnavailable) and "cannot reach" in down.description


@pytest.mark.anyio
async def test_fetching_keys_does_not_block_the_event_loop(issuer: TestIssuer) -> None:
    issuer.gate = threading.Event()
    verifier = JwtVerifier(settings(issuer))
    results: list[Identity] = []

    async def verify() -> None:
        results.append(await verifier.verify(issuer.token()))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(verify)
            # This task runs while the JWKS request hangs; a blocking fetch would starve it, the
            # gate would time out and the issuer would answer 503.
            await anyio.to_thread.run_sync(issuer.asked.wait, WAIT)
            issuer.gate.set()
    assert [r.subject for r in results] == ["analyst-1"]


# --- settings, metadata and the challenge ---------------------------------------------------------


def test_settings_refuse_plain_http_issuers_empty_audiences_and_odd_scopes() -> None:
    with pytest.raises(OAuthConfigError, match="not an https URL"):
        OAuthSettings("http://issuer.example.com", AUDIENCE)
    with pytest.raises(OAuthConfigError, match="not an https URL"):
        OAuthSettings("https://issuer.example.com", AUDIENCE, jwks_url="http://issuer.example.com/k")
    with pytest.raises(OAuthConfigError, match="audience is empty"):
        OAuthSettings("https://issuer.example.com", " ")
    with pytest.raises(OAuthConfigError, match="one word"):
        OAuthSettings("https://issuer.example.com", AUDIENCE, scopes=("a b",))
    with pytest.raises(OAuthConfigError, match="'aud' or 'client_id'"):
        OAuthSettings("https://issuer.example.com", AUDIENCE, audience_claim="azp")  # type: ignore[arg-type]
    OAuthSettings("http://localhost:9000/realms/test", AUDIENCE)  # loopback http is for tests


def test_a_cognito_issuer_checks_client_id_unless_told_otherwise() -> None:
    pool = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    assert OAuthSettings(pool, "4fs2kq0example").audience_claim_used == "client_id"
    assert OAuthSettings(pool, AUDIENCE, audience_claim="aud").audience_claim_used == "aud"
    assert OAuthSettings("https://login.example.com", AUDIENCE).audience_claim_used == "aud"
    lookalike = "https://cognito-idp.eu-west-1.amazonaws.com.evil.example/pool"
    assert OAuthSettings(lookalike, AUDIENCE).audience_claim_used == "aud"


def test_protected_resource_metadata_follows_rfc9728() -> None:
    pool = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    config = OAuthSettings(pool, "4fs2kq0example", ("sales/read",), audience_claim="client_id")
    document = protected_resource_metadata(config, "http://10.0.0.5:8000/mcp")
    assert document["resource"] == "http://10.0.0.5:8000/mcp"
    assert document["authorization_servers"] == [pool]
    assert document["scopes_supported"] == ["sales/read"]
    assert document["bearer_methods_supported"] == ["header"]
    behind_proxy = OAuthSettings(pool, "c", resource_url=AUDIENCE)
    assert protected_resource_metadata(behind_proxy, "http://10.0.0.5:8000/mcp")["resource"] == AUDIENCE
    assert json.loads(json.dumps(document)) == document
    assert (
        resource_metadata_url(AUDIENCE)
        == "https://sales.example.com/.well-known/oauth-protected-resource/mcp"
    )
    assert (
        resource_metadata_url("https://h.example/")
        == "https://h.example/.well-known/oauth-protected-resource"
    )


def test_www_authenticate_challenges() -> None:
    meta = "https://sales.example.com/.well-known/oauth-protected-resource/mcp"
    assert www_authenticate(meta) == f'Bearer resource_metadata="{meta}"'
    assert www_authenticate(meta, "invalid_token", "the token has expired") == (
        f'Bearer resource_metadata="{meta}", error="invalid_token", error_description="the token has expired"'
    )
    config = OAuthSettings("https://issuer.example.com", AUDIENCE, ("sales/read", "sales/forecast"))
    with_resource = OAuthSettings(
        "https://issuer.example.com", AUDIENCE, ("sales/read",), resource_url=AUDIENCE
    )
    assert www_authenticate(config) == 'Bearer scope="sales/read sales/forecast"'
    assert www_authenticate(with_resource, "insufficient_scope") == (
        f'Bearer resource_metadata="{meta}", error="insufficient_scope", scope="sales/read"'
    )
    # A description cannot break out of its quotes or its header line.
    header = www_authenticate(meta, "invalid_token", 'bad "kid"\r\nSet-Cookie: x=1 \\')
    assert header.endswith("error_description=\"bad 'kid'  Set-Cookie: x=1  \"")
    assert "\r" not in header and "\n" not in header
    assert www_authenticate(OAuthSettings("https://issuer.example.com", AUDIENCE)) == "Bearer"


# --- end to end: the real server, this issuer, the SDK's client -----------------------------------

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "oauth-test", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.mark.anyio
async def test_the_server_takes_the_issuers_tokens_and_points_clients_at_it(
    issuer: TestIssuer, sales_csv: Path, cache_root: Path
) -> None:
    server = ServerProcess.start(
        [
            *("--transport", "streamable-http", "--data", str(sales_csv), "--cache-dir", str(cache_root)),
            *("--oauth-issuer", issuer.url, "--oauth-audience", AUDIENCE, "--oauth-scope", SCOPE),
        ]
    )
    token = issuer.token(sub="analyst-7")
    try:
        with anyio.fail_after(60):
            async with http_client() as http:
                refused = await http.post(f"{server.url}/mcp", json=INITIALIZE, headers=ACCEPT)
                assert refused.status_code == 401 and refused.json()["error"]
                metadata_url = f"{server.url}/.well-known/oauth-protected-resource/mcp"
                challenge = refused.headers["www-authenticate"]
                assert challenge.startswith(f'Bearer resource_metadata="{metadata_url}"'), challenge
                assert f'scope="{SCOPE}"' in challenge  # what to ask the issuer for

                document = (await http.get(metadata_url)).json()  # no credentials needed
                assert document["resource"] == f"{server.url}/mcp"
                assert document["authorization_servers"] == [issuer.url]
                assert document["scopes_supported"] == [SCOPE]

                async def post_with(bearer: str) -> httpx2.Response:
                    headers = {**ACCEPT, "Authorization": f"Bearer {bearer}"}
                    return await http.post(f"{server.url}/mcp", json=INITIALIZE, headers=headers)

                expired = await post_with(issuer.token(exp=int(time.time()) - 600))
                assert expired.status_code == 401
                assert 'error="invalid_token"' in expired.headers["www-authenticate"]
                assert "expired" in expired.json()["error_description"]
                foreign = await post_with(issuer.token(aud="https://other.example.com/mcp"))
                assert foreign.status_code == 401
                narrow = await post_with(issuer.token(scope="sales/other"))
                assert narrow.status_code == 403
                assert 'error="insufficient_scope"' in narrow.headers["www-authenticate"]

            async with mcp_session(server.url, token) as client:
                result = await client.call_tool("top_n_products", {"n": 5, "operation": "Dallas"})
                assert not result.is_error, result.content
                top = TopProductsResult.model_validate(result.structured_content)
        expected = expected_top(reference_frame(sales_csv), "Dallas", 5)
        assert [(p.product_id, p.units) for p in top.products] == expected
        server.wait_for_line("sub:analyst-7")  # the access log names the subject...
        assert token not in server.log()  # ...never the token
    finally:
        server.stop()
