"""authgate as an OpenID Provider: the ID token (OpenID Connect Core 1.0 §2, §3.1.3, §12.2).

Every ID token here is checked by PyJWT against the public JWKS, not by authgate's own code:
signature, ``iss``, ``aud`` (the client), ``exp``, ``iat``, and ``at_hash`` recomputed from the
access token beside it. The access token's audience stays the resource (RFC 8707)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account, Client, make_client
from tests.flows import (
    RESOURCE,
    assert_token_response,
    authorize,
    authorize_url,
    callback_params,
    decide,
    exchange_code,
    generate_pkce,
    refresh,
)

NONCE = "n-0S6_WzA2Mj"


def verify_id_token(
    client: TestClient, token: str, client_id: str, leeway: int = 0
) -> dict[str, Any]:
    """An RP's checks (OIDC Core §3.1.3.7), by PyJWT with the published keys."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT"  # never "at+jwt": an ID token is no access token
    return decode(client, token, client_id, leeway)


def decode(client: TestClient, token: str, client_id: str, leeway: int = 0) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    keys = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key,
        algorithms=[header["alg"]],
        audience=client_id,
        issuer=ISSUER,
        leeway=leeway,  # PyJWT reads the real clock; a test may have moved authgate's
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )
    return claims


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def tokens(client: TestClient, app: Client, scope: str | None, **extra: str) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(
        client, app.id, challenge=pkce.challenge, resource=RESOURCE, scope=scope, extra=extra
    )
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


def session_sign_in(services: Services, user_id: str) -> tuple[str, str | None]:
    with services.store.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT amr, idp FROM sessions WHERE user_id = :u"), {"u": user_id}
        ).one()
    return row.amr, row.idp


def test_id_token_beside_an_access_token_for_the_resource(
    signed_in: TestClient, services: Services, alice: Account
) -> None:
    app = make_client(services)
    services.ctx.store.update_user(
        alice.user.__class__(**{**_fields(alice), "email": "alice@example.com", "name": "Alice"})
    )
    body = tokens(signed_in, app, "openid profile email read", nonce=NONCE)
    # The issued scope reports the OpenID scopes it honoured, in the order asked.
    assert body["scope"] == "openid profile email read"
    claims = verify_id_token(signed_in, body["id_token"], app.id)
    assert claims["sub"] == alice.user.id
    assert claims["aud"] == app.id and claims["azp"] == app.id
    assert claims["nonce"] == NONCE
    assert claims["at_hash"] == at_hash(body["access_token"])
    assert claims["amr"] == ["pwd"]
    assert claims["acr"] == "urn:authgate:acr:password"
    assert "idp" not in claims
    now = int(services.ctx.clock.now().timestamp())
    assert claims["iat"] == now
    assert claims["exp"] == now + 3600
    # Signed in at this moment of the test clock, with the password form.
    assert claims["auth_time"] == now
    assert session_sign_in(services, alice.user.id) == ("pwd", None)
    assert claims["name"] == "Alice" and claims["preferred_username"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is False  # typed by an operator, never proven
    # The access token is for the resource, and is not an ID token for the client.
    access = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert access["aud"] == RESOURCE and access["scope"] == "openid profile email read"
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    with pytest.raises(jwt.InvalidAudienceError):
        decode(signed_in, body["access_token"], app.id)
    # The code carried the nonce and how the person signed in.
    with services.store.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT nonce, amr, idp FROM authorization_codes WHERE app_id = :a"),
            {"a": app.id},
        ).one()
        grant = conn.execute(
            sa.text("SELECT amr, idp, scope FROM grants WHERE app_id = :a"), {"a": app.id}
        ).one()
    assert tuple(row) == (NONCE, "pwd", None)
    assert tuple(grant) == ("pwd", None, "openid profile email read")


def _fields(account: Account) -> dict[str, Any]:
    user = account.user
    return {name: getattr(user, name) for name in user.__dataclass_fields__}


@pytest.mark.parametrize(
    ("scope", "issued"),
    [
        pytest.param("read", "read", id="no-openid-no-id-token"),
        pytest.param("profile email read", "read", id="3.1.2.1-profile-without-openid"),
        pytest.param("openid", "openid", id="5.4-openid-alone"),
        pytest.param("openid address phone read", "openid read", id="5.4-unheld-claims-left-out"),
    ],
)
def test_which_scopes_are_honoured(
    signed_in: TestClient, services: Services, alice: Account, scope: str, issued: str
) -> None:
    app = make_client(services)
    body = tokens(signed_in, app, scope)
    assert body["scope"] == issued
    if "openid" not in issued:
        assert "id_token" not in body
        return
    claims = verify_id_token(signed_in, body["id_token"], app.id)
    assert claims["sub"] == alice.user.id
    assert "nonce" not in claims  # none was sent
    # Only the claims of the scopes granted: openid alone releases none about the person.
    assert not {"name", "preferred_username", "email", "email_verified"} & set(claims)


def test_allow_list_without_openid_gets_no_id_token(
    signed_in: TestClient, services: Services
) -> None:
    app = make_client(services, scope="read")
    body = tokens(signed_in, app, "openid read")
    assert body["scope"] == "read"
    assert "id_token" not in body


def test_nonce_too_long_is_invalid_request(signed_in: TestClient, services: Services) -> None:
    app = make_client(services)
    url = authorize_url(
        app.id,
        challenge=generate_pkce().challenge,
        scope="openid",
        extra={"nonce": "n" * 513},
    )
    got = callback_params(signed_in.get(url, follow_redirects=False))
    assert got["error"] == "invalid_request" and "nonce" in got["error_description"]
    assert got["state"] == "xyz-state" and got["iss"] == ISSUER
    with services.store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM authorization_codes")).scalar() == 0


def test_refresh_issues_a_new_id_token_without_nonce(
    signed_in: TestClient, services: Services, alice: Account, clock: MovableClock
) -> None:
    """OIDC Core §12.2: same iss, sub, aud, azp, auth_time; a new iat; no nonce."""
    app = make_client(services)
    first = tokens(signed_in, app, "openid email read", nonce=NONCE)
    before = verify_id_token(signed_in, first["id_token"], app.id)
    clock.advance(minutes=30)
    again = assert_token_response(
        refresh(signed_in, first["refresh_token"], client_id=app.id, client_secret=app.secret)
    )
    after = verify_id_token(signed_in, again["id_token"], app.id, leeway=1800)
    for claim in ("iss", "sub", "aud", "azp", "auth_time", "amr", "acr"):
        assert after[claim] == before[claim], claim
    assert after["iat"] == before["iat"] + 1800
    assert "nonce" not in after
    assert after["at_hash"] == at_hash(again["access_token"]) != before["at_hash"]
    # Narrowed away from openid: no ID token.
    narrowed = assert_token_response(
        refresh(
            signed_in,
            again["refresh_token"],
            client_id=app.id,
            client_secret=app.secret,
            scope="read",
        )
    )
    assert narrowed["scope"] == "read" and "id_token" not in narrowed


def test_email_verified_as_the_operator_says(
    signed_in: TestClient, services: Services, alice: Account, admin: Account
) -> None:
    api = {"Authorization": f"Bearer {admin.api_token}"}
    resp = signed_in.patch(
        f"/api/v2/users/{alice.user.id}",
        json={"email": "alice@example.com", "email_verified": True},
        headers=api,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["email_verified"] is True
    app = make_client(services)
    claims = verify_id_token(signed_in, tokens(signed_in, app, "openid email")["id_token"], app.id)
    assert (claims["email"], claims["email_verified"]) == ("alice@example.com", True)
    # A new address is not verified until the operator says so again.
    resp = signed_in.patch(
        f"/api/v2/users/{alice.user.id}", json={"email": "a2@example.com"}, headers=api
    )
    assert resp.json()["email_verified"] is False
    stored = services.store.get_user(alice.user.id)
    assert stored is not None and not stored.email_verified
    decide(signed_in, authorize_url(app.id, challenge=generate_pkce().challenge))
    claims = verify_id_token(signed_in, tokens(signed_in, app, "openid email")["id_token"], app.id)
    assert (claims["email"], claims["email_verified"]) == ("a2@example.com", False)
