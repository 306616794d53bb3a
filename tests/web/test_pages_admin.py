"""The admin console at the HTTP level: who may see it, CSRF on every form, the same audit
events as the management API, secrets and passwords shown once with ``no-store``, escaping."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.models import AuditEvent, AuditQuery
from tests.conftest import ISSUER, PASSWORD, Account, Client, make_client
from tests.flows import assert_token_response, csrf_from, login

GET_PAGES = [
    "/admin",
    "/admin/apps",
    "/admin/apps/new",
    "/admin/users",
    "/admin/upstream",
    "/admin/resources",
    "/admin/keys",
    "/admin/settings",
    "/admin/audit",
    "/admin/profiles",
    "/admin/test-client",
]


@pytest.fixture
def admin_in(client: TestClient, admin: Account) -> TestClient:
    login(client, "admin", PASSWORD)
    return client


def token(client: TestClient) -> str:
    return csrf_from(client.get("/admin/users"))


def events(services: Services, action: str) -> list[AuditEvent]:
    found, _ = services.store.list_audit(AuditQuery(action=action))
    return list(found)


def post_paths(services: Services, app: Client, alice: Account) -> list[str]:
    secret = services.store.list_secrets(app.id)[0].id
    resource = services.store.list_resources()[-1].id
    return [
        "/admin/apps/new",
        f"/admin/apps/{app.id}",
        f"/admin/apps/{app.id}/secrets",
        f"/admin/apps/{app.id}/secrets/{secret}/delete",
        f"/admin/apps/{app.id}/delete",
        "/admin/users",
        f"/admin/users/{alice.user.id}/disable",
        f"/admin/users/{alice.user.id}/enable",
        f"/admin/users/{alice.user.id}/password",
        f"/admin/users/{alice.user.id}/email",
        "/admin/upstream",
        "/admin/resources",
        f"/admin/resources/{resource}",
        f"/admin/resources/{resource}/delete",
        "/admin/keys/rotate",
        "/admin/settings",
        "/admin/profiles",
        "/admin/profiles/cursor/pin",
        "/admin/profiles/cursor/delete",
        "/admin/test-client",
    ]


@pytest.mark.parametrize("path", GET_PAGES)
def test_admin_pages_for_admins_only(client: TestClient, alice: Account, path: str) -> None:
    anonymous = client.get(path, follow_redirects=False)
    assert anonymous.status_code == 302 and anonymous.headers["location"].startswith(
        "/login?return_to=%2Fadmin"
    )
    login(client, "alice", PASSWORD)
    refused = client.get(path)
    assert refused.status_code == 403
    assert '<code id="error-code">access_denied</code>' in refused.text
    assert "csrf_token" not in refused.text


@pytest.mark.parametrize("path", GET_PAGES)
def test_admin_pages_render_with_the_headers(admin_in: TestClient, path: str) -> None:
    resp = admin_in.get(path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert 'aria-label="Admin console"' in resp.text


def test_every_admin_form_refuses_a_missing_or_foreign_csrf_token(
    client: TestClient, services: Services, admin: Account, alice: Account, confidential: Client
) -> None:
    login(client, "alice", PASSWORD)
    alices = csrf_from(client.get("/account/apps"))
    client.cookies.clear()
    login(client, "admin", PASSWORD)
    _, before = services.store.list_audit(AuditQuery())
    for path in post_paths(services, confidential, alice):
        for form in ({}, {"csrf_token": alices}):
            resp = client.post(path, data=form | {"confirm": "on", "name": "x"})
            assert resp.status_code == 403, path
    _, after = services.store.list_audit(AuditQuery())
    assert after == before
    assert services.store.get_app(confidential.id) is not None


def test_every_admin_form_refuses_a_non_admin(
    client: TestClient, services: Services, alice: Account, confidential: Client
) -> None:
    login(client, "alice", PASSWORD)
    form = {"csrf_token": csrf_from(client.get("/account/apps")), "confirm": "on"}
    _, before = services.store.list_audit(AuditQuery())
    for path in post_paths(services, confidential, alice):
        assert client.post(path, data=form).status_code == 403, path
    assert services.store.get_app(confidential.id) is not None
    assert services.store.list_audit(AuditQuery())[1] == before


def test_create_app_edit_and_delete(
    admin_in: TestClient, services: Services, admin: Account
) -> None:
    form = {
        "csrf_token": token(admin_in),
        "name": "<script>alert(1)</script>",
        "redirect_uris": "http://localhost:7000/cb\nhttps://app.example.com/cb",
        "client_type": "confidential",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "require_pkce": "on",
    }
    made = admin_in.post("/admin/apps/new", data=form, follow_redirects=False)
    assert made.status_code == 303
    app_id = made.headers["location"].split("/admin/apps/")[1].split("?")[0]
    app = services.store.get_app(app_id)
    assert app is not None and app.redirect_uris[1] == "https://app.example.com/cb"
    created = events(services, "app.created")[0]
    assert created.actor_id == admin.user.id and created.target_id == app_id
    listing = admin_in.get("/admin/apps").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing and "<script>alert" not in listing
    edit = dict(form, name="Renamed", redirect_uris="javascript:alert(1)")
    refused = admin_in.post(f"/admin/apps/{app_id}", data=edit)
    assert refused.status_code == 400 and 'id="form-error"' in refused.text
    assert "javascript:alert(1)</textarea>" in refused.text  # kept for correction, escaped
    saved = admin_in.post(
        f"/admin/apps/{app_id}", data=dict(form, name="Renamed", first_party="on")
    )
    assert saved.status_code == 200 and "The app was saved." in saved.text
    found = services.store.get_app(app_id)
    assert found is not None and found.first_party
    assert len(events(services, "app.updated")) == 1
    unconfirmed = admin_in.post(
        f"/admin/apps/{app_id}/delete", data={"csrf_token": token(admin_in)}
    )
    assert unconfirmed.status_code == 400 and services.store.get_app(app_id) is not None
    admin_in.post(
        f"/admin/apps/{app_id}/delete", data={"csrf_token": token(admin_in), "confirm": "on"}
    )
    assert services.store.get_app(app_id) is None and len(events(services, "app.deleted")) == 1


def test_a_new_secret_is_shown_once_and_works(admin_in: TestClient, services: Services) -> None:
    app = make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={ISSUER: []},
    )
    resp = admin_in.post(f"/admin/apps/{app.id}/secrets", data={"csrf_token": token(admin_in)})
    assert resp.status_code == 201
    assert resp.headers["cache-control"] == "no-store"
    secret = re.search(r'id="client-secret" value="([^"]+)"', resp.text)
    assert secret is not None and secret.group(1).startswith("agcs_")
    assert '<script src="/static/copy.js" defer></script>' in resp.text
    assert len(events(services, "secret.created")) == 2  # make_client's, then this one
    granted = admin_in.post(
        "/oauth2/tokens",
        data={"grant_type": "client_credentials"},
        auth=(app.id, secret.group(1)),
    )
    assert_token_response(granted)
    later = admin_in.get(f"/admin/apps/{app.id}").text
    assert secret.group(1) not in later and f"…{secret.group(1)[-6:]}" in later
    copy_js = admin_in.get("/static/copy.js")
    assert copy_js.status_code == 200 and "clipboard" in copy_js.text


def test_delete_secret(admin_in: TestClient, services: Services, confidential: Client) -> None:
    secret = services.store.list_secrets(confidential.id)[0]
    resp = admin_in.post(
        f"/admin/apps/{confidential.id}/secrets/{secret.id}/delete",
        data={"csrf_token": token(admin_in)},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    assert services.store.list_secrets(confidential.id) == []
    assert events(services, "secret.deleted")[0].target_id == secret.id
    missing = admin_in.post(
        f"/admin/apps/{confidential.id}/secrets/nope/delete", data={"csrf_token": token(admin_in)}
    )
    assert missing.status_code == 404


def test_users_create_disable_enable_and_reset(
    admin_in: TestClient, client: TestClient, services: Services, admin: Account
) -> None:
    made = admin_in.post(
        "/admin/users", data={"csrf_token": token(admin_in), "username": "Carol", "name": "C"}
    )
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    password = re.search(r'id="password" value="([^"]+)"', made.text)
    assert password is not None
    carol = services.store.get_user_by_username("carol")
    assert carol is not None and not carol.is_admin
    made_event = next(e for e in events(services, "user.created") if e.target_id == carol.id)
    assert made_event.actor_id == admin.user.id
    disabled = admin_in.post(
        f"/admin/users/{carol.id}/disable", data={"csrf_token": token(admin_in)}
    )
    found = services.store.get_user(carol.id)
    assert disabled.status_code == 200 and found is not None and found.disabled
    admin_in.post(f"/admin/users/{carol.id}/enable", data={"csrf_token": token(admin_in)})
    found = services.store.get_user(carol.id)
    assert found is not None and not found.disabled
    reset = admin_in.post(f"/admin/users/{carol.id}/password", data={"csrf_token": token(admin_in)})
    new = re.search(r'id="password" value="([^"]+)"', reset.text)
    assert new is not None and new.group(1) != password.group(1)
    assert reset.headers["cache-control"] == "no-store"
    fields = [e.details["fields"] for e in events(services, "user.updated")]
    assert sorted(map(tuple, fields)) == [("disabled",), ("disabled",), ("password",)]
    assert all(password.group(1) not in str(e.details) for e in events(services, "user.created"))


def test_an_admin_cannot_disable_themself(
    admin_in: TestClient, services: Services, admin: Account
) -> None:
    resp = admin_in.post(
        f"/admin/users/{admin.user.id}/disable", data={"csrf_token": token(admin_in)}
    )
    assert resp.status_code == 400 and "cannot disable themself" in resp.text
    found = services.store.get_user(admin.user.id)
    assert found is not None and not found.disabled


def test_users_email_verified_on_create_and_by_the_row_button(
    admin_in: TestClient, services: Services
) -> None:
    form = {"username": "dora", "email": "dora@example.com", "password": "long enough pw"}
    made = admin_in.post(
        "/admin/users",
        data=form | {"csrf_token": token(admin_in), "email_verified": "on"},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    dora = services.store.get_user_by_username("dora")
    assert dora is not None and dora.email_verified
    row = admin_in.get("/admin/users").text.split('id="user-dora"')[1].split("</tr>")[0]
    assert '<span class="badge">verified</span>' in row and "Mark unverified" in row
    # The row's button posts without the field: unverified; with it ("on"): verified.
    off = admin_in.post(f"/admin/users/{dora.id}/email", data={"csrf_token": token(admin_in)})
    assert off.status_code == 200 and "marked unverified" in off.text
    found = services.store.get_user(dora.id)
    assert found is not None and not found.email_verified
    row = off.text.split('id="user-dora"')[1].split("</tr>")[0]
    assert '<span class="badge">unverified</span>' in row
    assert 'name="email_verified" value="on"' in row
    on = admin_in.post(
        f"/admin/users/{dora.id}/email",
        data={"csrf_token": token(admin_in), "email_verified": "on"},
    )
    assert on.status_code == 200 and "marked verified" in on.text
    found = services.store.get_user(dora.id)
    assert found is not None and found.email_verified
    fields = [e.details["fields"] for e in events(services, "user.updated")]
    assert fields == [["email_verified"], ["email_verified"]]


@pytest.mark.parametrize("value", ["yes", "true", "1", ""])
def test_email_verified_is_a_box_ticked_or_not(
    admin_in: TestClient, services: Services, alice: Account, value: str
) -> None:
    refused = admin_in.post(
        "/admin/users",
        data={"csrf_token": token(admin_in), "username": "eve", "email": "e@example.com"}
        | {"email_verified": value},
    )
    assert refused.status_code == 400 and "a box is ticked or not" in refused.text
    assert 'value="e@example.com"' in refused.text
    assert services.store.get_user_by_username("eve") is None
    row = admin_in.post(
        f"/admin/users/{alice.user.id}/email",
        data={"csrf_token": token(admin_in), "email_verified": value},
    )
    assert row.status_code == 400 and "a box is ticked or not" in row.text
    assert events(services, "user.updated") == []


def test_an_address_is_needed_to_be_verified(
    admin_in: TestClient, services: Services, alice: Account
) -> None:
    refused = admin_in.post(
        "/admin/users",
        data={"csrf_token": token(admin_in), "username": "fay", "email_verified": "on"},
    )
    assert refused.status_code == 400 and "no email address to verify" in refused.text
    assert services.store.get_user_by_username("fay") is None
    assert alice.user.email == ""
    row = admin_in.post(
        f"/admin/users/{alice.user.id}/email",
        data={"csrf_token": token(admin_in), "email_verified": "on"},
    )
    assert row.status_code == 400 and "no email address to verify" in row.text
    found = services.store.get_user(alice.user.id)
    assert found is not None and not found.email_verified
    assert 'action="/admin/users/' + alice.user.id + '/email"' not in row.text


def test_user_form_errors_are_shown(admin_in: TestClient) -> None:
    resp = admin_in.post(
        "/admin/users",
        data={"csrf_token": token(admin_in), "username": "<b>x</b>", "password": "short"},
    )
    assert resp.status_code == 400 and 'id="form-error"' in resp.text
    assert "<b>x</b>" not in resp.text


def test_resources_create_edit_delete(admin_in: TestClient, services: Services) -> None:
    form = {
        "csrf_token": token(admin_in),
        "identifier": "https://Notes.example.com/",
        "name": "Notes",
        "scopes": "notes:read = Read your notes\nnotes:write",
        "token_format": "opaque",
        "access_token_ttl": "900",
    }
    made = admin_in.post("/admin/resources", data=form, follow_redirects=False)
    assert made.status_code == 303
    resource = services.store.get_resource_by_identifier("https://notes.example.com")
    assert resource is not None and resource.access_token_ttl == 900
    assert [(s.name, s.description) for s in resource.scopes] == [
        ("notes:read", "Read your notes"),
        ("notes:write", ""),
    ]
    duplicate = admin_in.post("/admin/resources", data=form)
    assert duplicate.status_code == 409
    edited = admin_in.post(
        f"/admin/resources/{resource.id}",
        data=dict(form, name="Notes 2", scopes="x = <i>y</i>", access_token_ttl=""),
    )
    assert edited.status_code == 200
    page = admin_in.get(f"/admin/resources/{resource.id}").text
    assert "x = &lt;i&gt;y&lt;/i&gt;" in page
    updated = services.store.get_resource(resource.id)
    assert updated is not None and updated.access_token_ttl is None
    admin_in.post(f"/admin/resources/{resource.id}/delete", data={"csrf_token": token(admin_in)})
    assert services.store.get_resource(resource.id) is None
    actions = [e.action for e in services.store.list_audit(AuditQuery(target_id=resource.id))[0]]
    assert sorted(actions) == ["resource.created", "resource.deleted", "resource.updated"]


def test_own_api_resource_cannot_be_deleted(admin_in: TestClient, services: Services) -> None:
    own = services.store.get_resource_by_identifier(services.ctx.policy.audience)
    assert own is not None
    resp = admin_in.post(f"/admin/resources/{own.id}/delete", data={"csrf_token": token(admin_in)})
    assert resp.status_code == 400 and services.store.get_resource(own.id) is not None


def test_rotate_keys(admin_in: TestClient, services: Services, admin: Account) -> None:
    before = admin_in.get("/admin/keys").text
    active = re.search(
        r"<code>([^<]+)</code></td>\s*<td>\w+</td>\s*<td class=\"state-active\"", before
    )
    assert active is not None
    resp = admin_in.post("/admin/keys/rotate", data={"csrf_token": token(admin_in)})
    assert resp.status_code == 200 and "The signing key was rotated." in resp.text
    rotated = [e for e in events(services, "signing_key.rotated") if e.actor_id == admin.user.id]
    assert len(rotated) == 1 and rotated[0].details["previous"] == active.group(1)
    assert "state-retiring" in resp.text


def test_registration_settings(admin_in: TestClient, services: Services) -> None:
    form = {
        "csrf_token": token(admin_in),
        "redirect_hosts": "claude.ai\n*.example.com",
        "max_clients": "5",
        "client_ttl_days": "0",
    }  # "enabled" unticked: registration off
    resp = admin_in.post("/admin/settings", data=form)
    assert resp.status_code == 200 and "The settings were saved." in resp.text
    refused = admin_in.post(
        "/oauth2/register", json={"client_name": "x", "redirect_uris": ["https://claude.ai/cb"]}
    )
    assert refused.status_code == 403
    event = events(services, "settings.updated")[0]
    assert sorted(event.details["changed"]) == [
        "client_ttl_days", "enabled", "max_clients", "redirect_hosts",
    ]  # fmt: skip
    bad = admin_in.post("/admin/settings", data=dict(form, max_clients="-1"))
    assert bad.status_code == 400 and 'id="form-error"' in bad.text
    bad_host = admin_in.post("/admin/settings", data=dict(form, redirect_hosts="<x>"))
    assert bad_host.status_code == 400 and "&lt;x&gt;" in bad_host.text


def test_audit_log_filters_and_pages(admin_in: TestClient, services: Services) -> None:
    for n in range(55):
        admin_in.post(
            "/admin/users",
            data={"csrf_token": token(admin_in), "username": f"u{n}", "password": PASSWORD},
        )
    first = admin_in.get("/admin/audit?action=user.created")
    assert "56 events, page 1 of 2." in first.text  # 55 + the admin fixture
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    second = admin_in.get("/admin/audit?action=user.created&page=2")
    assert second.text.count("<code>user.created</code>") == 6 and 'rel="prev"' in second.text
    none = admin_in.get("/admin/audit?action=%3Cscript%3E&page=abc")
    assert none.status_code == 200 and "0 events." in none.text and "<script>" not in none.text
    dated = admin_in.get("/admin/audit?action=user.created&since=2999-01-01")
    assert "0 events." in dated.text


def test_admin_access_is_marked_on_the_app_page_of_operator_apps_only(
    admin_in: TestClient, services: Services, confidential: Client
) -> None:
    page = admin_in.get(f"/admin/apps/{confidential.id}")
    assert 'name="admin_access"' in page.text and 'id="admin-access">no<' in page.text
    form = {
        "csrf_token": token(admin_in),
        "name": confidential.app.name,
        "redirect_uris": "\n".join(confidential.app.redirect_uris),
        "grant_types": list(confidential.app.grant_types),
        "require_pkce": "on",
        "admin_access": "on",
    }
    saved = admin_in.post(f"/admin/apps/{confidential.id}", data=form)
    assert saved.status_code == 200 and "The app was saved." in saved.text
    found = services.store.get_app(confidential.id)
    assert found is not None and found.admin_access
    [event] = events(services, "app.updated")
    assert event.details["admin_access"] is True
    assert "admin access</span>" in admin_in.get("/admin/apps").text
    # A self-registered client: no checkbox, and a forged field changes nothing.
    registered = admin_in.post(
        "/oauth2/register",
        json={"redirect_uris": ["http://localhost:7000/cb"], "token_endpoint_auth_method": "none"},
    ).json()["client_id"]
    own = admin_in.get(f"/admin/apps/{registered}")
    assert 'name="admin_access"' not in own.text
    forged = dict(form, name="Registered", redirect_uris="http://localhost:7000/cb")
    admin_in.post(f"/admin/apps/{registered}", data=forged)
    found = services.store.get_app(registered)
    assert found is not None and found.admin_access is False


def test_metadata_document_settings(admin_in: TestClient, services: Services) -> None:
    form = {
        "csrf_token": token(admin_in),
        "enabled": "on",
        "redirect_hosts": "",
        "max_clients": "1000",
        "client_ttl_days": "30",
        "documents_shown": "1",
        "document_hosts": "*.example.com\nclaude.ai",
        "document_denied_hosts": "evil.example.com",
        "document_max_clients": "7",
    }  # "documents_enabled" unticked: documents off
    page = admin_in.get("/admin/settings")
    assert 'id="documents-enabled" checked' in page.text
    resp = admin_in.post("/admin/settings", data=form)
    assert resp.status_code == 200 and "The settings were saved." in resp.text
    event = events(services, "settings.updated")[0]
    assert sorted(event.details["changed"]) == [
        "document_denied_hosts", "document_hosts", "document_max_clients", "documents_enabled",
    ]  # fmt: skip
    assert services.store.get_setting("client_metadata_documents_enabled") is False
    assert services.store.get_setting("client_metadata_document_hosts") == [
        "*.example.com",
        "claude.ai",
    ]
    shown = admin_in.get("/admin/settings").text
    assert 'id="documents-enabled" checked' not in shown and "evil.example.com" in shown
    bad = admin_in.post("/admin/settings", data=dict(form, document_hosts="cursor:"))
    assert bad.status_code == 400 and 'id="form-error"' in bad.text
    assert services.store.get_setting("client_metadata_max_clients") == 7
