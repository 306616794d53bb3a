"""The UserInfo endpoint (OpenID Connect Core 1.0 §5.3) and its errors (RFC 6750 §3).

The rule (core/userinfo.py): a live access token of authgate's, acting for a person, whose
audience is authgate itself and whose scope holds ``openid``."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import accounts
from authgate.core.context import SYSTEM
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account, Client, make_client
from tests.flows import (
    RESOURCE,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
)
from tests.http_types import Response

USERINFO = "/oauth2/userinfo"
REALM = f'realm="{ISSUER}"'


def tokens(
    client: TestClient, app: Client, scope: str, resource: str | None = None
) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, resource=resource, scope=scope)
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


@pytest.fixture
def named(services: Services, alice: Account) -> Account:
    user = accounts.update_user(
        services.ctx, SYSTEM, alice.user.id, email="alice@example.com", name="Alice A"
    )
    return Account(user, alice.password, alice.api_token)


def assert_bearer_error(resp: Response, status: int, error: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith(f"Bearer {REALM}, ")
    assert f'error="{error}"' in challenge
    assert resp.headers["cache-control"] == "no-store"
    body: dict[str, Any] = resp.json()
    assert body["error"] == error and body["error_description"]
    assert "sub" not in body
    return body


def test_get_and_post(signed_in: TestClient, services: Services, named: Account) -> None:
    app = make_client(services)
    body = tokens(signed_in, app, "openid profile email")  # no resource: authgate itself
    access = body["access_token"]
    expected = {
        "sub": named.user.id,
        "name": "Alice A",
        "preferred_username": "alice",
        "updated_at": int(named.user.updated_at.timestamp()),
        "email": "alice@example.com",
        "email_verified": False,
    }
    got = signed_in.get(USERINFO, headers={"Authorization": f"Bearer {access}"})
    assert got.status_code == 200, got.text
    assert got.json() == expected
    assert got.headers["cache-control"] == "no-store"
    assert got.headers["content-type"] == "application/json"
    # OIDC Core §5.3.2: sub is the ID token's.
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_claims["sub"] == got.json()["sub"]
    posted = signed_in.post(USERINFO, headers={"Authorization": f"Bearer {access}"})
    assert posted.status_code == 200 and posted.json() == expected
    # RFC 6750 §2.2: the form body.
    form = signed_in.post(USERINFO, data={"access_token": access})
    assert form.status_code == 200 and form.json() == expected


def test_claims_follow_the_scope(signed_in: TestClient, services: Services, named: Account) -> None:
    app = make_client(services)
    access = tokens(signed_in, app, "openid email")["access_token"]
    got = signed_in.get(USERINFO, headers={"Authorization": f"Bearer {access}"}).json()
    assert got == {"sub": named.user.id, "email": "alice@example.com", "email_verified": False}


def test_no_token_is_a_bare_challenge(client: TestClient) -> None:
    """RFC 6750 §3.1: no credentials, no error code."""
    for resp in (client.get(USERINFO), client.post(USERINFO)):
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == f"Bearer {REALM}"
        assert resp.content == b""


def test_token_for_another_audience(
    signed_in: TestClient, services: Services, named: Account
) -> None:
    """RFC 8707: a token for the resource is not one for authgate's own UserInfo."""
    app = make_client(services)
    body = tokens(signed_in, app, "openid profile read", resource=RESOURCE)
    assert "id_token" in body
    resp = signed_in.get(USERINFO, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert assert_bearer_error(resp, 401, "invalid_token")["error_description"] == (
        "The access token was not issued for this audience"
    )


def test_token_without_openid(signed_in: TestClient, services: Services, named: Account) -> None:
    app = make_client(services)
    access = tokens(signed_in, app, "profile")["access_token"]
    resp = signed_in.get(USERINFO, headers={"Authorization": f"Bearer {access}"})
    assert_bearer_error(resp, 403, "insufficient_scope")
    assert 'scope="openid"' in resp.headers["www-authenticate"]


def test_expired_revoked_and_unknown(
    signed_in: TestClient, services: Services, named: Account, clock: MovableClock
) -> None:
    app = make_client(services)
    first = tokens(signed_in, app, "openid")
    bad = signed_in.get(USERINFO, headers={"Authorization": "Bearer agat_nope_nope"})
    assert_bearer_error(bad, 401, "invalid_token")
    revoked = signed_in.post(
        "/oauth2/revoke",
        data={"token": first["access_token"], "client_id": app.id, "client_secret": app.secret},
    )
    assert revoked.status_code == 200
    resp = signed_in.get(USERINFO, headers={"Authorization": f"Bearer {first['access_token']}"})
    assert_bearer_error(resp, 401, "invalid_token")
    second = tokens(signed_in, app, "openid")
    clock.advance(hours=2)
    resp = signed_in.get(USERINFO, headers={"Authorization": f"Bearer {second['access_token']}"})
    assert_bearer_error(resp, 401, "invalid_token")


def test_disabled_person(signed_in: TestClient, services: Services, named: Account) -> None:
    app = make_client(services)
    access = tokens(signed_in, app, "openid")["access_token"]
    # Disabling ends the grants (core/accounts.py); the row says no whatever remains.
    accounts.update_user(services.ctx, SYSTEM, named.user.id, disabled=True)
    resp = signed_in.get(USERINFO, headers={"Authorization": f"Bearer {access}"})
    assert_bearer_error(resp, 401, "invalid_token")


@pytest.mark.parametrize(
    ("how", "description"),
    [
        pytest.param("query", "must not be sent in the URL", id="6750-2.3-query-refused"),
        pytest.param("both", "one place only", id="6750-2-two-methods"),
        pytest.param("basic", "Bearer", id="6750-2.1-not-bearer"),
    ],
)
def test_malformed_requests(
    signed_in: TestClient, services: Services, named: Account, how: str, description: str
) -> None:
    app = make_client(services)
    access = tokens(signed_in, app, "openid")["access_token"]
    if how == "query":
        resp = signed_in.get(USERINFO, params={"access_token": access})
    elif how == "both":
        resp = signed_in.post(
            USERINFO,
            headers={"Authorization": f"Bearer {access}"},
            data={"access_token": access},
        )
    else:
        resp = signed_in.get(USERINFO, headers={"Authorization": "Basic YTpi"})
    body = assert_bearer_error(resp, 400, "invalid_request")
    assert description in body["error_description"]
