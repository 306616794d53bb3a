"""RFC 7662 introspection and RFC 7009 revocation, for JWT and opaque access tokens and refresh
tokens, including other clients' tokens."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import resources
from authgate.core.context import SYSTEM
from authgate.core.models import AuditQuery
from authgate.core.resources import ResourceFields
from tests.clock import MovableClock
from tests.conftest import Account, Client, issued, make_client
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    refresh,
)

OPAQUE = "https://mcp.example.com/mcp"


def _tokens(client: TestClient, app: Client, resource: str = RESOURCE) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, resource=resource)
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


def _introspect(client: TestClient, caller: Client, token: str, **extra: str) -> Any:
    resp = client.post(
        "/oauth2/introspect", data={"token": token, **extra}, auth=(caller.id, caller.secret or "")
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    return resp.json()


def _revoke(client: TestClient, caller: Client, token: str, **extra: str) -> Any:
    data = {"token": token, "client_id": caller.id, **extra}
    if caller.secret:
        data["client_secret"] = caller.secret
    return client.post("/oauth2/revoke", data=data)


@pytest.mark.parametrize("resource", [RESOURCE, OPAQUE], ids=["jwt", "opaque"])
def test_introspect_active_access_token(
    signed_in: TestClient, confidential: Client, alice: Account, resource: str
) -> None:
    body = _tokens(signed_in, confidential, resource)
    info = _introspect(signed_in, confidential, body["access_token"])
    assert info["active"] is True
    assert info["client_id"] == confidential.id
    assert info["sub"] == alice.user.id and info["username"] == "alice"
    assert info["aud"] == resource
    assert info["iss"] == "http://testserver"
    assert info["token_type"] == "Bearer"
    assert info["exp"] - info["iat"] == 3600
    assert "scope" not in info


def test_introspect_refresh_token(signed_in: TestClient, confidential: Client) -> None:
    body = _tokens(signed_in, confidential)
    info = _introspect(
        signed_in, confidential, body["refresh_token"], token_type_hint="refresh_token"
    )
    assert info["active"] is True and info["aud"] == RESOURCE
    assert info["token_type"] == "refresh_token"  # never mistaken for a bearer token


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("agat_1234567890_" + "a" * 46, id="2.2-unknown-opaque"),
        pytest.param("eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0.", id="2.2-unsigned-jwt"),
        pytest.param("garbage", id="2.2-garbage"),
    ],
)
def test_introspect_unknown_is_inactive(
    client: TestClient, confidential: Client, token: str
) -> None:
    assert _introspect(client, confidential, token) == {"active": False}


def test_introspect_expired_and_revoked(
    signed_in: TestClient, confidential: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, confidential)
    second = _tokens(signed_in, confidential)
    assert _revoke(signed_in, confidential, second["access_token"]).status_code == 200
    assert _introspect(signed_in, confidential, second["access_token"]) == {"active": False}
    clock.advance(seconds=3601)
    assert _introspect(signed_in, confidential, first["access_token"]) == {"active": False}


def test_introspect_foreign_token_is_inactive(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    other = make_client(services, name="Other")
    body = _tokens(signed_in, confidential)
    assert _introspect(signed_in, other, body["access_token"]) == {"active": False}
    assert _introspect(signed_in, other, body["refresh_token"]) == {"active": False}


def test_resource_server_may_introspect_its_audience(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    server = make_client(
        services, name="Resource server", grant_types=["client_credentials"], redirect_uris=[]
    )
    resources.update_resource(
        services.ctx, SYSTEM, RESOURCE, ResourceFields(introspectors=[server.id])
    )
    body = _tokens(signed_in, confidential)
    assert _introspect(signed_in, server, body["access_token"])["active"] is True
    # ...but not a token for another audience.
    other = _tokens(signed_in, confidential, OPAQUE)
    assert _introspect(signed_in, server, other["access_token"]) == {"active": False}
    # ...and never a refresh token of another client.
    assert _introspect(signed_in, server, body["refresh_token"]) == {"active": False}


def test_introspection_needs_a_confidential_client(
    signed_in: TestClient, confidential: Client, public: Client
) -> None:
    body = _tokens(signed_in, confidential)
    anonymous = signed_in.post("/oauth2/introspect", data={"token": body["access_token"]})
    assert_oauth_error(anonymous, 401, "invalid_client")
    as_public = signed_in.post(
        "/oauth2/introspect", data={"token": body["access_token"], "client_id": public.id}
    )
    assert_oauth_error(as_public, 401, "invalid_client")
    wrong = signed_in.post(
        "/oauth2/introspect", data={"token": body["access_token"]}, auth=(confidential.id, "x")
    )
    assert_oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    missing = signed_in.post(
        "/oauth2/introspect", data={}, auth=(confidential.id, confidential.secret or "")
    )
    assert_oauth_error(missing, 400, "invalid_request")


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token", "bogus"])
def test_revoke_refresh_token_ends_the_family(
    signed_in: TestClient, services: Services, confidential: Client, hint: str | None
) -> None:
    body = _tokens(signed_in, confidential)
    extra = {"token_type_hint": hint} if hint else {}
    resp = _revoke(signed_in, confidential, body["refresh_token"], **extra)
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["cache-control"] == "no-store"
    assert _introspect(signed_in, confidential, body["access_token"]) == {"active": False}
    assert issued(services, confidential.id).live_access == 0
    again = refresh(
        signed_in,
        body["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    assert_oauth_error(again, 400, "invalid_grant")
    events, _ = services.store.list_audit(AuditQuery(action="token.revoked"))
    assert len(events) == 1 and body["refresh_token"] not in str(events[0].details)


@pytest.mark.parametrize("resource", [RESOURCE, OPAQUE], ids=["jwt", "opaque"])
def test_revoke_access_token_only(
    signed_in: TestClient, confidential: Client, resource: str
) -> None:
    body = _tokens(signed_in, confidential, resource)
    assert _revoke(signed_in, confidential, body["access_token"]).status_code == 200
    assert _introspect(signed_in, confidential, body["access_token"]) == {"active": False}
    # The refresh token still works: only the access token was revoked.
    assert_token_response(
        refresh(
            signed_in,
            body["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )


def test_revoke_foreign_token_changes_nothing(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    other = make_client(services, name="Other")
    body = _tokens(signed_in, confidential)
    for token in (body["access_token"], body["refresh_token"]):
        assert _revoke(signed_in, other, token).status_code == 200
    assert _introspect(signed_in, confidential, body["access_token"])["active"] is True
    events, count = services.store.list_audit(AuditQuery(action="token.revocation_refused"))
    assert count == 2 and all(e.actor_id == other.id for e in events)


def test_revoke_unknown_token_is_200(client: TestClient, confidential: Client) -> None:
    resp = _revoke(client, confidential, "agrt_1234567890_" + "b" * 46)
    assert resp.status_code == 200


def test_revoke_needs_client_authentication(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    body = _tokens(signed_in, confidential)
    resp = signed_in.post(
        "/oauth2/revoke", data={"token": body["refresh_token"], "client_id": confidential.id}
    )
    assert_oauth_error(resp, 401, "invalid_client")
    bad = signed_in.post(
        "/oauth2/revoke",
        data={"token": body["refresh_token"]},
        auth=(confidential.id, "agcs_wrong"),
    )
    assert_oauth_error(bad, 401, "invalid_client")
    assert issued(services, confidential.id).live_access == 1
    missing = _revoke(signed_in, confidential, "")
    assert_oauth_error(missing, 400, "invalid_request")


def test_public_client_revokes_its_own_token(signed_in: TestClient, public: Client) -> None:
    body = _tokens(signed_in, public)
    assert _revoke(signed_in, public, body["refresh_token"]).status_code == 200
    again = refresh(signed_in, body["refresh_token"], client_id=public.id, client_secret=None)
    assert_oauth_error(again, 400, "invalid_grant")


def test_revoked_token_is_refused_by_authgate_api(
    signed_in: TestClient, confidential: Client
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    body = assert_token_response(
        exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
        )
    )
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    signed_in.cookies.clear()
    assert signed_in.get("/api/v2/users/me", headers=headers).status_code == 200
    _revoke(signed_in, confidential, body["access_token"])
    assert signed_in.get("/api/v2/users/me", headers=headers).status_code == 401
