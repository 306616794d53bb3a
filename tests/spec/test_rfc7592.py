"""RFC 7592 client configuration: GET/PUT/DELETE /oauth2/clients/{client_id} with the
registration access token, in the Authorization header only.

Every authentication failure — no token, a wrong one, an unknown client, an app an operator
created — is the same 401 ``invalid_token``, so the endpoint does not reveal which clients exist.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import SYSTEM
from authgate.core.registration_settings import SettingsChange
from tests.conftest import ISSUER, Client, grant_access, issued
from tests.flows import (
    REDIRECT_URI,
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    token_request,
)
from tests.http_types import Response
from tests.spec.test_rfc7591 import WEB_URI, events, registered

CLIENTS = "/oauth2/clients"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def dynamic(client: TestClient) -> dict[str, Any]:
    """A confidential client registered with some optional metadata."""
    return registered(
        client,
        {
            "client_name": "Dynamic client",
            "redirect_uris": [REDIRECT_URI],
            "client_uri": "https://client.example.com",
            "scope": "read",
        },
    )


@pytest.fixture
def public_dynamic(client: TestClient) -> dict[str, Any]:
    return registered(
        client,
        {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
    )


def url(body: dict[str, Any]) -> str:
    return f"{CLIENTS}/{body['client_id']}"


def assert_invalid_token(resp: Response) -> dict[str, Any]:
    body = assert_oauth_error(resp, 401, "invalid_token")
    assert resp.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    return body


def test_2_1_read(client: TestClient, dynamic: dict[str, Any]) -> None:
    resp = client.get(url(dynamic), headers=bearer(dynamic["registration_access_token"]))
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["access-control-allow-origin"] == "*"
    expected = {
        k: v
        for k, v in dynamic.items()
        if k not in ("client_secret", "client_secret_expires_at", "registration_access_token")
    }
    assert resp.json() == expected
    assert dynamic["registration_client_uri"] == f"http://testserver{url(dynamic)}"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="2-missing"),
        pytest.param({"Authorization": "Bearer"}, id="2-empty"),
        pytest.param({"Authorization": "Bearer not-a-token"}, id="2-malformed"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="2-basic"),
        pytest.param({"Authorization": "Bearer agrat_aaaaaaaaaa_" + "A" * 46}, id="2-bad-checksum"),
    ],
)
def test_2_refused_without_a_valid_token(
    client: TestClient, services: Services, dynamic: dict[str, Any], headers: dict[str, str]
) -> None:
    for method in ("GET", "DELETE"):
        assert_invalid_token(client.request(method, url(dynamic), headers=headers))
    put = client.put(url(dynamic), headers=headers, json={"client_id": dynamic["client_id"]})
    assert_invalid_token(put)
    assert services.store.get_app(dynamic["client_id"]) is not None


def test_2_another_clients_token_is_refused(
    client: TestClient, services: Services, dynamic: dict[str, Any], public_dynamic: dict[str, Any]
) -> None:
    other = bearer(public_dynamic["registration_access_token"])
    assert_invalid_token(client.get(url(dynamic), headers=other))
    assert_invalid_token(client.delete(url(dynamic), headers=other))
    assert services.store.get_app(dynamic["client_id"]) is not None


def test_unknown_and_operator_apps_look_alike(
    client: TestClient, dynamic: dict[str, Any], confidential: Client
) -> None:
    """No enumeration: an unknown client_id and an operator-created app (which has no
    registration access token) answer exactly like a wrong token."""
    token = bearer(dynamic["registration_access_token"])
    wrong = assert_invalid_token(client.get(url(dynamic), headers=bearer("agrat_x")))
    unknown = assert_invalid_token(client.get(f"{CLIENTS}/{uuid.uuid4()}", headers=token))
    operator = assert_invalid_token(client.get(f"{CLIENTS}/{confidential.id}", headers=token))
    assert wrong == unknown == operator
    assert_invalid_token(client.delete(f"{CLIENTS}/{confidential.id}", headers=token))
    assert_invalid_token(client.get(f"{CLIENTS}/{'x' * 300}", headers=token))


def test_query_string_token_is_refused(
    client: TestClient, services: Services, dynamic: dict[str, Any]
) -> None:
    """DESIGN.md §7: header only (RFC 6750 §2.3 would allow it; URLs end up in logs)."""
    token = dynamic["registration_access_token"]
    for method in ("GET", "DELETE"):
        resp = client.request(method, f"{url(dynamic)}?access_token={token}", headers=bearer(token))
        assert_oauth_error(resp, 400, "invalid_request", "Authorization header")
    assert services.store.get_app(dynamic["client_id"]) is not None


def test_2_2_update_replaces_the_metadata(
    client: TestClient, services: Services, dynamic: dict[str, Any]
) -> None:
    token = dynamic["registration_access_token"]
    new_uris = [WEB_URI, "https://client.example.com/second"]
    resp = client.put(
        url(dynamic),
        headers=bearer(token),
        json={
            "client_id": dynamic["client_id"],
            "client_name": "Renamed",
            "redirect_uris": new_uris,
            "grant_types": ["authorization_code"],
            # Fields the client must not send are ignored.
            "registration_access_token": "agrat_ignored",
            "client_id_issued_at": 1,
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["client_name"] == "Renamed"
    assert body["redirect_uris"] == new_uris
    assert body["grant_types"] == ["authorization_code"]
    assert body["client_id_issued_at"] == dynamic["client_id_issued_at"]
    # RFC 7592 §2.2: omitted fields are removed (client_uri, scope).
    assert "client_uri" not in body and "scope" not in body
    assert "client_secret" not in body and "registration_access_token" not in body
    app = services.store.get_app(dynamic["client_id"])
    assert app is not None
    assert app.name == "Renamed" and app.redirect_uris == tuple(new_uris)
    assert app.client_uri == "" and app.scope is None and app.dynamically_registered
    # The registration access token is kept, and the secret still works.
    assert client.get(url(dynamic), headers=bearer(token)).status_code == 200
    [event] = events(services, "client.updated")
    assert event.target_id == dynamic["client_id"]
    assert event.details["redirect_uris"] == new_uris


def test_2_2_switch_between_secret_methods(
    client: TestClient, services: Services, dynamic: dict[str, Any]
) -> None:
    resp = client.put(
        url(dynamic),
        headers=bearer(dynamic["registration_access_token"]),
        json={
            "client_id": dynamic["client_id"],
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "client_secret": dynamic["client_secret"],  # §2.2: may be sent; must match
        },
    )
    assert resp.status_code == 200, resp.text
    client_id, secret = dynamic["client_id"], dynamic["client_secret"]
    grant_access(services, client_id, {ISSUER: []})  # an operator's grant
    basic = token_request(client, {"grant_type": "client_credentials"}, basic=(client_id, secret))
    assert_oauth_error(basic, 401, "invalid_client")
    post = token_request(
        client,
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert_token_response(post)


def put_error(
    client: TestClient, services: Services, target: dict[str, Any], body: dict[str, Any]
) -> Response:
    before = services.store.get_app(target["client_id"])
    resp = client.put(url(target), headers=bearer(target["registration_access_token"]), json=body)
    assert services.store.get_app(target["client_id"]) == before
    assert events(services, "client.updated") == []
    return resp


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        pytest.param({"client_id": None}, "invalid_client_metadata", id="2.2-client_id-missing"),
        pytest.param({"client_id": "other"}, "invalid_client_metadata", id="2.2-client_id-other"),
        pytest.param(
            {"client_secret": "agcs_wrong"}, "invalid_client_metadata", id="2.2-secret-mismatch"
        ),
        pytest.param(
            {"token_endpoint_auth_method": "none"},
            "invalid_client_metadata",
            id="2.2-confidential-to-public",
        ),
        pytest.param(
            {"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://c.example/k"},
            "invalid_client_metadata",
            id="2.2-secret-to-private_key_jwt",
        ),
        pytest.param(
            {"redirect_uris": ["http://evil.example.com/cb"]},
            "invalid_redirect_uri",
            id="2.2-invalid-redirect",
        ),
        pytest.param(
            {"software_statement": "x.y.z"}, "unapproved_software_statement", id="2.2-statement"
        ),
    ],
)
def test_2_2_update_errors_change_nothing(
    client: TestClient,
    services: Services,
    dynamic: dict[str, Any],
    changes: dict[str, Any],
    error: str,
) -> None:
    body = {"client_id": dynamic["client_id"], "redirect_uris": [REDIRECT_URI], **changes}
    body = {k: v for k, v in body.items() if v is not None}
    assert_oauth_error(put_error(client, services, dynamic, body), 400, error)


def test_2_2_public_client_cannot_become_confidential(
    client: TestClient, services: Services, public_dynamic: dict[str, Any]
) -> None:
    body = {
        "client_id": public_dynamic["client_id"],
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    resp = put_error(client, services, public_dynamic, body)
    assert_oauth_error(resp, 400, "invalid_client_metadata", "cannot change")


def test_2_2_update_needs_json(
    client: TestClient, services: Services, dynamic: dict[str, Any]
) -> None:
    before = services.store.get_app(dynamic["client_id"])
    resp = client.put(
        url(dynamic),
        headers={**bearer(dynamic["registration_access_token"]), "Content-Type": "text/plain"},
        content=b"client_id=x",
    )
    assert_oauth_error(resp, 400, "invalid_client_metadata")
    assert services.store.get_app(dynamic["client_id"]) == before


def test_2_3_delete_cascades(
    signed_in: TestClient, services: Services, public_dynamic: dict[str, Any]
) -> None:
    client_id = public_dynamic["client_id"]
    pkce = generate_pkce()
    code = authorize(signed_in, client_id, challenge=pkce.challenge)
    tokens = assert_token_response(
        exchange_code(
            signed_in, code, client_id=client_id, client_secret=None, verifier=pkce.verifier
        )
    )
    assert issued(services, client_id).access == 1
    token = public_dynamic["registration_access_token"]

    resp = signed_in.delete(url(public_dynamic), headers=bearer(token))
    assert resp.status_code == 204 and resp.content == b""
    assert services.store.get_app(client_id) is None
    assert issued(services, client_id).access == 0 and issued(services, client_id).grants == 0
    [event] = events(services, "client.deleted")
    assert event.target_id == client_id and event.actor_id == client_id
    # Gone: the token no longer works, nor does the refresh token.
    assert_invalid_token(signed_in.get(url(public_dynamic), headers=bearer(token)))
    assert_invalid_token(signed_in.delete(url(public_dynamic), headers=bearer(token)))
    refreshed = token_request(
        signed_in,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
    )
    assert_oauth_error(refreshed, 401, "invalid_client")


def test_works_while_registration_is_disabled(
    client: TestClient, services: Services, dynamic: dict[str, Any]
) -> None:
    runtime_settings.update(services.ctx, SYSTEM, SettingsChange(enabled=False))
    refused = client.post("/oauth2/register", json={"redirect_uris": [WEB_URI]})
    assert_oauth_error(refused, 403, "access_denied")
    token = bearer(dynamic["registration_access_token"])
    assert client.get(url(dynamic), headers=token).status_code == 200
    updated = client.put(
        url(dynamic),
        headers=token,
        json={"client_id": dynamic["client_id"], "redirect_uris": [WEB_URI]},
    )
    assert updated.status_code == 200, updated.text
    assert client.delete(url(dynamic), headers=token).status_code == 204
    assert services.store.get_app(dynamic["client_id"]) is None


def test_cors_preflight_allows_put_and_delete(client: TestClient, dynamic: dict[str, Any]) -> None:
    resp = client.options(
        url(dynamic),
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
    )
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == "*"
    methods = {m.strip() for m in resp.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "PUT", "DELETE"} <= methods
    assert "Authorization" in resp.headers["access-control-allow-headers"]
