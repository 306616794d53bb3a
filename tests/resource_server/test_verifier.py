"""The resource-server kit: JWT access tokens (RFC 9068 §4), introspection (RFC 7662), the
bearer middleware (RFC 6750 §3) and protected resource metadata (RFC 9728 §3).

The authorization server is an in-process httpx MockTransport that publishes keys generated
here with joserfc; time is a clock the tests move.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib.util
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, KeyParameters, KeySet, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from authgate.resource_server import (
    AccessClaims,
    BearerAuth,
    Introspection,
    InvalidResource,
    InvalidToken,
    TokenVerifier,
    VerifierUnavailable,
    canonical_resource,
    metadata_url,
    protected_resource_metadata_app,
)
from authgate.resource_server.challenge import bearer_challenge
from authgate.resource_server.mcp import McpTokenVerifier

ISSUER = "https://auth.example.com"
RESOURCE = "https://mcp.example.com/mcp"
JWKS_URI = f"{ISSUER}/.well-known/jwks.json"
INTROSPECT_URI = f"{ISSUER}/oauth2/introspect"
RS_CLIENT = ("rs-client", "rs secret/with:odd+chars")
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_key(alg: str, kid: str | None = None) -> Key:
    params: KeyParameters | None = {"kid": kid} if kid else None
    if alg == "ES256":
        return ECKey.generate_key("P-256", params, auto_kid=kid is None)
    if alg == "RS256":
        return RSAKey.generate_key(2048, params, auto_kid=kid is None)
    return OKPKey.generate_key("Ed25519", params, auto_kid=kid is None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(
    key: Key | None,
    claims: dict[str, Any],
    *,
    alg: str = "ES256",
    header: dict[str, Any] | None = None,
    hmac_secret: bytes | None = None,
) -> str:
    """Sign a compact JWS by hand, so tests can also make what no library would."""
    head = {"typ": "at+jwt", "alg": alg, **({"kid": key.kid} if key is not None else {})}
    head = {k: v for k, v in {**head, **(header or {})}.items() if v is not None}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
    if hmac_secret is not None:
        signature = hmac.new(hmac_secret, signing_input.encode(), hashlib.sha256).digest()
    elif key is None:
        signature = b""
    else:
        signature = JWSRegistry.algorithms[alg].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


def claims(clock: Clock, **overrides: Any) -> dict[str, Any]:
    """RFC 9068 §2.2 claims; an override of None removes the claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-42",
        "aud": RESOURCE,
        "client_id": "client-7",
        "scope": "mcp:tools files:read",
        "jti": "jti-1",
        "iat": int(clock.now),
        "exp": int(clock.now) + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class FakeAS:
    """The authorization server's metadata, JWKS and introspection endpoints."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.jwks_status = 200
        self.cache_control = "public, max-age=300"
        self.metadata_issuer = ISSUER
        self.introspection: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.down = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if path == "/.well-known/oauth-authorization-server":
            return httpx.Response(
                200,
                json={
                    "issuer": self.metadata_issuer,
                    "jwks_uri": JWKS_URI,
                    "introspection_endpoint": INTROSPECT_URI,
                },
            )
        if path == "/.well-known/jwks.json":
            document = KeySet(self.keys).as_dict(private=False) if self.keys else {"keys": []}
            headers = {"Cache-Control": self.cache_control}
            return httpx.Response(self.jwks_status, json=document, headers=headers)
        if path == "/oauth2/introspect":
            return self._introspect(request)
        return httpx.Response(404)

    def _introspect(self, request: httpx.Request) -> httpx.Response:
        expected = base64.b64encode(b"rs-client:rs+secret%2Fwith%3Aodd%2Bchars").decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return httpx.Response(401, json={"error": "invalid_client"})
        form = parse_qs(request.content.decode())
        assert form["token_type_hint"] == ["access_token"]
        return httpx.Response(200, json=self.introspection.get(form["token"][0], {"active": False}))

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.url.path == path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth_server() -> FakeAS:
    return FakeAS()


Make = Callable[..., TokenVerifier]


@pytest.fixture
def make_verifier(auth_server: FakeAS, clock: Clock) -> Iterator[Make]:
    transport = httpx.MockTransport(auth_server.handle)
    made: list[TokenVerifier] = []

    def make(**options: Any) -> TokenVerifier:
        options.setdefault("issuer", ISSUER)
        options.setdefault("resource", RESOURCE)
        verifier = TokenVerifier(
            http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport),
            clock=clock,
            **options,
        )
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        verifier.close()
        asyncio.run(verifier.aclose())


@pytest.fixture(params=["sync", "async"])
def verify(request: pytest.FixtureRequest) -> Callable[[TokenVerifier, str], AccessClaims]:
    """Both APIs run every test that takes this fixture."""
    if request.param == "sync":
        return lambda verifier, token: verifier.verify_sync(token)
    return lambda verifier, token: asyncio.run(verifier.verify(token))


def rejected(verify: Callable[[TokenVerifier, str], AccessClaims], v: TokenVerifier, t: str) -> str:
    with pytest.raises(InvalidToken) as info:
        verify(v, t)
    return info.value.description


# --- canonical resource identifiers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        pytest.param("https://mcp.example.com/", "https://mcp.example.com", id="lone-slash"),
        pytest.param("HTTPS://MCP.Example.COM:443", "https://mcp.example.com", id="case-port"),
        pytest.param("http://127.0.0.1:80/mcp", "http://127.0.0.1/mcp", id="http-default-port"),
        pytest.param("http://127.0.0.1:8765/mcp", "http://127.0.0.1:8765/mcp", id="other-port"),
        pytest.param("https://a.example/MCP/?x=1", "https://a.example/MCP/?x=1", id="path-query"),
        pytest.param("https://[::1]:8443/a", "https://[::1]:8443/a", id="ipv6"),
    ],
)
def test_canonical_resource(value: str, canonical: str) -> None:
    assert canonical_resource(value) == canonical
    assert canonical_resource(canonical) == canonical


@pytest.mark.parametrize(
    "value",
    [
        "mcp.example.com",
        "urn:x:y",
        "https://a.example/#frag",
        "https://u:p@a.example",
        "ftp://a.b",
        "https://a.example/ x",
        "https://a.example:99999",
        "https://",
    ],
)
def test_canonical_resource_refuses(value: str) -> None:
    with pytest.raises(InvalidResource):
        canonical_resource(value)


# --- JWT access tokens (RFC 9068 §4) ----------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_valid_token_is_accepted(
    alg: str, make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key(alg)
    auth_server.keys = [key]
    token = mint(key, claims(clock), alg=alg)

    got = verify(make_verifier(), token)

    assert got == AccessClaims(
        subject="user-42",
        client_id="client-7",
        scopes=frozenset({"mcp:tools", "files:read"}),
        audience=RESOURCE,
        expires_at=int(clock.now) + 300,
        jti="jti-1",
        raw=claims(clock),
    )
    assert got.issuer == ISSUER
    # An independent implementation (joserfc's JWT and claims registry) agrees.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc: "EdDSA" is now "Ed25519"
        decoded = jwt.decode(token, KeySet([key]), algorithms=[alg])
    jwt.JWTClaimsRegistry(
        now=int(clock.now),
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": RESOURCE},
        sub={"essential": True},
        jti={"essential": True},
        exp={"essential": True},
    ).validate(decoded.claims)
    assert decoded.header["typ"] == "at+jwt"
    assert (decoded.claims["sub"], decoded.claims["client_id"]) == (got.subject, got.client_id)
    assert set(decoded.claims["scope"].split()) == got.scopes


def test_keys_are_discovered_from_metadata_and_cached(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    verifier = make_verifier()
    for n in range(3):
        verify(verifier, mint(key, claims(clock, jti=f"j{n}")))
    assert auth_server.count("/.well-known/oauth-authorization-server") == 1
    assert auth_server.count("/.well-known/jwks.json") == 1
    assert auth_server.requests[0].headers["accept"] == "application/json"


def test_metadata_naming_another_issuer_is_refused(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    auth_server.metadata_issuer = "https://evil.example"
    with pytest.raises(VerifierUnavailable, match="another issuer"):
        verify(make_verifier(), mint(key, claims(clock)))
    assert auth_server.count("/.well-known/jwks.json") == 0


def test_jwks_is_refetched_after_its_ttl(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    auth_server.cache_control = "public, max-age=120"  # shorter than our 300 s: honoured
    verifier = make_verifier(jwks_uri=JWKS_URI)
    verify(verifier, mint(key, claims(clock)))
    clock.advance(119)
    verify(verifier, mint(key, claims(clock)))
    assert auth_server.count("/.well-known/jwks.json") == 1
    clock.advance(1)
    verify(verifier, mint(key, claims(clock)))
    assert auth_server.count("/.well-known/jwks.json") == 2
    assert auth_server.count("/.well-known/oauth-authorization-server") == 0


def test_key_removed_from_jwks_is_no_longer_accepted(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    old, new = new_key("ES256"), new_key("ES256")
    auth_server.keys = [old, new]
    verifier = make_verifier(jwks_uri=JWKS_URI)
    verify(verifier, mint(old, claims(clock)))
    auth_server.keys = [new]  # rotated: the old key is gone
    clock.advance(301)
    token = mint(old, claims(clock))
    assert rejected(verify, verifier, token) == "The token was signed by an unknown key"
    assert verify(verifier, mint(new, claims(clock))).subject == "user-42"


def test_unknown_kid_triggers_exactly_one_refresh(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    verifier = make_verifier(jwks_uri=JWKS_URI, jwks_refresh_interval=30)
    verify(verifier, mint(key, claims(clock)))
    clock.advance(31)
    stranger = new_key("ES256")
    token = mint(stranger, claims(clock))

    assert rejected(verify, verifier, token) == "The token was signed by an unknown key"
    assert auth_server.count("/.well-known/jwks.json") == 2  # one refresh
    for _ in range(5):
        rejected(verify, verifier, token)
    assert auth_server.count("/.well-known/jwks.json") == 2  # and no more within 30 s

    # The AS rotates and publishes the new key: after the interval, a refresh finds it.
    auth_server.keys = [key, stranger]
    clock.advance(30)
    assert verify(verifier, token).subject == "user-42"
    assert auth_server.count("/.well-known/jwks.json") == 3


def test_refresh_failure_keeps_the_keys_held(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    verifier = make_verifier(jwks_uri=JWKS_URI)
    verify(verifier, mint(key, claims(clock)))
    auth_server.down = True
    clock.advance(301)
    assert verify(verifier, mint(key, claims(clock))).subject == "user-42"
    assert auth_server.count("/.well-known/jwks.json") == 2


@pytest.mark.parametrize("failure", ["down", "500", "not-json"])
def test_no_keys_at_all_is_unavailable_not_invalid(
    failure: str, make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    auth_server.down = failure == "down"
    auth_server.jwks_status = 500 if failure == "500" else 200
    if failure == "not-json":
        auth_server.cache_control = "x"
        auth_server.keys = []
    with pytest.raises(VerifierUnavailable):
        verify(make_verifier(jwks_uri=JWKS_URI), mint(key, claims(clock)))


def test_token_without_kid(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    verifier = make_verifier()
    token = mint(key, claims(clock), header={"kid": None})
    assert verify(verifier, token).subject == "user-42"  # the only key there is
    auth_server.keys = [key, new_key("ES256")]
    clock.advance(301)
    assert rejected(verify, verifier, token) == "The token does not name its signing key (kid)"
    assert auth_server.count("/.well-known/jwks.json") == 2  # no extra refresh for it


def test_issuer_must_be_a_url() -> None:
    with pytest.raises(ValueError, match="issuer"):
        TokenVerifier("auth.example.com", RESOURCE)


def test_same_kid_other_key_is_a_bad_signature(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    auth_server.keys = [new_key("ES256", kid="k1")]
    forged = mint(new_key("ES256", kid="k1"), claims(clock))
    assert rejected(verify, make_verifier(), forged) == "The token's signature is invalid"


def test_tampered_payload_is_a_bad_signature(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("RS256")
    auth_server.keys = [key]
    head, _, sig = mint(key, claims(clock), alg="RS256").split(".")
    payload = b64(json.dumps(claims(clock, sub="admin")).encode())
    token = f"{head}.{payload}.{sig}"
    assert rejected(verify, make_verifier(), token) == "The token's signature is invalid"


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        pytest.param({"aud": "https://other.example/mcp"}, "issued for another resource", id="aud"),
        pytest.param(
            {"aud": ["https://a.example", "https://b.example"]}, "another res", id="aud[]"
        ),
        pytest.param({"aud": "https://mcp.example.com/mcp/x"}, "another res", id="aud-child"),
        pytest.param({"aud": "https://mcp.example.com/mcp//"}, "another res", id="aud-two-slashes"),
        pytest.param({"aud": 7}, "audience is malformed", id="aud-type"),
        pytest.param({"iss": "https://auth.example.com/"}, "another authorization", id="iss"),
        pytest.param({"iss": "https://evil.example"}, "another authorization server", id="iss2"),
    ],
)
def test_wrong_audience_or_issuer(
    overrides: dict[str, Any],
    description: str,
    make_verifier: Make,
    auth_server: FakeAS,
    clock: Clock,
    verify: Any,
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock, **overrides))
    assert description in rejected(verify, make_verifier(), token)


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param(["https://other.example", RESOURCE], id="list"),
        pytest.param("HTTPS://MCP.EXAMPLE.COM:443/mcp", id="non-canonical-spelling"),
        # RFC 8707 §2 as authgate applies it: one trailing "/" apart is the same resource, and
        # authgate's aud is the registered spelling, which may carry the "/" this one lacks.
        pytest.param(RESOURCE + "/", id="trailing-slash"),
    ],
)
def test_audience_list_or_spelling(
    aud: Any, make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    assert verify(make_verifier(), mint(key, claims(clock, aud=aud))).audience == RESOURCE


def test_resource_configured_with_trailing_slash(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    verifier = make_verifier(resource="https://MCP.example.com/")
    token = mint(key, claims(clock, aud="https://mcp.example.com"))
    assert verify(verifier, token).audience == "https://mcp.example.com"


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        pytest.param(-1, True, id="exp-1s-ago-within-leeway"),
        pytest.param(-59, True, id="exp-59s-ago-within-leeway"),
        pytest.param(-60, False, id="exp-60s-ago"),
        pytest.param(-3600, False, id="exp-1h-ago"),
    ],
)
def test_expiry_with_leeway(
    offset: int, accepted: bool, make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock, iat=int(clock.now) - 7200, exp=int(clock.now) + offset))
    verifier = make_verifier()
    if accepted:
        assert verify(verifier, token).expires_at == int(clock.now) + offset
    else:
        assert rejected(verify, verifier, token) == "The token has expired"


def test_leeway_zero_is_strict(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock, iat=int(clock.now) - 60, exp=int(clock.now)))
    assert rejected(verify, make_verifier(leeway=0), token) == "The token has expired"


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        pytest.param({"nbf": T0 + 61}, "The token is not valid yet", id="nbf"),
        pytest.param({"iat": T0 + 61}, "The token was issued in the future", id="iat"),
        pytest.param({"exp": "later"}, "The token's exp claim is not a number", id="exp-type"),
        pytest.param({"exp": True}, "The token's exp claim is not a number", id="exp-bool"),
        pytest.param({"sub": ""}, "The token's sub claim is not a non-empty string", id="sub"),
        pytest.param({"scope": ["a"]}, "The token's scope claim is not a string", id="scope"),
    ],
)
def test_bad_times_and_types(
    overrides: dict[str, Any],
    description: str,
    make_verifier: Make,
    auth_server: FakeAS,
    clock: Clock,
    verify: Any,
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock, **overrides))
    assert rejected(verify, make_verifier(), token) == description


def test_not_yet_valid_within_leeway_is_accepted(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock, nbf=T0 + 59, iat=T0 + 59))
    assert verify(make_verifier(), token).subject == "user-42"


@pytest.mark.parametrize("name", ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"])
def test_missing_required_claim(
    name: str, make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock, **{name: None}))
    assert rejected(verify, make_verifier(), token) == f"The token lacks the {name} claim"


def test_scope_may_be_absent(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    assert verify(make_verifier(), mint(key, claims(clock, scope=None))).scopes == frozenset()


def test_alg_none_is_refused(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    verifier = make_verifier()
    unsigned = mint(None, claims(clock), alg="none", header={"kid": key.kid})
    assert unsigned.endswith(".")
    assert rejected(verify, verifier, unsigned) == "The token's signing algorithm is not accepted"
    for alg in ("None", "NONE"):
        token = mint(None, claims(clock), alg=alg, header={"kid": key.kid})
        assert "algorithm is not accepted" in rejected(verify, verifier, token)
    assert auth_server.requests == []  # refused before any key was fetched


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
@pytest.mark.parametrize("secret", ["pem", "jwk-json"])
def test_hs256_with_the_public_key_as_secret_is_refused(
    alg: str, secret: str, make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    """RFC 8725 §2.1: a verifier that lets the header pick HMAC would accept this."""
    key = new_key(alg)
    auth_server.keys = [key]
    assert isinstance(key, RSAKey | ECKey)
    public = (
        key.as_pem(private=False)
        if secret == "pem"
        else json.dumps(key.as_dict(private=False)).encode()
    )
    token = mint(key, claims(clock), alg="HS256", hmac_secret=public)
    assert (
        rejected(verify, make_verifier(), token) == "The token's signing algorithm is not accepted"
    )


def test_symmetric_algorithms_cannot_be_allowed() -> None:
    with pytest.raises(ValueError, match="not asymmetric"):
        TokenVerifier(ISSUER, RESOURCE, algorithms=("ES256", "HS256"))
    with pytest.raises(ValueError, match="empty"):
        TokenVerifier(ISSUER, RESOURCE, algorithms=())


def test_algorithm_outside_the_allow_list_is_refused(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("RS256")
    auth_server.keys = [key]
    token = mint(key, claims(clock), alg="RS256")
    verifier = make_verifier(algorithms=("ES256",))
    assert rejected(verify, verifier, token) == "The token's signing algorithm is not accepted"


def test_key_must_fit_the_algorithm(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    """An EC key named by kid cannot verify a token whose header claims RS256."""
    ec, rsa = new_key("ES256", kid="k1"), new_key("RS256", kid="k1")
    auth_server.keys = [ec]
    token = mint(rsa, claims(clock), alg="RS256")
    assert "does not fit its algorithm" in rejected(verify, make_verifier(), token)


@pytest.mark.parametrize(
    ("typ", "accepted"),
    [
        pytest.param("at+jwt", True, id="at+jwt"),
        pytest.param("application/at+jwt", True, id="application/at+jwt"),
        pytest.param("AT+JWT", True, id="case-insensitive"),
        pytest.param("JWT", False, id="JWT"),
        pytest.param("application/jwt", False, id="application/jwt"),
        pytest.param(None, False, id="missing"),
        pytest.param("at+jwt; x", False, id="params"),
    ],
)
def test_typ_must_be_at_jwt(
    typ: str | None,
    accepted: bool,
    make_verifier: Make,
    auth_server: FakeAS,
    clock: Clock,
    verify: Any,
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock), header={"typ": typ})
    if accepted:
        assert verify(make_verifier(), token).subject == "user-42"
    else:
        assert "typ must be at+jwt" in rejected(verify, make_verifier(), token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "agat_abc_def",
        "a.b",
        "a.b.c.d",
        "e30.e30.",
        "!!.e30.e30",
        "W10.e30.e30",
        f"{b64(b'[' * 5000 + b']' * 5000)}.e30.e30",
        "x" * 20_000,
    ],
)
def test_malformed_tokens(token: str, make_verifier: Make, verify: Any) -> None:
    rejected(verify, make_verifier(), token)


def test_critical_header_extension_is_refused(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock), header={"crit": ["exp"], "exp": 1})
    assert "unsupported JWS extension" in rejected(verify, make_verifier(), token)


# --- introspection (RFC 7662) -----------------------------------------------------------------


def introspection_answer(clock: Clock, **overrides: Any) -> dict[str, Any]:
    answer = {
        "active": True,
        "token_type": "Bearer",
        **claims(clock, jti="op-1"),
    }
    answer.update(overrides)
    return {k: v for k, v in answer.items() if v is not None}


def introspecting(make_verifier: Make, **options: Any) -> TokenVerifier:
    return make_verifier(introspection=Introspection(*RS_CLIENT, **options))


def test_introspection_active(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    auth_server.introspection["agat_one"] = introspection_answer(clock)
    verifier = introspecting(make_verifier)
    assert verifier.mode == "introspection"

    got = verify(verifier, "agat_one")

    assert (got.subject, got.client_id, got.audience, got.jti) == (
        "user-42",
        "client-7",
        RESOURCE,
        "op-1",
    )
    assert got.scopes == frozenset({"mcp:tools", "files:read"})
    assert got.expires_at == int(clock.now) + 300
    # The endpoint came from the metadata; the request is a form POST with Basic auth.
    request = auth_server.requests[-1]
    assert (request.method, str(request.url)) == ("POST", INTROSPECT_URI)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "token": ["agat_one"],
        "token_type_hint": ["access_token"],
    }


@pytest.mark.parametrize(
    ("answer", "description"),
    [
        pytest.param({"active": False}, "The token is not active", id="inactive"),
        pytest.param({"aud": "https://other.example"}, "another resource", id="aud"),
        pytest.param({"aud": None}, "lacks the aud claim", id="no-aud"),
        pytest.param({"iss": "https://evil.example"}, "another authorization server", id="iss"),
        pytest.param({"exp": int(T0) - 120}, "The token has expired", id="exp"),
        pytest.param({"token_type": "DPoP"}, "not a bearer access token", id="token_type"),
    ],
)
def test_introspection_refusals(
    answer: dict[str, Any],
    description: str,
    make_verifier: Make,
    auth_server: FakeAS,
    clock: Clock,
    verify: Any,
) -> None:
    auth_server.introspection["agat_x"] = (
        answer if answer.get("active") is False else introspection_answer(clock, **answer)
    )
    assert description in rejected(verify, introspecting(make_verifier), "agat_x")


def test_introspection_answers_are_cached_briefly(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    auth_server.introspection["agat_c"] = introspection_answer(clock)
    verifier = introspecting(make_verifier, cache_ttl=30, endpoint=INTROSPECT_URI)
    verify(verifier, "agat_c")
    clock.advance(29)
    verify(verifier, "agat_c")
    assert auth_server.count("/oauth2/introspect") == 1  # from the cache
    del auth_server.introspection["agat_c"]  # revoked at the AS
    clock.advance(1)
    assert rejected(verify, verifier, "agat_c") == "The token is not active"
    assert auth_server.count("/oauth2/introspect") == 2
    assert auth_server.count("/.well-known/oauth-authorization-server") == 0


def test_introspection_cache_never_outlives_exp(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    auth_server.introspection["agat_e"] = introspection_answer(clock, exp=int(clock.now) + 10)
    verifier = introspecting(make_verifier, cache_ttl=60)
    verify(verifier, "agat_e")
    clock.advance(9)
    verify(verifier, "agat_e")
    assert auth_server.count("/oauth2/introspect") == 1
    auth_server.introspection["agat_e"] = {"active": False}  # what the AS says after exp
    clock.advance(1)
    assert rejected(verify, verifier, "agat_e") == "The token is not active"
    assert auth_server.count("/oauth2/introspect") == 2


def test_introspection_negative_answers_are_not_cached(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    verifier = introspecting(make_verifier)
    rejected(verify, verifier, "agat_n")
    auth_server.introspection["agat_n"] = introspection_answer(clock)
    assert verify(verifier, "agat_n").subject == "user-42"


def test_introspection_cache_ttl_zero_always_asks(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    auth_server.introspection["agat_z"] = introspection_answer(clock)
    verifier = introspecting(make_verifier, cache_ttl=0)
    for _ in range(3):
        verify(verifier, "agat_z")
    assert auth_server.count("/oauth2/introspect") == 3


def test_introspection_cache_ttl_is_bounded() -> None:
    with pytest.raises(ValueError, match="between 0 and 60"):
        Introspection("id", "secret", cache_ttl=61)
    assert "secret" not in repr(Introspection("id", "secret"))


def test_introspection_with_wrong_credentials_is_unavailable(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, verify: Any
) -> None:
    auth_server.introspection["agat_w"] = introspection_answer(clock)
    verifier = make_verifier(introspection=Introspection("rs-client", "wrong"))
    with pytest.raises(VerifierUnavailable, match="HTTP 401"):
        verify(verifier, "agat_w")


def test_introspection_unreachable(make_verifier: Make, auth_server: FakeAS, verify: Any) -> None:
    auth_server.down = True
    with pytest.raises(VerifierUnavailable) as info:
        verify(introspecting(make_verifier, endpoint=INTROSPECT_URI), "agat_secret_value")
    assert "agat_secret_value" not in str(info.value)


# --- the MCP SDK adapter ----------------------------------------------------------------------


def test_mcp_adapter(make_verifier: Make, auth_server: FakeAS, clock: Clock) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    adapter = McpTokenVerifier(make_verifier())
    token = mint(key, claims(clock))

    got = asyncio.run(adapter.verify_token(token))

    assert got is not None
    assert (got.token, got.client_id, got.subject) == (token, "client-7", "user-42")
    assert (got.scopes, got.expires_at) == (["files:read", "mcp:tools"], int(clock.now) + 300)
    assert got.resource == RESOURCE
    assert got.claims is not None and got.claims["iss"] == ISSUER
    assert (
        asyncio.run(adapter.verify_token(mint(key, claims(clock, aud="https://x.example")))) is None
    )


# --- the bearer middleware (RFC 6750 §3) and the metadata document (RFC 9728) -------------------

PRM_URL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


@pytest.fixture
def client(make_verifier: Make) -> Iterator[TestClient]:
    async def whoami(request: Request) -> JSONResponse:
        auth: AccessClaims = request.state.auth
        return JSONResponse({"sub": auth.subject, "scopes": sorted(auth.scopes)})

    inner = Starlette(routes=[Route("/mcp", whoami, methods=["GET", "POST"])])
    app = BearerAuth(
        inner,
        make_verifier(),
        required_scopes=["mcp:tools"],
        resource_metadata_url=metadata_url(RESOURCE),
    )
    with TestClient(app, base_url="https://mcp.example.com") as test_client:
        yield test_client


def test_metadata_url() -> None:
    assert metadata_url(RESOURCE) == PRM_URL
    assert metadata_url("https://mcp.example.com/") == (
        "https://mcp.example.com/.well-known/oauth-protected-resource"
    )


def test_middleware_accepts_a_valid_token(
    client: TestClient, auth_server: FakeAS, clock: Clock
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    response = client.get("/mcp", headers={"Authorization": f"bearer {mint(key, claims(clock))}"})
    assert response.status_code == 200
    assert response.json() == {"sub": "user-42", "scopes": ["files:read", "mcp:tools"]}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="other-scheme"),
    ],
)
def test_middleware_without_credentials(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/mcp", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer scope="mcp:tools", resource_metadata="{PRM_URL}"'
    )
    assert response.content == b""


def test_middleware_invalid_token(client: TestClient, auth_server: FakeAS, clock: Clock) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    expired = mint(key, claims(clock, exp=int(clock.now) - 61))
    response = client.post("/mcp", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The token has expired", '
        f'scope="mcp:tools", resource_metadata="{PRM_URL}"'
    )
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "The token has expired",
    }


def test_middleware_insufficient_scope(
    client: TestClient, auth_server: FakeAS, clock: Clock
) -> None:
    key = new_key("ES256")
    auth_server.keys = [key]
    token = mint(key, claims(clock, scope="files:read"))
    response = client.get("/mcp", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="{PRM_URL}"'
    )
    assert response.json() == {"error": "insufficient_scope"}


@pytest.mark.parametrize(
    "value", ["Bearer", "Bearer ", "Bearer a b", 'Bearer "quoted"', "Bearer a=b"]
)
def test_middleware_malformed_request(client: TestClient, value: str) -> None:
    response = client.get("/mcp", headers={"Authorization": value})
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_request", error_description="The Authorization header is '
        f'malformed", scope="mcp:tools", resource_metadata="{PRM_URL}"'
    )


def test_middleware_when_the_authorization_server_is_down(
    client: TestClient, auth_server: FakeAS, clock: Clock
) -> None:
    auth_server.down = True
    token = mint(new_key("ES256"), claims(clock))
    response = client.get("/mcp", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "www-authenticate" not in response.headers


def test_middleware_names_both_issuers_when_they_differ(
    client: TestClient, auth_server: FakeAS, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's resource server once named authgate by another spelling of the same
    address (`127.0.0.1` for `localhost`): every call failed, and nothing said why. It is a
    503 (the token may be fine) whose reason, both issuers, is in the operator's log."""
    key = new_key("ES256")
    auth_server.keys = [key]
    auth_server.metadata_issuer = "http://localhost:3000"
    token = mint(key, claims(clock))
    with caplog.at_level("WARNING", logger="authgate.resource_server.asgi"):
        response = client.post("/mcp", headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, response.json()) == (503, {"error": "temporarily_unavailable"})
    assert response.headers["retry-after"] == "5"
    assert auth_server.count("/.well-known/jwks.json") == 0
    [record] = [r for r in caplog.records if r.name == "authgate.resource_server.asgi"]
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert "names another issuer: 'http://localhost:3000', not 'https://auth.example.com'" in (
        message
    )
    assert token not in message and token.split(".")[2] not in message


def test_middleware_challenge_without_metadata_url(make_verifier: Make) -> None:
    app = BearerAuth(Starlette(), make_verifier())
    with TestClient(app) as test_client:
        response = test_client.get("/")
    assert (response.status_code, response.headers["www-authenticate"]) == (401, "Bearer")


CHALLENGES = [
    pytest.param({}, "Bearer", id="3-nothing"),
    pytest.param(
        {"scopes": ["mcp:tools", "files:read", "mcp:tools"], "resource_metadata": PRM_URL},
        f'Bearer scope="mcp:tools files:read", resource_metadata="{PRM_URL}"',
        id="3-no-credentials",
    ),
    pytest.param(
        {"error": "invalid_token", "description": 'say "no" \\ please', "scopes": ["a"]},
        'Bearer error="invalid_token", error_description="say ?no? ? please", scope="a"',
        id="3-unsafe-characters",
    ),
    pytest.param(
        {"error": "insufficient_scope", "scopes": ["a", "b"], "resource_metadata": PRM_URL},
        f'Bearer error="insufficient_scope", scope="a b", resource_metadata="{PRM_URL}"',
        id="3.1-insufficient-scope",
    ),
]


@pytest.mark.parametrize(("attributes", "expected"), CHALLENGES)
def test_bearer_challenge(attributes: dict[str, Any], expected: str) -> None:
    assert bearer_challenge(**attributes) == expected


def _example_app(make_verifier: Make) -> Any:
    """examples/mcp_server/server.py's ASGI app, its verifier talking to the fake AS."""
    path = Path(__file__).parents[2] / "examples" / "mcp_server" / "server.py"
    spec = importlib.util.spec_from_file_location("example_mcp_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    env = {"AUTHGATE_ISSUER": ISSUER, "MCP_RESOURCE": RESOURCE}
    return module.build_app(env, make_verifier())


def test_example_mcp_server_challenges_carry_scope(
    make_verifier: Make, auth_server: FakeAS, clock: Clock
) -> None:
    """The example answers as the kit's middleware does: scope= on the 401 (what to ask for)
    and on the 403 (what to step up to), RFC 6750 §3."""
    key = new_key("ES256")
    auth_server.keys = [key]
    narrow = mint(key, claims(clock, scope="files:read"))
    expired = mint(key, claims(clock, exp=int(clock.now) - 61))
    with TestClient(_example_app(make_verifier), base_url="https://mcp.example.com") as client:
        anonymous = client.post("/mcp", json={})
        refused = client.post("/mcp", json={}, headers={"Authorization": f"Bearer {expired}"})
        forbidden = client.post("/mcp", json={}, headers={"Authorization": f"Bearer {narrow}"})
        document = client.get("/.well-known/oauth-protected-resource/mcp")

    assert anonymous.status_code == 401 and anonymous.content == b""
    assert anonymous.headers["www-authenticate"] == (
        f'Bearer scope="mcp:tools", resource_metadata="{PRM_URL}"'
    )
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The token has expired", '
        f'scope="mcp:tools", resource_metadata="{PRM_URL}"'
    )
    assert forbidden.status_code == 403
    assert forbidden.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="{PRM_URL}"'
    )
    assert forbidden.json() == {"error": "insufficient_scope"}
    # The RFC 9728 document needs no token; it names the authorization server.
    assert document.status_code == 200
    assert document.json()["authorization_servers"] == [ISSUER]


def test_example_mcp_server_answers_503_when_the_issuers_differ(
    make_verifier: Make, auth_server: FakeAS, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's walkthrough ran authgate as `http://localhost:3000` and the example with
    `AUTHGATE_ISSUER=http://127.0.0.1:3000`: the token was fine, the configuration was not, and
    the answer was a 500. It is a 503 with Retry-After, and the log says which issuers."""
    key = new_key("ES256")
    auth_server.keys = [key]
    auth_server.metadata_issuer = "http://localhost:3000"
    token = mint(key, claims(clock))
    with (
        caplog.at_level("WARNING", logger="authgate.resource_server.asgi"),
        TestClient(_example_app(make_verifier), base_url="https://mcp.example.com") as client,
    ):
        response = client.post("/mcp", json={}, headers={"Authorization": f"Bearer {token}"})
        document = client.get("/.well-known/oauth-protected-resource/mcp")
    assert (response.status_code, response.json()) == (503, {"error": "temporarily_unavailable"})
    assert response.headers["retry-after"] == "5"
    assert "names another issuer: 'http://localhost:3000', not 'https://auth.example.com'" in (
        caplog.text
    )
    assert document.status_code == 200  # discovery still works: the client is not stuck


def _sdk_server(verifier: TokenVerifier) -> Any:
    """An MCP server built with the SDK as the kit's README shows it."""
    from mcp.server.mcpserver import MCPServer

    from authgate.resource_server.mcp import auth_settings

    server = MCPServer(
        "plain",
        token_verifier=McpTokenVerifier(verifier),
        auth=auth_settings(verifier, ["mcp:tools"]),
    )
    return server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")


def test_protect_turns_the_sdks_500_into_the_kits_503(
    make_verifier: Make, auth_server: FakeAS, clock: Clock
) -> None:
    """Why `protect` exists: the SDK can only answer 500 when authgate cannot be asked."""
    from authgate.resource_server.mcp import protect

    key = new_key("ES256")
    auth_server.keys = [key]
    auth_server.metadata_issuer = "http://localhost:3000"
    headers = {"Authorization": f"Bearer {mint(key, claims(clock))}"}
    bare = _sdk_server(make_verifier())
    with TestClient(bare, raise_server_exceptions=False) as client:
        assert client.post("/mcp", json={}, headers=headers).status_code == 500
    verifier = make_verifier()
    with TestClient(protect(_sdk_server(verifier), verifier, ["mcp:tools"])) as client:
        refused = client.post("/mcp", json={}, headers=headers)
        anonymous = client.post("/mcp", json={})
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "5")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == (
        f'Bearer scope="mcp:tools", resource_metadata="{PRM_URL}"'
    )


def test_protected_resource_metadata_document() -> None:
    app = protected_resource_metadata_app(
        "https://MCP.example.com/mcp",
        [ISSUER],
        scopes_supported=["mcp:tools"],
        resource_name="Example MCP server",
    )
    expected = {
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["mcp:tools"],
        "resource_name": "Example MCP server",
    }
    with TestClient(app, base_url="https://mcp.example.com") as test_client:
        for path in (
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ):
            response = test_client.get(path)
            assert response.status_code == 200
            assert response.json() == expected
            assert response.headers["content-type"] == "application/json"
            assert response.headers["access-control-allow-origin"] == "*"
        assert test_client.get("/.well-known/oauth-protected-resource/other").status_code == 404
        assert test_client.post("/.well-known/oauth-protected-resource").status_code == 405
        head = test_client.head("/.well-known/oauth-protected-resource/mcp")
        assert (head.status_code, head.content) == (200, b"")
