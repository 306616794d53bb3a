"""The management API under /api/v2: apps and secrets, users, API tokens, the audit log, auth.

Every test checks the body, the headers and what the database holds, not only the status.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import accounts
from authgate.core.context import SYSTEM
from authgate.core.models import AuditEvent, AuditQuery
from tests.clock import MovableClock
from tests.conftest import ISSUER, PASSWORD, Account, Client, make_client
from tests.flows import (
    REDIRECT_URI,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
    session_csrf,
)
from tests.http_types import Response

API = "/api/v2"
APPS = f"{API}/oauth2-provider/apps"
TOKENS = f"{API}/users/me/tokens"
OTHER_URI = "https://app.example.com/callback"


def bearer(account: Account | str) -> dict[str, str]:
    token = account if isinstance(account, str) else account.api_token
    return {"Authorization": f"Bearer {token}"}


def assert_problem(resp: Response, status: int, *, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    if field is not None:
        assert field in body["validations"], body
    return body


def audit_events(services: Services, action: str) -> list[AuditEvent]:
    events, _ = services.store.list_audit(AuditQuery(action=action, limit=200))
    return list(events)


def all_audit_text(services: Services) -> str:
    events, _ = services.store.list_audit(AuditQuery(limit=200))
    return json.dumps([e.details for e in events], default=str)


def create_app(client: TestClient, admin: Account, **body: Any) -> dict[str, Any]:
    payload = {"name": "Notes", "redirect_uris": [REDIRECT_URI], **body}
    resp = client.post(APPS, json=payload, headers=bearer(admin))
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def oauth_token(client: TestClient, account: Account, app: Client) -> str:
    """An OAuth access token for authgate's own API (no `resource`: the issuer audience)."""
    login(client, account.user.username, account.password)
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge)
    resp = exchange_code(
        client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
    )
    client.cookies.clear()
    token: str = assert_token_response(resp)["access_token"]
    return token


# Apps


def test_create_app_answers_coder_shape_and_stores_it(
    client: TestClient, admin: Account, services: Services
) -> None:
    body = create_app(
        client, admin, redirect_uris=[REDIRECT_URI, OTHER_URI], scope="read write", first_party=True
    )

    assert body["name"] == "Notes"
    assert body["callback_url"] == REDIRECT_URI
    assert body["redirect_uris"] == [REDIRECT_URI, OTHER_URI]
    assert body["client_type"] == "confidential"
    assert body["require_pkce"] is True
    assert body["token_endpoint_auth_method"] is None
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["scope"] == "read write"
    assert body["first_party"] is True
    assert body["dynamically_registered"] is False
    assert body["endpoints"] == {
        "authorization": f"{ISSUER}/oauth2/authorize",
        "token": f"{ISSUER}/oauth2/tokens",
        "token_revoke": f"{ISSUER}/oauth2/revoke",
        "device_authorization": "",
    }
    stored = services.store.get_app(body["id"])
    assert stored is not None
    assert stored.redirect_uris == (REDIRECT_URI, OTHER_URI)
    assert stored.first_party is True
    [event] = audit_events(services, "app.created")
    assert (event.actor_type, event.actor_id) == ("user", admin.user.id)
    assert event.target_id == body["id"]
    assert client.get(f"{APPS}/{body['id']}", headers=bearer(admin)).json() == body
    assert client.get(APPS, headers=bearer(admin)).json() == [body]


def test_public_app_is_pinned_to_none_and_pkce(client: TestClient, admin: Account) -> None:
    body = create_app(client, admin, client_type="public", redirect_uris=["cursor://cb"])
    assert body["client_type"] == "public"
    assert body["token_endpoint_auth_method"] == "none"
    assert body["require_pkce"] is True


def test_callback_url_alone_is_the_redirect_uri(
    client: TestClient, admin: Account, services: Services
) -> None:
    resp = client.post(
        APPS, json={"name": "Coder style", "callback_url": OTHER_URI}, headers=bearer(admin)
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["redirect_uris"] == [OTHER_URI]
    assert resp.json()["callback_url"] == OTHER_URI
    stored = services.store.get_app(resp.json()["id"])
    assert stored is not None and stored.redirect_uris == (OTHER_URI,)


def test_callback_url_equal_to_first_redirect_uri_is_accepted(
    client: TestClient, admin: Account
) -> None:
    body = create_app(
        client, admin, callback_url=REDIRECT_URI, redirect_uris=[REDIRECT_URI, OTHER_URI]
    )
    assert body["redirect_uris"] == [REDIRECT_URI, OTHER_URI]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"redirect_uris": [REDIRECT_URI]}, "name", id="name-missing"),
        pytest.param({"name": "  ", "redirect_uris": [REDIRECT_URI]}, "name", id="name-blank"),
        pytest.param({"name": "x" * 65, "redirect_uris": [REDIRECT_URI]}, "name", id="name-long"),
        pytest.param({"name": "A"}, "redirect_uris", id="no-redirect-uri"),
        pytest.param(
            {"name": "A", "redirect_uris": ["javascript:alert(1)"]},
            "redirect_uris",
            id="dangerous-scheme",
        ),
        pytest.param(
            {"name": "A", "redirect_uris": ["https://a.example/cb#frag"]},
            "redirect_uris",
            id="fragment",
        ),
        pytest.param(
            {"name": "A", "redirect_uris": [REDIRECT_URI], "callback_url": OTHER_URI},
            "callback_url",
            id="callback-url-mismatch",
        ),
        pytest.param(
            {"name": "A", "redirect_uris": [REDIRECT_URI], "client_type": "weird"},
            "client_type",
            id="client-type-unknown",
        ),
        pytest.param(
            {
                "name": "A",
                "redirect_uris": [REDIRECT_URI],
                "client_type": "public",
                "require_pkce": False,
            },
            "require_pkce",
            id="public-without-pkce",
        ),
        pytest.param(
            {"name": "A", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
            "token_endpoint_auth_method",
            id="confidential-with-none",
        ),
        pytest.param(
            {"name": "A", "redirect_uris": [REDIRECT_URI], "grant_types": ["password"]},
            "grant_types",
            id="grant-unsupported",
        ),
        pytest.param(
            {"name": "A", "redirect_uris": [REDIRECT_URI], "icon": "javascript:x"},
            "icon",
            id="icon-not-http",
        ),
        pytest.param(
            {"name": "A", "redirect_uris": "http://localhost/cb"},
            "redirect_uris",
            id="redirect-uris-not-a-list",
        ),
    ],
)
def test_invalid_app_is_a_400_problem_and_stores_nothing(
    client: TestClient, admin: Account, services: Services, body: dict[str, Any], field: str
) -> None:
    resp = client.post(APPS, json=body, headers=bearer(admin))

    assert_problem(resp, 400, field=field)
    assert services.store.list_apps() == []
    assert audit_events(services, "app.created") == []


def test_put_replaces_sent_fields_and_keeps_the_rest(
    client: TestClient, admin: Account, services: Services, clock: MovableClock
) -> None:
    app = create_app(client, admin, scope="read", first_party=True, icon="https://i.example/a.png")
    clock.advance(seconds=5)

    resp = client.put(
        f"{APPS}/{app['id']}",
        json={"name": "Renamed", "callback_url": OTHER_URI},
        headers=bearer(admin),
    )

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["name"] == "Renamed"
    assert body["redirect_uris"] == [OTHER_URI]
    assert (body["scope"], body["first_party"], body["icon"]) == (
        "read",
        True,
        "https://i.example/a.png",
    )
    assert body["created_at"] == app["created_at"]
    assert body["updated_at"] != app["updated_at"]
    stored = services.store.get_app(app["id"])
    assert stored is not None and stored.name == "Renamed" and stored.scope == "read"
    [event] = audit_events(services, "app.updated")
    assert event.actor_id == admin.user.id and event.details["name"] == "Renamed"


def test_put_cannot_change_client_type(
    client: TestClient, admin: Account, services: Services
) -> None:
    app = create_app(client, admin)
    resp = client.put(
        f"{APPS}/{app['id']}",
        json={"name": "Notes", "client_type": "public"},
        headers=bearer(admin),
    )
    assert_problem(resp, 400, field="client_type")
    stored = services.store.get_app(app["id"])
    assert stored is not None and stored.client_type == "confidential"
    assert audit_events(services, "app.updated") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("PUT", "/nope"),
        ("DELETE", "/nope"),
        ("GET", "/nope/secrets"),
        ("POST", "/nope/secrets"),
        ("DELETE", "/nope/secrets/also-nope"),
    ],
)
def test_unknown_app_is_404(client: TestClient, admin: Account, method: str, path: str) -> None:
    body = {"name": "x", "redirect_uris": [REDIRECT_URI]} if method == "PUT" else None
    resp = client.request(method, APPS + path, json=body, headers=bearer(admin))
    assert_problem(resp, 404)


def test_delete_app(client: TestClient, admin: Account, services: Services) -> None:
    app = create_app(client, admin)

    resp = client.delete(f"{APPS}/{app['id']}", headers=bearer(admin))

    assert resp.status_code == 204 and resp.content == b""
    assert services.store.get_app(app["id"]) is None
    assert_problem(client.get(f"{APPS}/{app['id']}", headers=bearer(admin)), 404)
    assert_problem(client.delete(f"{APPS}/{app['id']}", headers=bearer(admin)), 404)
    [event] = audit_events(services, "app.deleted")
    assert (event.actor_id, event.target_id) == (admin.user.id, app["id"])


# Secrets


def test_secret_is_shown_once_then_only_its_last_six_characters(
    client: TestClient, admin: Account, services: Services
) -> None:
    app = create_app(client, admin)

    resp = client.post(f"{APPS}/{app['id']}/secrets", headers=bearer(admin))

    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    created = resp.json()
    assert set(created) == {"id", "client_secret_full"}
    full = created["client_secret_full"]
    assert full.startswith("agcs_")
    listing = client.get(f"{APPS}/{app['id']}/secrets", headers=bearer(admin))
    assert listing.status_code == 200
    assert "no-store" not in listing.headers.get("cache-control", "")
    assert listing.json() == [
        {"id": created["id"], "last_used_at": None, "client_secret_truncated": full[-6:]}
    ]
    assert full not in listing.text
    [stored] = services.store.list_secrets(app["id"])
    assert stored.display_secret == full[-6:] and full not in stored.secret_hash
    [event] = audit_events(services, "secret.created")
    assert (event.actor_id, event.target_id) == (admin.user.id, created["id"])
    assert event.details["app_id"] == app["id"]
    assert full not in all_audit_text(services)


def test_delete_secret(client: TestClient, admin: Account, services: Services) -> None:
    app = create_app(client, admin)
    first = client.post(f"{APPS}/{app['id']}/secrets", headers=bearer(admin)).json()
    second = client.post(f"{APPS}/{app['id']}/secrets", headers=bearer(admin)).json()

    resp = client.delete(f"{APPS}/{app['id']}/secrets/{first['id']}", headers=bearer(admin))

    assert resp.status_code == 204 and resp.content == b""
    listing = client.get(f"{APPS}/{app['id']}/secrets", headers=bearer(admin)).json()
    assert [s["id"] for s in listing] == [second["id"]]
    assert [s.id for s in services.store.list_secrets(app["id"])] == [second["id"]]
    again = client.delete(f"{APPS}/{app['id']}/secrets/{first['id']}", headers=bearer(admin))
    assert_problem(again, 404)
    [event] = audit_events(services, "secret.deleted")
    assert (event.actor_id, event.target_id) == (admin.user.id, first["id"])
    text = all_audit_text(services)
    assert first["client_secret_full"] not in text and second["client_secret_full"] not in text


def test_secret_of_another_app_is_404(
    client: TestClient, admin: Account, services: Services
) -> None:
    one, other = create_app(client, admin), create_app(client, admin, name="Other")
    secret = client.post(f"{APPS}/{one['id']}/secrets", headers=bearer(admin)).json()
    resp = client.delete(f"{APPS}/{other['id']}/secrets/{secret['id']}", headers=bearer(admin))
    assert_problem(resp, 404)
    assert len(services.store.list_secrets(one["id"])) == 1


def test_public_app_has_no_secrets(client: TestClient, admin: Account, services: Services) -> None:
    app = create_app(client, admin, client_type="public")
    assert_problem(client.post(f"{APPS}/{app['id']}/secrets", headers=bearer(admin)), 400)
    assert services.store.list_secrets(app["id"]) == []


# Authentication and authorization

ADMIN_ONLY = [
    ("GET", APPS),
    ("POST", APPS),
    ("GET", f"{APPS}/some-app"),
    ("PUT", f"{APPS}/some-app"),
    ("DELETE", f"{APPS}/some-app"),
    ("GET", f"{APPS}/some-app/secrets"),
    ("POST", f"{APPS}/some-app/secrets"),
    ("DELETE", f"{APPS}/some-app/secrets/s"),
    ("GET", f"{API}/users"),
    ("POST", f"{API}/users"),
    ("GET", f"{API}/users/someone"),
    ("PATCH", f"{API}/users/someone"),
    ("GET", f"{API}/audit"),
]
ANY_USER = [
    ("GET", f"{API}/users/me"),
    ("GET", f"{API}/users/me/apps"),
    ("DELETE", f"{API}/users/me/apps/some-app"),
    ("GET", TOKENS),
    ("POST", TOKENS),
    ("DELETE", f"{TOKENS}/t"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_admin_endpoints_refuse_a_user(
    client: TestClient, alice: Account, services: Services, method: str, path: str
) -> None:
    body = {"name": "x", "redirect_uris": [REDIRECT_URI]} if method in ("POST", "PUT") else None
    resp = client.request(method, path, json=body, headers=bearer(alice))
    problem = assert_problem(resp, 403)
    assert "administrator" in problem["detail"]
    assert services.store.list_apps() == []


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY + ANY_USER)
def test_every_endpoint_needs_credentials(client: TestClient, method: str, path: str) -> None:
    resp = client.request(method, path)
    assert_problem(resp, 401)
    assert resp.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{ISSUER}/.well-known/oauth-protected-resource"'
    )


@pytest.mark.parametrize(
    "authorization",
    ["Bearer agpat_nottoken", "Basic YTpi", "Bearer ", "Bearer agat_0123456789_" + "a" * 46],
)
def test_bad_credentials_are_401(client: TestClient, authorization: str) -> None:
    resp = client.get(f"{API}/users/me", headers={"Authorization": authorization})
    assert_problem(resp, 401)
    assert "resource_metadata" in resp.headers["www-authenticate"]


def test_browser_session_authenticates(signed_in: TestClient, alice: Account) -> None:
    resp = signed_in.get(f"{API}/users/me")
    assert resp.status_code == 200
    assert resp.json()["id"] == alice.user.id


def test_oauth_token_of_an_admin_without_admin_scope_is_not_admin(
    client: TestClient, admin: Account, services: Services
) -> None:
    token = oauth_token(client, admin, make_client(services))
    assert client.get(f"{API}/users/me", headers=bearer(token)).json()["id"] == admin.user.id
    denied = client.get(APPS, headers=bearer(token))
    assert_problem(denied, 403)
    # RFC 6750 §3.1 + RFC 9728 §5.1: say which scope is missing and where to learn more.
    assert denied.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="admin", '
        'resource_metadata="http://testserver/.well-known/oauth-protected-resource"'
    )
    # An admin's personal API token is not an OAuth token: plain 403 without a challenge.
    assert "www-authenticate" not in client.get(APPS, headers=bearer(admin)).headers


# Users


def test_users_me(client: TestClient, alice: Account) -> None:
    resp = client.get(f"{API}/users/me", headers=bearer(alice))
    assert resp.status_code == 200
    body = resp.json()
    assert body == {
        "id": alice.user.id,
        "username": "alice",
        "email": "",
        "email_verified": False,
        "name": "",
        "is_admin": False,
        "disabled": False,
        "created_at": body["created_at"],
    }
    assert "password" not in resp.text


def test_only_an_address_can_be_verified(
    client: TestClient, admin: Account, alice: Account, services: Services
) -> None:
    body = {"username": "nomail", "password": "hunter2hunter2", "email_verified": True}
    made = client.post(f"{API}/users", json=body, headers=bearer(admin))
    assert_problem(made, 400)
    assert "email_verified" in made.json()["validations"]
    assert services.store.get_user_by_username("nomail") is None
    patched = client.patch(
        f"{API}/users/{alice.user.id}", json={"email_verified": True}, headers=bearer(admin)
    )
    assert_problem(patched, 400)
    cleared = client.patch(
        f"{API}/users/{alice.user.id}",
        json={"email": "", "email_verified": True},
        headers=bearer(admin),
    )
    assert_problem(cleared, 400)
    found = services.store.get_user(alice.user.id)
    assert found is not None and not found.email_verified
    both = client.patch(
        f"{API}/users/{alice.user.id}",
        json={"email": "alice@example.com", "email_verified": True},
        headers=bearer(admin),
    )
    assert both.status_code == 200 and both.json()["email_verified"] is True


def test_admin_creates_lists_and_reads_users(
    client: TestClient, admin: Account, services: Services
) -> None:
    resp = client.post(
        f"{API}/users",
        json={
            "username": "Bob",
            "password": "hunter2hunter2",
            "email": "bob@example.com",
            "name": "Bob B",
            "is_admin": True,
        },
        headers=bearer(admin),
    )

    assert resp.status_code == 201, resp.text
    bob = resp.json()
    assert (bob["username"], bob["email"], bob["name"], bob["is_admin"]) == (
        "bob",
        "bob@example.com",
        "Bob B",
        True,
    )
    assert "hunter2hunter2" not in resp.text and "password" not in bob
    stored = services.store.get_user(bob["id"])
    assert stored is not None and stored.password_hash and "hunter2" not in stored.password_hash
    assert accounts.sign_in(services.ctx, SYSTEM, "bob", "hunter2hunter2") is not None
    listing = client.get(f"{API}/users", headers=bearer(admin)).json()
    assert {u["username"] for u in listing} == {"admin", "bob"}
    assert client.get(f"{API}/users/{bob['id']}", headers=bearer(admin)).json() == bob
    assert client.get(f"{API}/users/bob", headers=bearer(admin)).json() == bob
    [event] = [e for e in audit_events(services, "user.created") if e.target_id == bob["id"]]
    assert event.actor_id == admin.user.id
    assert "hunter2hunter2" not in all_audit_text(services)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"username": "admin", "password": "long enough"}, 409, None),
        ({"username": "no spaces", "password": "long enough"}, 400, "username"),
        ({"username": "carol", "password": "short"}, 400, "password"),
        ({"username": "carol"}, 400, "password"),
    ],
)
def test_invalid_user_is_refused(
    client: TestClient,
    admin: Account,
    services: Services,
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    resp = client.post(f"{API}/users", json=body, headers=bearer(admin))
    assert_problem(resp, status, field=field)
    assert [u.username for u in services.store.list_users()] == ["admin"]


def test_unknown_user_is_404(client: TestClient, admin: Account) -> None:
    assert_problem(client.get(f"{API}/users/nobody", headers=bearer(admin)), 404)
    resp = client.patch(f"{API}/users/nobody", json={"name": "x"}, headers=bearer(admin))
    assert_problem(resp, 404)


def test_patch_disables_a_user_and_their_token_stops_working(
    client: TestClient, admin: Account, alice: Account, services: Services
) -> None:
    resp = client.patch(
        f"{API}/users/{alice.user.id}",
        json={"disabled": True, "name": "Alice"},
        headers=bearer(admin),
    )

    assert resp.status_code == 200, resp.text
    assert resp.json()["disabled"] is True and resp.json()["name"] == "Alice"
    stored = services.store.get_user(alice.user.id)
    assert stored is not None and stored.disabled and not stored.is_admin
    assert_problem(client.get(f"{API}/users/me", headers=bearer(alice)), 401)
    [event] = audit_events(services, "user.updated")
    assert event.details["fields"] == ["disabled", "name"]


def test_patch_password_and_admin(
    client: TestClient, admin: Account, alice: Account, services: Services
) -> None:
    resp = client.patch(
        f"{API}/users/alice",
        json={"password": "a new password", "is_admin": True},
        headers=bearer(admin),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["is_admin"] is True
    assert accounts.sign_in(services.ctx, SYSTEM, "alice", "a new password") is not None
    assert accounts.sign_in(services.ctx, SYSTEM, "alice", PASSWORD) is None
    assert client.get(APPS, headers=bearer(alice)).status_code == 200
    assert "a new password" not in all_audit_text(services)


@pytest.mark.parametrize(
    ("body", "field"), [({"disabled": True}, "disabled"), ({"is_admin": False}, "is_admin")]
)
def test_admin_cannot_lock_themself_out(
    client: TestClient, admin: Account, services: Services, body: dict[str, Any], field: str
) -> None:
    resp = client.patch(f"{API}/users/{admin.user.id}", json=body, headers=bearer(admin))
    assert_problem(resp, 400, field=field)
    stored = services.store.get_user(admin.user.id)
    assert stored is not None and stored.is_admin and not stored.disabled
    assert audit_events(services, "user.updated") == []


# Personal API tokens


def test_create_list_use_and_delete_api_token(
    client: TestClient, alice: Account, services: Services, clock: MovableClock
) -> None:
    resp = client.post(
        TOKENS, json={"name": "laptop", "lifetime_seconds": 3600}, headers=bearer(alice)
    )

    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    created = resp.json()
    token = created["token"]
    assert token.startswith(f"agpat_{created['prefix']}_")
    assert created["name"] == "laptop"
    assert created["expires_at"] is not None
    stored = {t.id: t for t in services.store.list_api_tokens(alice.user.id)}[created["id"]]
    assert stored.expires_at == clock.now() + timedelta(hours=1)
    assert token not in stored.token_hash
    assert client.get(f"{API}/users/me", headers=bearer(token)).json()["id"] == alice.user.id
    listing = client.get(TOKENS, headers=bearer(alice))
    assert token not in listing.text
    assert {t["name"] for t in listing.json()} == {"tests", "laptop"}
    assert all(
        set(t) == {"id", "name", "prefix", "created_at", "expires_at", "last_used_at"}
        for t in listing.json()
    )
    assert token not in all_audit_text(services)

    deleted = client.delete(f"{TOKENS}/{created['id']}", headers=bearer(alice))

    assert deleted.status_code == 204
    assert_problem(client.get(f"{API}/users/me", headers=bearer(token)), 401)
    assert created["id"] not in {t.id for t in services.store.list_api_tokens(alice.user.id)}
    [event] = audit_events(services, "api_token.deleted")
    assert (event.actor_id, event.target_id) == (alice.user.id, created["id"])


def test_api_token_expires(client: TestClient, alice: Account, clock: MovableClock) -> None:
    token = client.post(
        TOKENS, json={"name": "short", "lifetime_seconds": 60}, headers=bearer(alice)
    ).json()["token"]
    clock.advance(seconds=61)
    assert_problem(client.get(f"{API}/users/me", headers=bearer(token)), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "lifetime_seconds": 5}, "lifetime_seconds"),
        ({}, "name"),
    ],
)
def test_invalid_api_token_request(
    client: TestClient, alice: Account, services: Services, body: dict[str, Any], field: str
) -> None:
    assert_problem(client.post(TOKENS, json=body, headers=bearer(alice)), 400, field=field)
    assert len(services.store.list_api_tokens(alice.user.id)) == 1


def test_cannot_delete_another_users_token(
    client: TestClient, admin: Account, alice: Account, services: Services
) -> None:
    [admins] = services.store.list_api_tokens(admin.user.id)
    assert_problem(client.delete(f"{TOKENS}/{admins.id}", headers=bearer(alice)), 404)
    assert len(services.store.list_api_tokens(admin.user.id)) == 1


def test_session_may_mint_api_token(
    signed_in: TestClient, alice: Account, services: Services
) -> None:
    forged = signed_in.post(TOKENS, json={"name": "from another site"})
    assert_problem(forged, 403)
    assert len(services.store.list_api_tokens(alice.user.id)) == 1
    resp = signed_in.post(TOKENS, json={"name": "from browser"}, headers=session_csrf(signed_in))
    assert resp.status_code == 201, resp.text
    assert len(services.store.list_api_tokens(alice.user.id)) == 2


def test_oauth_token_may_not_manage_api_tokens(
    client: TestClient, alice: Account, services: Services
) -> None:
    token = oauth_token(client, alice, make_client(services))

    problem = assert_problem(client.post(TOKENS, json={"name": "x"}, headers=bearer(token)), 403)

    assert "API token" in problem["detail"]
    assert_problem(client.get(TOKENS, headers=bearer(token)), 403)
    assert len(services.store.list_api_tokens(alice.user.id)) == 1


# A user's authorized apps


def test_authorized_apps_listed_and_withdrawn(
    client: TestClient, admin: Account, alice: Account, services: Services
) -> None:
    app = make_client(services)
    make_client(services, name="Never used")
    oauth_token(client, alice, app)

    mine = client.get(f"{API}/users/me/apps", headers=bearer(alice))
    assert mine.status_code == 200
    assert [a["id"] for a in mine.json()] == [app.id]
    assert mine.json()[0]["name"] == "Test app"
    by_query = client.get(APPS, params={"user_id": alice.user.id}, headers=bearer(alice))
    assert by_query.json() == mine.json()
    by_admin = client.get(APPS, params={"user_id": alice.user.id}, headers=bearer(admin))
    assert by_admin.json() == mine.json()
    assert client.get(f"{API}/users/me/apps", headers=bearer(admin)).json() == []

    resp = client.delete(f"{API}/users/me/apps/{app.id}", headers=bearer(alice))

    assert resp.status_code == 204
    assert client.get(f"{API}/users/me/apps", headers=bearer(alice)).json() == []
    assert services.store.list_apps_authorized_by(alice.user.id, services.ctx.clock.now()) == []
    [event] = audit_events(services, "grant.revoked")
    assert (event.actor_id, event.target_id) == (alice.user.id, app.id)
    assert event.details["grants"] == 1


def test_user_may_not_list_another_users_apps(
    client: TestClient, admin: Account, alice: Account
) -> None:
    resp = client.get(APPS, params={"user_id": admin.user.id}, headers=bearer(alice))
    assert_problem(resp, 403)
    assert_problem(client.get(APPS, params={"user_id": "ghost"}, headers=bearer(admin)), 404)


def test_withdraw_unknown_app_is_404(
    client: TestClient, alice: Account, services: Services
) -> None:
    assert_problem(client.delete(f"{API}/users/me/apps/nope", headers=bearer(alice)), 404)
    assert audit_events(services, "grant.revoked") == []


# Audit log


def test_audit_filters_and_pages(
    client: TestClient, admin: Account, services: Services, clock: MovableClock
) -> None:
    start = clock.now()
    ids = []
    for n in range(5):
        clock.advance(seconds=10)
        ids.append(create_app(client, admin, name=f"App {n}")["id"])

    def page(**params: Any) -> dict[str, Any]:
        resp = client.get(f"{API}/audit", params=params, headers=bearer(admin))
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    first = page(action="app.created", limit=2)
    assert first["count"] == 5
    assert [e["target_id"] for e in first["events"]] == [ids[4], ids[3]]
    rest = (
        page(action="app.created", limit=2, offset=2)["events"]
        + page(action="app.created", limit=2, offset=4)["events"]
    )
    assert [e["target_id"] for e in rest] == [ids[2], ids[1], ids[0]]
    event = first["events"][0]
    assert (event["action"], event["actor_type"], event["actor_id"]) == (
        "app.created",
        "user",
        admin.user.id,
    )
    assert event["details"]["name"] == "App 4"

    since = start + timedelta(seconds=30)  # the third app, inclusive
    until = start + timedelta(seconds=50)  # the fifth app, exclusive
    window = page(action="app.created", since=since.isoformat(), until=until.isoformat())
    assert [e["target_id"] for e in window["events"]] == [ids[3], ids[2]]
    naive = page(action="app.created", since=since.replace(tzinfo=None).isoformat())
    assert naive["count"] == 3
    assert page(target_id=ids[1])["count"] == 1
    assert page(actor_id=admin.user.id)["count"] == 5
    assert page(actor_id="nobody") == {"events": [], "count": 0}
    everything = page(limit=200)
    assert everything["count"] == len(everything["events"])
    # The admin made the 5 apps; the system did the set-up (the fixture's user and token, the
    # own API resource, the fixtures' resources, the first signing key).
    by_admin = [e for e in everything["events"] if e["actor_id"] == admin.user.id]
    assert [e["action"] for e in by_admin] == ["app.created"] * 5
    by_system = {e["action"] for e in everything["events"] if e["actor_type"] == "system"}
    assert {"user.created", "api_token.created", "resource.created"} <= by_system


@pytest.mark.parametrize(
    "params",
    [
        # Before year 1 once in UTC, and after year 9999: the edges of time, not a 503.
        {"since": "0001-01-01T00:00:00+05:00"},
        {"until": "9999-12-31T23:59:59-05:00"},
        {"since": "0001-01-01T00:00:00", "until": "9999-12-31T23:59:59.999999"},
    ],
)
def test_audit_times_at_the_edges_of_the_calendar(
    client: TestClient, admin: Account, params: dict[str, Any]
) -> None:
    everything = client.get(f"{API}/audit", headers=bearer(admin))
    resp = client.get(f"{API}/audit", params=params, headers=bearer(admin))
    assert resp.status_code == 200, resp.text
    assert resp.json()["count"] == everything.json()["count"] > 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"offset": -1}, "offset"),
        # Found by the fuzzer: past a 64-bit integer the database refused it with a 500.
        ({"offset": 1783671600374095640721883136}, "offset"),
        ({"offset": 1_000_000_001}, "offset"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_audit_rejects_bad_query(
    client: TestClient, admin: Account, params: dict[str, Any], field: str
) -> None:
    resp = client.get(f"{API}/audit", params=params, headers=bearer(admin))
    assert_problem(resp, 400, field=field)


# OpenAPI


def test_openapi_lists_the_management_api(client: TestClient) -> None:
    resp = client.get(f"{API}/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    paths = doc["paths"]
    expected = {
        f"{APPS}": {"get", "post"},
        f"{APPS}/{{app}}": {"get", "put", "delete"},
        f"{APPS}/{{app}}/secrets": {"get", "post"},
        f"{APPS}/{{app}}/secrets/{{secret_id}}": {"delete"},
        f"{API}/users": {"get", "post"},
        f"{API}/users/me": {"get"},
        f"{API}/users/{{user}}": {"get", "patch"},
        TOKENS: {"get", "post"},
        f"{TOKENS}/{{token_id}}": {"delete"},
        f"{API}/users/me/apps": {"get"},
        f"{API}/users/me/apps/{{app}}": {"delete"},
        f"{API}/audit": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    create = paths[APPS]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/AppIn")
    assert "201" in create["responses"]
    assert "application/problem+json" in create["responses"]["400"]["content"]
    assert {"bearer", "session"} <= set(doc["components"]["securitySchemes"])
    assert "client_secret_full" in doc["components"]["schemas"]["SecretCreated"]["properties"]
    assert set(doc["components"]["schemas"]["SecretOut"]["properties"]) == {
        "id",
        "last_used_at",
        "client_secret_truncated",
    }
