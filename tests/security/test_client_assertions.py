"""private_key_jwt client assertions against a running authgate (RFC 7523 §3 as updated by
draft-ietf-oauth-rfc7523bis; RFC 7591 §2 ``jwks``).

- Audience: an assertion made out to several audiences, or to the revocation or introspection
  endpoint, is refused at every endpoint: ``invalid_client``, nothing issued, and its ``jti``
  not consumed (the client's next, correct assertion with that jti still works).
- Lifetime: Authlib's own ``private_key_jwt`` client, with its default one-hour assertion,
  gets its tokens; the very same assertion replayed within that hour is refused.
- Keys: registration refuses a ``jwks`` whose keys are not public signature keys authgate can
  use (``invalid_client_metadata``), and stores nothing.
"""

from __future__ import annotations

import base64
import json
import uuid
import warnings
from datetime import UTC, datetime
from typing import Any, Unpack

import httpx
import pytest
import sqlalchemy as sa
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, KeyParameters, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from authgate.app import Services
from authgate.core.client_assertion import ASSERTION_TYPE
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account
from tests.flows import REDIRECT_URI, RESOURCE, authorize, generate_pkce, login
from tests.security.helpers import snapshot
from tests.security.live import Live

TOKEN_ENDPOINT = f"{ISSUER}/oauth2/tokens"
SIGNER = JWSRegistry(algorithms=["RS256", "ES256"])
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"}, private=True)


def register(http: httpx.Client, key: RSAKey) -> str:
    resp = http.post(
        "/oauth2/register",
        json={
            "client_name": "Key client",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [dict(key.as_dict(private=False))]},
        },
    )
    assert resp.status_code == 201, resp.text
    client_id: str = resp.json()["client_id"]
    return client_id


def jtis(services: Services, client_id: str) -> list[tuple[str, Any]]:
    with services.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT jti, expires_at FROM client_assertion_jtis WHERE client_id = :c"),
            {"c": client_id},
        )
        return [(r[0], r[1]) for r in rows]


def access_tokens(services: Services, client_id: str) -> int:
    with services.store.engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM access_tokens WHERE app_id = :a")
        return int(conn.execute(query, {"a": client_id}).scalar_one())


def claims_of(assertion: str) -> dict[str, Any]:
    payload = assertion.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return result


def as_utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_authlib_default_assertion_works_once(
    live: Live, services: Services, alice: Account, rsa_key: RSAKey, clock: MovableClock
) -> None:
    with live.client() as browser:
        client_id = register(browser, rsa_key)
        login(browser, alice.user.username, alice.password)
        sent: list[bytes] = []

        def keep(request: httpx.Request) -> None:
            sent.append(request.read())

        oauth = OAuth2Client(
            client_id=client_id,
            client_secret=rsa_key.as_pem(private=True).decode(),
            token_endpoint_auth_method="private_key_jwt",
            redirect_uri=REDIRECT_URI,
            # Authlib speaks through its own HTTP stack (httpx2), straight to the live server;
            # the leak checker sees the other requests, the replay included.
            base_url=live.url,
            event_hooks={"request": [keep]},
        )
        # Authlib's PrivateKeyJWT as documented; the issuer's token endpoint as audience,
        # because the test server listens on a loopback port the issuer does not name.
        oauth.register_client_auth_method(PrivateKeyJWT(TOKEN_ENDPOINT))
        with oauth:
            pkce = generate_pkce()
            code = authorize(browser, client_id, challenge=pkce.challenge, resource=RESOURCE)
            token = oauth.fetch_token(
                f"{live.url}/oauth2/tokens",
                grant_type="authorization_code",
                code=code,
                code_verifier=pkce.verifier,
                resource=RESOURCE,
            )
        assert token["token_type"] == "Bearer" and token["access_token"].count(".") == 2
        form = dict(httpx.QueryParams(sent[-1].decode()))
        assertion = form["client_assertion"]
        claims = claims_of(assertion)
        assert claims["exp"] - claims["iat"] == 3600  # Authlib's default lifetime
        assert claims["aud"] == TOKEN_ENDPOINT
        remembered = jtis(services, client_id)
        assert [jti for jti, _ in remembered] == [claims["jti"]]
        # Remembered until the assertion itself expires (and the clock-skew leeway).
        assert as_utc(remembered[0][1]) >= datetime.fromtimestamp(claims["exp"], UTC)

        # The same assertion, replayed within its hour with a fresh code: refused.
        clock.advance(minutes=30)
        pkce = generate_pkce()
        code = authorize(browser, client_id, challenge=pkce.challenge, resource=RESOURCE)
        before = snapshot(services)
        replay = browser.post(
            "/oauth2/tokens",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": pkce.verifier,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )
        assert replay.status_code == 401, replay.text
        assert replay.json() == {
            "error": "invalid_client",
            "error_description": "The client assertion is invalid: this jti was used already",
        }
        assert replay.headers["cache-control"] == "no-store"
        assert "www-authenticate" not in replay.headers
        assert snapshot(services) == before  # the code is not consumed, nothing issued
        assert access_tokens(services, client_id) == 1
        assert len(jtis(services, client_id)) == 1


def sign(key: RSAKey, client_id: str, clock: MovableClock, **overrides: Any) -> str:
    now = int(clock.now().timestamp())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        **overrides,
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, registry=SIGNER)


REFUSED_AUDIENCES = [
    pytest.param([ISSUER, "https://rs.example"], id="issuer-and-a-foreign-audience"),
    pytest.param([TOKEN_ENDPOINT, "https://other-as.example/token"], id="endpoint-and-foreign"),
    pytest.param(["https://other-as.example", ISSUER, TOKEN_ENDPOINT], id="three-values"),
    pytest.param(f"{ISSUER}/oauth2/revoke", id="revocation-endpoint"),
    pytest.param(f"{ISSUER}/oauth2/introspect", id="introspection-endpoint"),
    pytest.param([f"{ISSUER}/oauth2/introspect"], id="introspection-endpoint-in-a-list"),
    pytest.param("https://other-as.example", id="another-server"),
]


@pytest.mark.parametrize("aud", REFUSED_AUDIENCES)
@pytest.mark.parametrize("endpoint", ["/oauth2/tokens", "/oauth2/introspect", "/oauth2/revoke"])
def test_foreign_or_endpoint_audiences_are_refused(
    live: Live,
    services: Services,
    rsa_key: RSAKey,
    clock: MovableClock,
    aud: Any,
    endpoint: str,
) -> None:
    with live.client() as http:
        client_id = register(http, rsa_key)
        before = snapshot(services)
        jti = uuid.uuid4().hex
        data = {
            "grant_type": "refresh_token",
            "refresh_token": "agrt_x",
            "token": "agat_x",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": sign(rsa_key, client_id, clock, aud=aud, jti=jti),
        }
        resp = http.post(endpoint, data=data)
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"] == "invalid_client"
        assert resp.json()["error_description"].startswith(
            "The client assertion is invalid: aud must be this authorization server's issuer"
        )
        assert resp.headers["cache-control"] == "no-store"
        assert "www-authenticate" not in resp.headers
        assert snapshot(services) == before
        assert jtis(services, client_id) == []
        # Refused before its jti was recorded: the same jti, correctly addressed, works.
        data["client_assertion"] = sign(rsa_key, client_id, clock, jti=jti)
        accepted = http.post("/oauth2/introspect", data=data)
        assert accepted.status_code == 200 and accepted.json() == {"active": False}
        assert [j for j, _ in jtis(services, client_id)] == [jti]


@pytest.mark.parametrize(
    ("lifetime", "accepted"),
    [(3600, True), (3660, True), (3661 + 60, False), (86400, False)],
    ids=["one-hour", "one-hour-and-skew", "beyond", "a-day"],
)
def test_the_maximum_lifetime_is_an_hour(
    live: Live,
    services: Services,
    rsa_key: RSAKey,
    clock: MovableClock,
    lifetime: int,
    accepted: bool,
) -> None:
    now = int(clock.now().timestamp())
    with live.client() as http:
        client_id = register(http, rsa_key)
        assertion = sign(rsa_key, client_id, clock, exp=now + lifetime)
        data = {"token": "agat_x", "client_assertion_type": ASSERTION_TYPE}
        resp = http.post("/oauth2/introspect", data={**data, "client_assertion": assertion})
        if accepted:
            assert resp.status_code == 200, resp.text
            assert len(jtis(services, client_id)) == 1
            return
        assert resp.status_code == 401
        assert resp.json() == {
            "error": "invalid_client",
            "error_description": "The client assertion is invalid: exp is more than 1 hour ahead",
        }
        assert jtis(services, client_id) == []


def _ec(curve: str = "P-256", **params: Unpack[KeyParameters]) -> dict[str, Any]:
    key = ECKey.generate_key(curve, parameters={"kid": "k", **params}, private=True)
    return dict(key.as_dict(private=False))


def _rsa(bits: int, private: bool = False) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns of a 1024-bit key: that is the point
        key = RSAKey.generate_key(bits, parameters={"kid": "k"}, private=True)
    return dict(key.as_dict(private=private))


def _off_curve() -> dict[str, Any]:
    key = _ec()
    return {**key, "x": key["y"], "y": key["x"]}


BAD_KEYS = [
    pytest.param(lambda: _rsa(2048, private=True), "private key", id="private-rsa-key"),
    pytest.param(
        lambda: dict(ECKey.generate_key("P-256", private=True).as_dict(private=True)),
        "private key",
        id="private-ec-key",
    ),
    pytest.param(
        lambda: dict(OctKey.generate_key(256).as_dict(private=True)), "symmetric", id="oct-key"
    ),
    pytest.param(_off_curve, "does not import", id="ec-point-off-the-curve"),
    pytest.param(lambda: {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "import", id="tiny-rsa"),
    pytest.param(lambda: {"kty": "RSA", "n": "!!", "e": "AQAB"}, "import", id="garbage-rsa"),
    pytest.param(lambda: _rsa(1024), "at least 2048 bits", id="rsa-1024"),
    pytest.param(lambda: _ec("P-384"), "P-256 curve", id="ec-p384"),
    pytest.param(
        lambda: dict(OKPKey.generate_key("X25519", private=True).as_dict(private=False)),
        "Ed25519",
        id="okp-x25519",
    ),
    pytest.param(lambda: {**_rsa(2048), "alg": "HS256"}, "alg of an RSA key", id="rsa-hs256"),
    pytest.param(lambda: _ec(alg="RS256"), "alg of an EC key", id="ec-claiming-rs256"),
    pytest.param(lambda: _ec(use="enc"), 'use must be "sig"', id="encryption-key"),
    pytest.param(lambda: {"kty": "foo", "x": "y"}, "kty must be one of", id="unknown-kty"),
    pytest.param(lambda: {**_ec(), "kid": 7}, "kid must be a string", id="kid-not-a-string"),
]


@pytest.mark.parametrize(("make", "reason"), BAD_KEYS)
def test_registration_refuses_keys_that_are_not_public_signature_keys(
    live: Live, services: Services, make: Any, reason: str
) -> None:
    body = {
        "client_name": "Key client",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [_ec(), make()]},
    }
    before = snapshot(services)
    with live.client() as http:
        resp = http.post("/oauth2/register", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_client_metadata"
    assert resp.json()["error_description"].startswith("jwks key 1: ")
    assert reason in resp.json()["error_description"]
    assert resp.headers["cache-control"] == "no-store"
    assert snapshot(services) == before
    assert not any(app.dynamically_registered for app in services.store.list_apps())
