"""Token confusion across resources and clients, refresh-token replay, and other clients'
tokens at revocation and introspection.

Sources: RFC 9700 §2.3 and §4.10 (audience-restricted tokens, "access token privilege
restriction"), §4.14 (refresh token protection: rotation, reuse detection revokes the family),
RFC 8707 §2.2 (``invalid_target``), RFC 6749 §6 ("the requested scope MUST NOT include any
scope not originally granted": ``invalid_scope``), RFC 6819 §5.1.5.x and §5.2.2.3 (refresh
token rotation), OAuth 2.1 draft §4.3.1, RFC 9068 §4 (``aud`` checked by the resource), RFC 7662
§2.1 and §4 (who may introspect), RFC 7009 §2.1 ("verifies whether the token was issued to the
client making the revocation request").
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import resources
from authgate.core.context import SYSTEM
from authgate.core.models import AuditQuery
from authgate.core.resources import ResourceFields
from tests.clock import MovableClock
from tests.conftest import Client, issued, make_client
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
    refresh,
    session_csrf,
)
from tests.security.helpers import snapshot

OTHER = "https://other.example.com"
OPAQUE = "https://mcp.example.com/mcp"


def _tokens(
    client: TestClient, app: Client, resource: str = RESOURCE, scope: str | None = None
) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, resource=resource, scope=scope)
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


def _introspect(client: TestClient, caller: Client, token: str) -> Any:
    resp = client.post(
        "/oauth2/introspect", data={"token": token}, auth=(caller.id, caller.secret or "")
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def _events(services: Services, action: str) -> int:
    _, total = services.store.list_audit(AuditQuery(action=action, limit=1))
    return total


@pytest.fixture
def resource_server(services: Services) -> Client:
    """The introspecting resource server of OTHER (not of RESOURCE)."""
    server = make_client(
        services, name="Other API server", grant_types=["client_credentials"], redirect_uris=[]
    )
    resources.update_resource(
        services.ctx, SYSTEM, OTHER, ResourceFields(introspectors=[server.id])
    )
    return server


@pytest.mark.parametrize("audience", [RESOURCE, OPAQUE], ids=["jwt", "opaque"])
def test_token_for_resource_a_is_inactive_for_resource_bs_introspector(
    signed_in: TestClient, confidential: Client, resource_server: Client, audience: str
) -> None:
    """RFC 9700 §4.10 / RFC 7662 §4: resource B cannot learn about (or accept) A's tokens."""
    body = _tokens(signed_in, confidential, audience)
    assert _introspect(signed_in, resource_server, body["access_token"]) == {"active": False}
    assert _introspect(signed_in, resource_server, body["refresh_token"]) == {"active": False}
    # The control: B's introspector does see a token for B.
    own = _tokens(signed_in, confidential, OTHER)
    info = _introspect(signed_in, resource_server, own["access_token"])
    assert info["active"] is True and info["aud"] == OTHER


def test_jwt_audience_is_the_one_resource(signed_in: TestClient, confidential: Client) -> None:
    """RFC 9068 §3, RFC 8707 §2: one audience per token, never a list an attacker can reuse."""
    body = _tokens(signed_in, confidential, RESOURCE)
    claims = _claims(body["access_token"])
    assert claims["aud"] == RESOURCE
    assert claims["client_id"] == confidential.id
    assert claims["iss"] == "http://testserver"


def test_token_for_another_resource_is_refused_by_authgates_own_api(
    signed_in: TestClient, confidential: Client
) -> None:
    """RFC 9700 §4.10: authgate's management API is a resource too; a token minted for
    RESOURCE is not accepted there."""
    body = _tokens(signed_in, confidential, RESOURCE)
    signed_in.cookies.clear()  # the bearer token alone
    resp = signed_in.get(
        "/api/v2/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "resource_metadata=" in resp.headers["www-authenticate"]


def test_refresh_token_is_not_an_access_token(signed_in: TestClient, confidential: Client) -> None:
    body = _tokens(signed_in, confidential)
    signed_in.cookies.clear()
    resp = signed_in.get(
        "/api/v2/users/me", headers={"Authorization": f"Bearer {body['refresh_token']}"}
    )
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("extra", "status", "error"),
    [
        pytest.param({"resource": OTHER}, 400, "invalid_target", id="8707-2.2-other-resource"),
        pytest.param({"resource": OPAQUE}, 400, "invalid_target", id="8707-2.2-opaque-resource"),
        pytest.param({"resource": "http://testserver"}, 400, "invalid_target",
                     id="8707-2.2-authgate-api"),
        pytest.param({"resource": "not a uri"}, 400, "invalid_target", id="8707-2-malformed"),
        pytest.param({"scope": "read write"}, 400, "invalid_scope", id="6749-6-scope-escalation"),
        # A name the resource does not define is left out, not refused (issue 17).
        pytest.param({"scope": 'read"'}, 400, "invalid_scope", id="6749-6-malformed-scope"),
        pytest.param({"scope": "write"}, 400, "invalid_scope", id="6749-6-scope-swap"),
    ],
)  # fmt: skip
def test_refresh_cannot_change_audience_or_widen_scope(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    extra: dict[str, str],
    status: int,
    error: str,
) -> None:
    body = _tokens(signed_in, confidential, RESOURCE, scope="read")
    before = snapshot(services)
    resp = refresh(
        signed_in, body["refresh_token"], client_id=confidential.id,
        client_secret=confidential.secret, **extra,
    )  # fmt: skip
    assert_oauth_error(resp, status, error)
    assert snapshot(services) == before
    # The refresh token was not spent by the refused request.
    again = assert_token_response(
        refresh(
            signed_in, body["refresh_token"], client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )  # fmt: skip
    assert _claims(again["access_token"])["aud"] == RESOURCE
    assert again.get("scope", "read") == "read"


def test_refresh_token_replay_revokes_the_family(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    """OAuth 2.1 §4.3.1, RFC 9700 §4.14.2: a used refresh token presented again (after the
    retry grace period) revokes every token of the grant, the attacker's and the victim's."""
    body = _tokens(signed_in, confidential)
    rotated = assert_token_response(
        refresh(signed_in, body["refresh_token"], client_id=confidential.id,
                client_secret=confidential.secret)
    )  # fmt: skip
    clock.advance(seconds=121)  # past the reuse window (120 s)
    replay = refresh(
        signed_in, body["refresh_token"], client_id=confidential.id,
        client_secret=confidential.secret,
    )  # fmt: skip
    assert_oauth_error(replay, 400, "invalid_grant", "refresh token is invalid")
    state = issued(services, confidential.id)
    assert state.live_access == 0
    assert _events(services, "refresh_token.reused") == 1
    after = refresh(
        signed_in, rotated["refresh_token"], client_id=confidential.id,
        client_secret=confidential.secret,
    )  # fmt: skip
    assert_oauth_error(after, 400, "invalid_grant")
    assert _introspect(signed_in, confidential, rotated["access_token"]) == {"active": False}


def test_refresh_token_of_another_client_is_refused(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 6749 §6: the refresh token is bound to the client it was issued to."""
    thief = make_client(services, name="Thief")
    body = _tokens(signed_in, confidential)
    before = snapshot(services)
    resp = refresh(signed_in, body["refresh_token"], client_id=thief.id, client_secret=thief.secret)
    assert_oauth_error(resp, 400, "invalid_grant")
    assert snapshot(services) == before
    assert issued(services, confidential.id).live_access == 1
    assert_token_response(
        refresh(signed_in, body["refresh_token"], client_id=confidential.id,
                client_secret=confidential.secret)
    )  # fmt: skip


@pytest.mark.parametrize(
    "kind", ["access_token", "code"], ids=["6819-access-as-refresh", "6819-code-as-refresh"]
)
def test_other_credentials_are_not_refresh_tokens(
    signed_in: TestClient, services: Services, confidential: Client, kind: str
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge, resource=OPAQUE)
    value = code
    if kind == "access_token":
        value = _tokens(signed_in, confidential, OPAQUE)["access_token"]
    before = snapshot(services)
    resp = refresh(signed_in, value, client_id=confidential.id, client_secret=confidential.secret)
    assert_oauth_error(resp, 400, "invalid_grant")
    assert snapshot(services) == before


def test_client_secret_of_another_client_is_refused(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 6749 §2.3.1: a secret authenticates only the client it was issued to."""
    other = make_client(services, name="Other")
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    before = snapshot(services)
    resp = exchange_code(
        signed_in, code, client_id=confidential.id, client_secret=other.secret,
        verifier=pkce.verifier,
    )  # fmt: skip
    assert_oauth_error(resp, 401, "invalid_client")
    basic = exchange_code(
        signed_in, code, client_id=confidential.id, client_secret=other.secret,
        verifier=pkce.verifier, basic=True,
    )  # fmt: skip
    assert_oauth_error(basic, 401, "invalid_client")
    assert basic.headers["www-authenticate"].startswith("Basic")
    assert snapshot(services) == before


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_revoking_another_clients_token_revokes_nothing(
    signed_in: TestClient, services: Services, confidential: Client, which: str
) -> None:
    """RFC 7009 §2.1–2.2: 200 (the caller learns nothing), nothing revoked, audited."""
    other = make_client(services, name="Other")
    body = _tokens(signed_in, confidential)
    before = snapshot(services)
    resp = signed_in.post(
        "/oauth2/revoke", data={"token": body[which]}, auth=(other.id, other.secret or "")
    )
    assert resp.status_code == 200 and resp.content == b""
    assert snapshot(services) == before
    assert _events(services, "token.revocation_refused") == 1
    assert _introspect(signed_in, confidential, body["access_token"])["active"] is True
    assert_token_response(
        refresh(signed_in, body["refresh_token"], client_id=confidential.id,
                client_secret=confidential.secret)
    )  # fmt: skip


@pytest.mark.parametrize(
    "caller",
    ["other", "public", "anonymous"],
    ids=["7662-4-other", "7662-4-public", "7662-2.1-none"],
)
def test_introspecting_another_clients_token(
    signed_in: TestClient, services: Services, confidential: Client, public: Client, caller: str
) -> None:
    body = _tokens(signed_in, confidential)
    if caller == "other":
        other = make_client(services, name="Other")
        assert _introspect(signed_in, other, body["access_token"]) == {"active": False}
        assert _introspect(signed_in, other, body["refresh_token"]) == {"active": False}
        return
    data = {"token": body["access_token"]}
    if caller == "public":
        data["client_id"] = public.id
    resp = signed_in.post("/oauth2/introspect", data=data)
    assert_oauth_error(resp, 401, "invalid_client")


def test_withdrawing_an_app_only_touches_the_users_own_grants(
    client: TestClient, services: Services, confidential: Client, alice: Any, admin: Any
) -> None:
    """A user's DELETE /oauth2/tokens?client_id= revokes that user's grants, nobody else's."""
    login(client, admin.user.username, admin.password)
    admins = _tokens(client, confidential)
    client.cookies.clear()
    login(client, alice.user.username, alice.password)
    _tokens(client, confidential)
    resp = client.delete(
        f"/oauth2/tokens?client_id={confidential.id}", headers=session_csrf(client)
    )
    assert resp.status_code == 204, resp.text
    assert _introspect(client, confidential, admins["access_token"])["active"] is True
    assert issued(services, confidential.id).live_access == 1
