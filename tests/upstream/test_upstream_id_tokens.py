"""OpenID Connect Core 1.0 §3.1.3.7: the ID token checks, against answers a real provider never
gives. The Python stand-in (tests/upstream/standin.py) serves them; the real provider
(test_upstream_sign_in.py) covers every well-behaved path. Each bad token is refused with a
page, signs no one in, creates no one, and is audited as ``id_token_invalid``."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from starlette.testclient import TestClient

from authgate.core.models import AuditQuery
from authgate.crypto.pkce import s256
from authgate.services import Services
from tests.clock import MovableClock
from tests.upstream import provider, standin
from tests.upstream.conftest import add_provider, callback_url, query_of, start

NOW = int(time.time())


def callback(
    client: TestClient, stand_in: standin.StandIn, **claims: Any
) -> tuple[Any, dict[str, str]]:
    """Start a sign-in, make the stand-in answer the code exchange with an ID token of
    ``claims`` (the request's nonce unless given), and arrive back at authgate."""
    sent = query_of(start(client, "standin"))
    body = {
        "sub": "subject-1",
        "nonce": sent["nonce"],
        "email": "s@example.com",
        "email_verified": True,
        "name": "Stand In",
        **claims,
    }
    if stand_in.id_token == "":
        stand_in.id_token = stand_in.sign(body)
    params = {"code": "standin-code", "state": sent["state"], "iss": stand_in.issuer}
    resp = client.get(
        f"/login/upstream/standin/callback?{urlencode(params)}", follow_redirects=False
    )
    return resp, sent


def refusal_reasons(services: Services) -> list[str]:
    events, _ = services.store.list_audit(AuditQuery(action="upstream.sign_in_refused"))
    return [str(e.details["reason"]) for e in events]


@pytest.fixture
def standin_provider(services: Services, stand_in: standin.StandIn) -> standin.StandIn:
    add_provider(
        services, "standin", stand_in.issuer, jit_create=True, scopes="openid email profile"
    )
    return stand_in


def test_a_good_token_signs_in_and_authgate_sent_a_proper_code_exchange(
    client: TestClient, services: Services, standin_provider: standin.StandIn
) -> None:
    resp, sent = callback(client, standin_provider)
    assert resp.status_code == 303, resp.text
    [(form, headers)] = standin_provider.token_requests
    assert form["grant_type"] == "authorization_code" and form["code"] == "standin-code"
    assert form["redirect_uri"] == callback_url("standin")
    assert s256(form["code_verifier"]) == sent["code_challenge"]  # PKCE S256
    expected = base64.b64encode(f"{provider.CLIENT_ID}:{provider.CLIENT_SECRET}".encode())
    assert headers["authorization"] == f"Basic {expected.decode()}"  # client_secret_basic
    assert "client_secret" not in form
    assert services.store.get_upstream_identity("standin", "subject-1") is not None


BAD_TOKENS = [
    pytest.param({"nonce": "another-nonce"}, id="3.1.3.7-11-wrong-nonce"),
    pytest.param({"nonce": None}, id="3.1.3.7-11-no-nonce"),
    pytest.param({"iss": "https://evil.example"}, id="3.1.3.7-2-wrong-iss"),
    pytest.param({"aud": "another-client"}, id="3.1.3.7-3-wrong-aud"),
    pytest.param({"aud": ["authgate", "other"]}, id="3.1.3.7-4-several-aud-no-azp"),
    pytest.param({"aud": ["authgate", "other"], "azp": "other"}, id="3.1.3.7-5-azp-other"),
    pytest.param({"exp": NOW - 3600, "iat": NOW - 3700}, id="3.1.3.7-9-expired"),
    pytest.param({"iat": NOW + 3600, "exp": NOW + 7200}, id="3.1.3.7-10-iat-in-future"),
    pytest.param({"sub": ""}, id="2-empty-sub"),
]


@pytest.mark.parametrize("claims", BAD_TOKENS)
def test_a_bad_id_token_is_refused_and_changes_nothing(
    client: TestClient,
    services: Services,
    standin_provider: standin.StandIn,
    claims: dict[str, Any],
) -> None:
    users = services.store.count_users()
    resp, _ = callback(client, standin_provider, **claims)
    assert resp.status_code == 400, resp.text
    assert "The sign-in could not be verified" in resp.text
    assert 'id="error-reference"' in resp.text
    assert "authgate_session" not in client.cookies
    assert services.store.count_users() == users
    assert services.store.get_upstream_identity("standin", "subject-1") is None
    assert refusal_reasons(services) == ["id_token_invalid"]


def test_a_token_signed_by_another_key_is_refused(
    client: TestClient, services: Services, standin_provider: standin.StandIn
) -> None:
    sent = query_of(start(client, "standin"))
    other = standin.new_key()  # not in the provider's JWKS (its kid unknown: JWKS reloaded)
    standin_provider.id_token = standin_provider.sign(
        {"sub": "subject-1", "nonce": sent["nonce"]}, other
    )
    params = {"code": "c", "state": sent["state"], "iss": standin_provider.issuer}
    resp = client.get(
        f"/login/upstream/standin/callback?{urlencode(params)}", follow_redirects=False
    )
    assert resp.status_code == 400 and "authgate_session" not in client.cookies
    assert refusal_reasons(services) == ["id_token_invalid"]


def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(
    client: TestClient, services: Services, standin_provider: standin.StandIn
) -> None:
    sent = query_of(start(client, "standin"))
    forger = standin.new_key()
    header = {"alg": "ES256", "kid": str(standin_provider.key.kid)}
    claims = {
        "iss": standin_provider.issuer,
        "aud": "authgate",
        "sub": "subject-1",
        "nonce": sent["nonce"],
        "iat": NOW,
        "exp": NOW + 300,
    }
    standin_provider.id_token = jwt.encode(header, claims, forger)
    params = {"code": "c", "state": sent["state"], "iss": standin_provider.issuer}
    resp = client.get(
        f"/login/upstream/standin/callback?{urlencode(params)}", follow_redirects=False
    )
    assert resp.status_code == 400
    assert refusal_reasons(services) == ["id_token_invalid"]


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_an_hmac_or_unsigned_token_is_refused(
    client: TestClient, services: Services, standin_provider: standin.StandIn, alg: str
) -> None:
    """The client secret must never be what proves an ID token, and ``none`` proves nothing."""
    sent = query_of(start(client, "standin"))
    claims = {
        "iss": standin_provider.issuer,
        "aud": "authgate",
        "sub": "subject-1",
        "nonce": sent["nonce"],
        "iat": NOW,
        "exp": NOW + 300,
    }
    if alg == "HS256":
        key = OctKey.import_key(provider.CLIENT_SECRET.encode() * 2)
        standin_provider.id_token = jwt.encode({"alg": "HS256"}, claims, key)
    else:
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        standin_provider.id_token = "eyJhbGciOiJub25lIn0." + payload.decode() + "."
    params = {"code": "c", "state": sent["state"], "iss": standin_provider.issuer}
    resp = client.get(
        f"/login/upstream/standin/callback?{urlencode(params)}", follow_redirects=False
    )
    assert resp.status_code == 400 and "authgate_session" not in client.cookies
    assert refusal_reasons(services) == ["id_token_invalid"]


def test_a_token_that_expires_while_the_person_is_at_the_provider_is_refused(
    client: TestClient, services: Services, standin_provider: standin.StandIn, clock: MovableClock
) -> None:
    sent = query_of(start(client, "standin"))
    standin_provider.id_token = standin_provider.sign({"sub": "subject-1", "nonce": sent["nonce"]})
    clock.advance(minutes=7)  # the token lives 5 minutes (+1 leeway); the transaction 10
    params = {"code": "c", "state": sent["state"], "iss": standin_provider.issuer}
    resp = client.get(
        f"/login/upstream/standin/callback?{urlencode(params)}", follow_redirects=False
    )
    assert resp.status_code == 400
    assert refusal_reasons(services) == ["id_token_invalid"]


def test_an_expired_transaction_is_refused_before_any_exchange(
    client: TestClient, services: Services, standin_provider: standin.StandIn, clock: MovableClock
) -> None:
    sent = query_of(start(client, "standin"))
    clock.advance(minutes=11)
    params = {"code": "c", "state": sent["state"], "iss": standin_provider.issuer}
    resp = client.get(
        f"/login/upstream/standin/callback?{urlencode(params)}", follow_redirects=False
    )
    assert resp.status_code == 400
    assert standin_provider.token_requests == []  # nothing left authgate
    assert refusal_reasons(services) == ["state_invalid"]


def test_userinfo_fills_missing_claims_only_for_the_same_subject(
    client: TestClient, services: Services, standin_provider: standin.StandIn
) -> None:
    standin_provider.userinfo = {
        "sub": "subject-1",
        "email": "u@example.com",
        "email_verified": True,
        "name": "From UserInfo",
    }
    resp, _ = callback(client, standin_provider, email=None, email_verified=None, name=None)
    assert resp.status_code == 303, resp.text
    identity = services.store.get_upstream_identity("standin", "subject-1")
    assert identity is not None
    user = services.store.get_user(identity.user_id)
    assert user is not None and (user.email, user.name) == ("u@example.com", "From UserInfo")

    client.cookies.clear()
    standin_provider.id_token = ""
    standin_provider.userinfo = {"sub": "someone-else", "email": "x@example.com"}
    resp, _ = callback(client, standin_provider, sub="subject-2", email=None, name=None)
    assert resp.status_code == 400
    assert services.store.get_upstream_identity("standin", "subject-2") is None
    assert refusal_reasons(services) == ["userinfo_invalid"]


def test_a_refused_code_exchange_is_a_page(
    client: TestClient, services: Services, standin_provider: standin.StandIn
) -> None:
    standin_provider.token_status = 400
    resp, _ = callback(client, standin_provider)
    assert resp.status_code == 403 and "You could not be signed in" in resp.text
    assert refusal_reasons(services) == ["token_exchange_failed"]


def test_a_discovery_document_naming_another_issuer_is_refused(
    client: TestClient, services: Services, stand_in: standin.StandIn
) -> None:
    stand_in.metadata_extra = {"issuer": "https://evil.example"}
    add_provider(services, "standin", stand_in.issuer, jit_create=True)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    resp = client.post(
        "/login/upstream/standin", data={"csrf_token": token}, follow_redirects=False
    )
    assert resp.status_code == 400 and "location" not in resp.headers
    assert refusal_reasons(services) == ["issuer_mismatch"]


def test_a_token_endpoint_that_fails_is_a_503_page(
    client: TestClient, services: Services, standin_provider: standin.StandIn
) -> None:
    standin_provider.token_status = 503
    resp, _ = callback(client, standin_provider)
    assert resp.status_code == 503, resp.text
    assert "The identity provider is not answering" in resp.text
    assert 'id="error-reference"' in resp.text
    assert "authgate_session" not in client.cookies
    assert refusal_reasons(services) == ["provider_unavailable"]
