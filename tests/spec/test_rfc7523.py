"""RFC 7523 §2.2/§3 (and OpenID Connect Core §9) private_key_jwt client authentication at the
token, revocation and introspection endpoints; keys registered inline (``jwks``) or published
at a ``jwks_uri`` on a real HTTPS server. Every failure is 401 ``invalid_client`` and issues,
revokes and records nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.config import Settings
from authgate.core.client_assertion import ASSERTION_TYPE
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client, issued, make_client
from tests.fetch.server import DocumentServer, Route, serve
from tests.flows import (
    REDIRECT_URI,
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    generate_pkce,
    token_request,
)
from tests.http_types import Response

TOKEN_ENDPOINT = f"{ISSUER}/oauth2/tokens"
SIGNER = JWSRegistry(algorithms=["RS256", "PS256", "ES256", "EdDSA"])
Key = RSAKey | ECKey | OKPKey


def new_key(alg: str, kid: str | None = None) -> Key:
    params: Any = {"kid": kid or f"{alg}-{uuid.uuid4().hex[:8]}", "use": "sig"}
    if alg in ("RS256", "PS256"):
        return RSAKey.generate_key(2048, parameters=params, private=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, private=True)
    return OKPKey.generate_key("Ed25519", parameters=params, private=True)


def public_set(*keys: Key) -> dict[str, Any]:
    return {"keys": [dict(k.as_dict(private=False)) for k in keys]}


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return new_key("RS256", "rsa-1")


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[DocumentServer]:
    (tmp_path / "tls").mkdir()
    yield from serve(tmp_path / "tls")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1",
        fetch_ca_bundle=str(tmp_path / "tls" / "ca.pem"),
        fetch_timeout_seconds=1,
    )


def pk_client(services: Services, *, jwks: Any = None, jwks_uri: str = "") -> Client:
    """A confidential app switched to private_key_jwt (the admin API cannot do it yet). It keeps
    the secret make_client gave it, which must no longer work."""
    made = make_client(
        services,
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        service_access={RESOURCE: []},  # an operator's grant for its client_credentials tokens
    )
    app = replace(
        made.app, token_endpoint_auth_method="private_key_jwt", jwks=jwks, jwks_uri=jwks_uri
    )
    services.store.update_app(app)
    return Client(app, made.secret)


@pytest.fixture
def pk(services: Services, rsa_key: Key) -> Client:
    return pk_client(services, jwks=public_set(rsa_key))


def claims_for(client_id: str, clock: MovableClock, **overrides: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_ENDPOINT,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 120,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key: Key, claims: dict[str, Any], alg: str = "RS256", **header: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key, registry=SIGNER)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion_params(token: str, client_id: str | None = None) -> dict[str, str]:
    data = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token}
    if client_id is not None:
        data["client_id"] = client_id
    return data


def cc_request(client: TestClient, token: str, **extra: str) -> Response:
    data = {"grant_type": "client_credentials", "resource": RESOURCE, **extra}
    return token_request(client, {**data, **assertion_params(token)})


def code_request(client: TestClient, app_id: str, token: str, **extra: str) -> Response:
    """Authorize ``app_id`` (the client must be signed in), then redeem the code with
    ``token``; ``extra`` adds body parameters (a ``client_id``)."""
    pkce = generate_pkce()
    code = authorize(client, app_id, challenge=pkce.challenge, resource=RESOURCE)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
        **extra,
    }
    return token_request(client, {**data, **assertion_params(token)})


def jti_count(services: Services, client_id: str) -> int:
    with services.store.engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM client_assertion_jtis WHERE client_id = :c")
        return int(conn.execute(query, {"c": client_id}).scalar_one())


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_valid_assertion_at_the_token_endpoint(
    signed_in: TestClient, services: Services, clock: MovableClock, alg: str
) -> None:
    key = new_key(alg)
    app = pk_client(services, jwks=public_set(key, new_key("ES256")))
    token = sign(key, claims_for(app.id, clock), alg)
    body = assert_token_response(code_request(signed_in, app.id, token))
    assert "refresh_token" in body
    state = issued(services, app.id)
    assert (state.access, state.grants, state.consumed_codes) == (1, 1, 1)
    assert jti_count(services, app.id) == 1


@pytest.mark.parametrize(
    "aud",
    [
        TOKEN_ENDPOINT,
        f"{ISSUER}/oauth2/token",
        ISSUER,
        [ISSUER],
    ],
    ids=["token-endpoint", "token-alias", "issuer", "issuer-alone-in-a-list"],
)
def test_audiences_that_name_this_server(
    signed_in: TestClient, pk: Client, rsa_key: Key, clock: MovableClock, aud: Any
) -> None:
    token = sign(rsa_key, claims_for(pk.id, clock, aud=aud))
    assert_token_response(code_request(signed_in, pk.id, token, client_id=pk.id))


def test_authorization_code_flow(
    signed_in: TestClient, services: Services, pk: Client, rsa_key: Key, clock: MovableClock
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, pk.id, challenge=pkce.challenge, resource=RESOURCE)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
        **assertion_params(sign(rsa_key, claims_for(pk.id, clock))),
    }
    body = assert_token_response(token_request(signed_in, data))
    refreshed = token_request(
        signed_in,
        {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            **assertion_params(sign(rsa_key, claims_for(pk.id, clock)), pk.id),
        },
    )
    assert_token_response(refreshed)
    assert issued(services, pk.id).refresh == 2
    assert jti_count(services, pk.id) == 2


def test_revocation_and_introspection(
    signed_in: TestClient, services: Services, pk: Client, rsa_key: Key, clock: MovableClock
) -> None:
    client = signed_in
    token = sign(rsa_key, claims_for(pk.id, clock))
    access = assert_token_response(code_request(client, pk.id, token))["access_token"]
    aud = ISSUER  # draft-ietf-oauth-rfc7523bis: the issuer, wherever the assertion is sent
    info = client.post(
        "/oauth2/introspect",
        data={
            "token": access,
            **assertion_params(sign(rsa_key, claims_for(pk.id, clock, aud=aud))),
        },
    )
    assert info.status_code == 200 and info.headers["cache-control"] == "no-store"
    assert info.json()["active"] is True and info.json()["client_id"] == pk.id
    revoked = client.post(
        "/oauth2/revoke",
        data={
            "token": access,
            **assertion_params(sign(rsa_key, claims_for(pk.id, clock, aud=aud))),
        },
    )
    assert revoked.status_code == 200
    assert issued(services, pk.id).access == 1 and issued(services, pk.id).live_access == 0
    assert jti_count(services, pk.id) == 3


def _alg_none(client_id: str, clock: MovableClock, _key: Key) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims_for(client_id, clock)).encode())}."


def _hs256_with_public_key(client_id: str, clock: MovableClock, key: Key) -> str:
    """The classic confusion: the client's *public* key used as an HMAC secret."""
    header = b64(json.dumps({"alg": "HS256", "kid": key.kid}).encode())
    payload = b64(json.dumps(claims_for(client_id, clock)).encode())
    secret = key.as_pem(private=False)
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(mac)}"


def _other_key_same_kid(client_id: str, clock: MovableClock, key: Key) -> str:
    return sign(new_key("RS256", str(key.kid)), claims_for(client_id, clock))


def _unknown_kid(client_id: str, clock: MovableClock, _key: Key) -> str:
    return sign(new_key("RS256", "nobody"), claims_for(client_id, clock))


def _tampered(client_id: str, clock: MovableClock, key: Key) -> str:
    header, _, signature = sign(key, claims_for(client_id, clock)).split(".")
    payload = b64(json.dumps(claims_for(client_id, clock, scope="admin")).encode())
    return f"{header}.{payload}.{signature}"


def _claims(**overrides: Any) -> Callable[[str, MovableClock, Key], str]:
    def make(client_id: str, clock: MovableClock, key: Key) -> str:
        now = int(clock.now().timestamp())
        values = {k: v(now) if callable(v) else v for k, v in overrides.items()}
        return sign(key, claims_for(client_id, clock, **values))

    return make


BAD_ASSERTIONS = [
    pytest.param(_claims(aud="https://other.example/token"), "aud", id="3-wrong-aud"),
    pytest.param(_claims(aud=None), "aud", id="3-missing-aud"),
    # draft-ietf-oauth-rfc7523bis: the issuer alone; an assertion also made out to another
    # audience, or to the revocation or introspection endpoint, is not authgate's.
    pytest.param(
        _claims(aud=[ISSUER, "https://someone.else"]), "issuer identifier alone", id="bis-foreign"
    ),
    pytest.param(
        _claims(aud=[TOKEN_ENDPOINT, "https://someone.else"]),
        "issuer identifier alone",
        id="bis-token-endpoint-and-foreign",
    ),
    pytest.param(
        _claims(aud=[ISSUER, TOKEN_ENDPOINT]), "issuer identifier alone", id="bis-two-values"
    ),
    pytest.param(_claims(aud=[TOKEN_ENDPOINT]), "issuer identifier alone", id="bis-endpoint-list"),
    pytest.param(_claims(aud=f"{ISSUER}/oauth2/revoke"), "aud", id="bis-revocation-url"),
    pytest.param(_claims(aud=f"{ISSUER}/oauth2/introspect"), "aud", id="bis-introspection-url"),
    pytest.param(_claims(aud=ISSUER + "/"), "aud", id="bis-issuer-not-exact"),
    pytest.param(_claims(aud=[]), "aud", id="bis-empty-list"),
    pytest.param(_claims(exp=lambda now: now - 61), "expired", id="3-expired"),
    pytest.param(_claims(exp=lambda now: now + 3600 + 61), "1 hour", id="3-exp-beyond-the-maximum"),
    pytest.param(_claims(exp=lambda now: now + 86400), "1 hour", id="3-exp-a-day-ahead"),
    pytest.param(_claims(jti="a\x00b"), "control characters", id="3-jti-with-nul"),
    pytest.param(_claims(exp=None), "exp claim is required", id="3-missing-exp"),
    pytest.param(_claims(exp="soon"), "exp claim must be a number", id="3-exp-not-number"),
    pytest.param(_claims(nbf=lambda now: now + 600), "nbf", id="3-not-yet-valid"),
    pytest.param(_claims(iat=lambda now: now + 600), "iat", id="3-issued-in-future"),
    pytest.param(_claims(jti=None), "jti", id="3-missing-jti"),
    pytest.param(_claims(iss="someone-else"), "iss", id="3-wrong-iss"),
    pytest.param(_unknown_kid, "signature", id="3-unknown-key"),
    pytest.param(_other_key_same_kid, "signature", id="3-wrong-signature"),
    pytest.param(_tampered, "signature", id="3-tampered-payload"),
    pytest.param(_alg_none, "algorithm", id="3-alg-none"),
    pytest.param(_hs256_with_public_key, "algorithm", id="3-hs256-public-key-as-secret"),
]


@pytest.mark.parametrize(("make", "description"), BAD_ASSERTIONS)
@pytest.mark.parametrize("endpoint", ["/oauth2/tokens", "/oauth2/revoke", "/oauth2/introspect"])
def test_bad_assertion_is_invalid_client(
    client: TestClient,
    services: Services,
    pk: Client,
    rsa_key: Key,
    clock: MovableClock,
    make: Callable[[str, MovableClock, Key], str],
    description: str,
    endpoint: str,
) -> None:
    data = {
        "grant_type": "authorization_code",
        "code": "agac_x",
        "token": "agat_x",
        **assertion_params(make(pk.id, clock, rsa_key)),
    }
    resp = client.post(endpoint, data=data)
    assert_oauth_error(resp, 401, "invalid_client", description)
    assert "www-authenticate" not in resp.headers
    assert issued(services, pk.id) == issued(services, "nobody")  # all zero
    assert jti_count(services, pk.id) == 0


def test_wrong_sub_names_another_client(
    signed_in: TestClient, services: Services, pk: Client, rsa_key: Key, clock: MovableClock
) -> None:
    client = signed_in
    other = pk_client(services, jwks=public_set(new_key("ES256")))
    # sub names the client: signed with pk's key but claiming to be `other`.
    token = sign(rsa_key, claims_for(pk.id, clock, sub=other.id))
    assert_oauth_error(code_request(client, pk.id, token), 401, "invalid_client", "signature")
    # And the client_id parameter, if sent, must be that client.
    token = sign(rsa_key, claims_for(pk.id, clock))
    resp = code_request(client, pk.id, token, client_id=other.id)
    assert_oauth_error(resp, 401, "invalid_client", "does not match")
    assert issued(services, pk.id).access == issued(services, other.id).access == 0


def test_replayed_jti(
    signed_in: TestClient, services: Services, pk: Client, rsa_key: Key, clock: MovableClock
) -> None:
    token = sign(rsa_key, claims_for(pk.id, clock))
    assert_token_response(code_request(signed_in, pk.id, token))
    replay = code_request(signed_in, pk.id, token)
    assert_oauth_error(replay, 401, "invalid_client", "jti was used")
    # The same jti in a freshly signed assertion is a replay too.
    jti = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["jti"]
    again = sign(rsa_key, claims_for(pk.id, clock, jti=jti))
    assert_oauth_error(code_request(signed_in, pk.id, again), 401, "invalid_client", "jti was")
    state = issued(services, pk.id)
    assert (state.access, state.consumed_codes) == (1, 1)  # the two later codes stay unused
    assert jti_count(services, pk.id) == 1
    # Once the assertion has expired the jti may be forgotten; the assertion is refused anyway.
    clock.advance(minutes=5)
    assert_oauth_error(code_request(signed_in, pk.id, token), 401, "invalid_client", "expired")


def test_an_hour_long_assertion_works_once_and_its_jti_is_kept_until_it_expires(
    signed_in: TestClient, services: Services, pk: Client, rsa_key: Key, clock: MovableClock
) -> None:
    """Authlib signs private_key_jwt assertions valid for one hour (``expires_in=3600``): they
    must work, and their jti must be remembered for that whole hour."""
    now = int(clock.now().timestamp())
    token = sign(rsa_key, claims_for(pk.id, clock, exp=now + 3600))
    assert_token_response(code_request(signed_in, pk.id, token))
    with services.store.engine.connect() as conn:
        kept = conn.execute(
            sa.text("SELECT expires_at FROM client_assertion_jtis WHERE client_id = :c"),
            {"c": pk.id},
        ).scalar_one()
    kept_until = kept if isinstance(kept, datetime) else datetime.fromisoformat(str(kept))
    assert kept_until.replace(tzinfo=UTC) >= datetime.fromtimestamp(now + 3600, UTC)
    clock.advance(minutes=59)
    replay = code_request(signed_in, pk.id, token)
    assert_oauth_error(replay, 401, "invalid_client", "jti was used")
    assert "www-authenticate" not in replay.headers
    state = issued(services, pk.id)
    assert (state.access, state.consumed_codes) == (1, 1)
    assert jti_count(services, pk.id) == 1


def test_client_credentials_with_an_assertion(
    client: TestClient, services: Services, pk: Client, rsa_key: Key, clock: MovableClock
) -> None:
    body = assert_token_response(cc_request(client, sign(rsa_key, claims_for(pk.id, clock))))
    assert "refresh_token" not in body
    state = issued(services, pk.id)
    assert (state.access, state.refresh, state.grants) == (1, 0, 0)  # cc tokens have no grant
    assert jti_count(services, pk.id) == 1


def test_assertion_for_a_client_secret_client(
    client: TestClient, services: Services, confidential: Client, rsa_key: Key, clock: MovableClock
) -> None:
    token = sign(rsa_key, claims_for(confidential.id, clock))
    resp = token_request(
        client,
        {"grant_type": "refresh_token", "refresh_token": "x", **assertion_params(token)},
    )
    assert_oauth_error(resp, 401, "invalid_client", "must authenticate with a client secret")
    assert jti_count(services, confidential.id) == 0


def test_secret_for_a_private_key_jwt_client(
    client: TestClient, services: Services, pk: Client
) -> None:
    assert pk.secret is not None
    data = {"grant_type": "authorization_code", "code": "agac_x", "redirect_uri": REDIRECT_URI}
    basic = token_request(client, data, basic=(pk.id, pk.secret))
    assert_oauth_error(basic, 401, "invalid_client", "must authenticate with private_key_jwt")
    assert basic.headers["www-authenticate"].startswith("Basic")
    post = token_request(client, {**data, "client_id": pk.id, "client_secret": pk.secret})
    assert_oauth_error(post, 401, "invalid_client", "must authenticate with private_key_jwt")
    nothing = token_request(client, {**data, "client_id": pk.id})
    assert_oauth_error(nothing, 401, "invalid_client", "must authenticate with private_key_jwt")
    assert issued(services, pk.id).access == 0


def test_malformed_requests(
    client: TestClient, services: Services, pk: Client, rsa_key: Key, clock: MovableClock
) -> None:
    token = sign(rsa_key, claims_for(pk.id, clock))
    data = {"grant_type": "authorization_code", "code": "x", "client_assertion": token}
    wrong_type = token_request(client, {**data, "client_assertion_type": "urn:x"})
    assert_oauth_error(wrong_type, 401, "invalid_client", "client_assertion_type must be")
    assert_oauth_error(token_request(client, data), 401, "invalid_client")
    garbage = {**data, "client_assertion_type": ASSERTION_TYPE, "client_assertion": "a.b.c"}
    assert_oauth_error(token_request(client, garbage), 401, "invalid_client", "sub")
    # Two methods in one request (RFC 6749 §2.3).
    both = token_request(
        client,
        {"grant_type": "authorization_code", "code": "x", **assertion_params(token)},
        basic=(pk.id, pk.secret or ""),
    )
    assert_oauth_error(both, 400, "invalid_request", "one client authentication method")
    assert issued(services, pk.id).access == 0 and jti_count(services, pk.id) == 0


def test_keys_from_jwks_uri(
    signed_in: TestClient,
    services: Services,
    docs: DocumentServer,
    clock: MovableClock,
) -> None:
    first = new_key("ES256", "k1")
    docs.routes["/jwks.json"] = Route.json(public_set(first), cache_control="max-age=600")
    app = pk_client(services, jwks_uri=docs.url("/jwks.json"))
    client = signed_in
    for _ in range(2):
        token = sign(first, claims_for(app.id, clock), "ES256")
        assert_token_response(code_request(client, app.id, token))
    assert docs.requests_to("/jwks.json") == 1  # cached
    # The client rotates: a new kid is fetched at once (the last fetch is a minute old)...
    second = new_key("EdDSA", "k2")
    docs.routes["/jwks.json"] = Route.json(public_set(first, second))
    clock.advance(seconds=61)
    token = sign(second, claims_for(app.id, clock), "EdDSA")
    assert_token_response(code_request(client, app.id, token))
    assert docs.requests_to("/jwks.json") == 2
    # ...but unknown kids cannot make authgate fetch more than once a minute.
    stranger = new_key("ES256", "k3")
    clock.advance(seconds=61)
    for _ in range(3):
        token = sign(stranger, claims_for(app.id, clock), "ES256")
        resp = token_request(
            client, {"grant_type": "refresh_token", "refresh_token": "x", **assertion_params(token)}
        )
        assert_oauth_error(resp, 401, "invalid_client", "signature")
    assert docs.requests_to("/jwks.json") == 3
    assert issued(services, app.id).access == 3


def test_jwks_uri_unreachable(
    client: TestClient, services: Services, docs: DocumentServer, clock: MovableClock
) -> None:
    key = new_key("ES256")
    docs.routes["/jwks.json"] = Route(b"", 500)
    app = pk_client(services, jwks_uri=docs.url("/jwks.json"))
    token = sign(key, claims_for(app.id, clock), "ES256")
    resp = token_request(
        client, {"grant_type": "refresh_token", "refresh_token": "x", **assertion_params(token)}
    )
    assert_oauth_error(resp, 401, "invalid_client", "jwks_uri: the server answered HTTP 500")
    assert issued(services, app.id).access == 0 and jti_count(services, app.id) == 0


def test_metadata_document_client_with_jwks_uri(
    signed_in: TestClient, services: Services, docs: DocumentServer, clock: MovableClock
) -> None:
    """A Client ID Metadata Document client that authenticates with private_key_jwt."""
    key = new_key("ES256", "doc-key")
    url = docs.url("/client.json")
    docs.routes["/jwks.json"] = Route.json(public_set(key))
    docs.routes["/client.json"] = Route.json(
        {
            "client_id": url,
            "client_name": "Confidential MCP client",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": docs.url("/jwks.json"),
        }
    )
    pkce = generate_pkce()
    code = authorize(signed_in, url, challenge=pkce.challenge, resource=RESOURCE)
    base = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
        "client_id": url,
    }
    # Without an assertion the confidential client is refused, and the code stays usable.
    assert_oauth_error(token_request(signed_in, base), 401, "invalid_client", "private_key_jwt")
    assert issued(services, url).consumed_codes == 0
    token = sign(key, claims_for(url, clock), "ES256")
    assert_token_response(token_request(signed_in, {**base, **assertion_params(token)}))
    app = services.store.get_app(url)
    assert app is not None and app.client_type == "confidential"
    assert app.token_endpoint_auth_method == "private_key_jwt"
    assert app.jwks_uri == docs.url("/jwks.json") and app.jwks is None
    assert issued(services, url).consumed_codes == 1 and jti_count(services, url) == 1


def test_metadata_advertises_private_key_jwt(client: TestClient) -> None:
    body = client.get("/.well-known/oauth-authorization-server").json()
    for name in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        assert "private_key_jwt" in body[f"{name}_auth_methods_supported"]
        algs = body[f"{name}_auth_signing_alg_values_supported"]
        assert set(algs) == {"RS256", "PS256", "ES256", "EdDSA"}
    assert "none" not in body["introspection_endpoint_auth_methods_supported"]
