"""Configuring upstream providers: the management API (admin only, the client secret
write-only, RFC 9457 problems for bad input) and AUTHGATE_UPSTREAM_PROVIDERS applied at
startup, idempotently."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.core.models import AuditQuery
from authgate.services import ConfigurationError, Services, apply_upstream_configuration
from tests.conftest import Account

API = "/api/v2/upstream-providers"
SECRET = "api-upstream-secret-value"
BODY = {
    "id": "corp",
    "display_name": "Corp SSO",
    "issuer": "https://login.example.com/realms/corp",
    "client_id": "authgate",
    "client_secret": SECRET,
    "jit_create": True,
    "admin_claim": "groups",
    "admin_values": ["admins"],
}


def bearer(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.api_token}"}


def actions(services: Services) -> list[str]:
    events, _ = services.store.list_audit(AuditQuery(limit=100))
    return [e.action for e in reversed(events) if e.action.startswith("upstream_provider.")]


def test_the_api_manages_providers_and_never_returns_the_secret(
    client: TestClient, services: Services, admin: Account, alice: Account
) -> None:
    created = client.post(API, json=BODY, headers=bearer(admin))
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert body["has_client_secret"] is True and "client_secret" not in body
    assert body["redirect_path"] == "/login/upstream/corp/callback"
    assert SECRET not in created.text
    stored = services.store.get_upstream_provider("corp")
    assert stored is not None and stored.client_secret and SECRET not in stored.client_secret

    listed = client.get(API, headers=bearer(admin))
    assert [p["id"] for p in listed.json()] == ["corp"] and SECRET not in listed.text
    assert client.get(f"{API}/corp", headers=bearer(admin)).json()["display_name"] == "Corp SSO"

    changed = client.patch(
        f"{API}/corp", json={"enabled": False, "admin_claim": None}, headers=bearer(admin)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False and changed.json()["admin_claim"] is None
    assert changed.json()["has_client_secret"] is True  # kept: not sent

    duplicate = client.post(API, json=BODY, headers=bearer(admin))
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"].startswith("application/problem+json")

    assert client.delete(f"{API}/corp", headers=bearer(admin)).status_code == 204
    assert services.store.get_upstream_provider("corp") is None
    missing = client.get(f"{API}/corp", headers=bearer(admin))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert actions(services) == [
        "upstream_provider.created",
        "upstream_provider.updated",
        "upstream_provider.deleted",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"issuer": "http://login.example.com"}, "issuer"),
        ({"issuer": "https://login.example.com/?tenant=x"}, "issuer"),
        ({"scopes": "email profile"}, "scopes"),
        ({"id": "Not A Slug"}, "id"),
        ({"allowed_domains": ["not a domain"]}, "allowed_domains"),
        ({"admin_claim": "groups", "admin_values": []}, "admin_claim"),
    ],
)
def test_bad_settings_are_problems_that_change_nothing(
    client: TestClient, services: Services, admin: Account, change: dict[str, Any], field: str
) -> None:
    resp = client.post(API, json={**BODY, **change}, headers=bearer(admin))
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert field in resp.json()["validations"]
    assert services.store.list_upstream_providers() == []
    assert actions(services) == []


def test_only_administrators_may_manage_providers(
    client: TestClient, services: Services, alice: Account
) -> None:
    assert client.get(API, headers=bearer(alice)).status_code == 403
    assert client.post(API, json=BODY, headers=bearer(alice)).status_code == 403
    assert client.get(API).status_code == 401
    assert services.store.list_upstream_providers() == []


def test_the_environment_is_applied_once_and_again_changes_nothing(services: Services) -> None:
    configured = services.settings.model_copy(
        update={"upstream_providers": json.dumps([BODY | {"allowed_domains": ["Example.com"]}])}
    )
    first = Services(configured, services.store, services.ctx)
    assert apply_upstream_configuration(first) == ["corp"]
    assert apply_upstream_configuration(first) == []  # idempotent: nothing written, audited
    stored = services.store.get_upstream_provider("corp")
    assert stored is not None and stored.allowed_domains == ("example.com",)

    renamed = [BODY | {"display_name": "Corp", "client_secret": "rotated-secret"}]
    second = Services(
        configured.model_copy(update={"upstream_providers": json.dumps(renamed)}),
        services.store,
        services.ctx,
    )
    assert apply_upstream_configuration(second) == ["corp"]
    assert actions(services) == ["upstream_provider.created", "upstream_provider.updated"]
    events, _ = services.store.list_audit(AuditQuery(action="upstream_provider.updated"))
    assert events[0].details["fields"] == ["allowed_domains", "client_secret", "display_name"]
    assert "rotated-secret" not in repr(events[0].details)

    for broken in ("{", '{"id": "x"}', '[{"id": "x", "colour": "red"}]', '[{"id": "x"}]'):
        bad = configured.model_copy(update={"upstream_providers": broken})
        with pytest.raises(ConfigurationError, match="AUTHGATE_UPSTREAM_PROVIDERS"):
            apply_upstream_configuration(Services(bad, services.store, services.ctx))


@pytest.mark.parametrize("name", ["%E2%80%AEcorp", "x" * 300, "No%20Such", "corp"])
def test_an_unknown_or_hostile_provider_name_is_a_page(
    client: TestClient, services: Services, name: str
) -> None:
    callback = client.get(f"/login/upstream/{name}/callback?state=abc&code=def")
    assert callback.status_code == 400, callback.text
    assert 'id="error-reference"' in callback.text
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    start = client.post(
        f"/login/upstream/{name}", data={"csrf_token": token}, follow_redirects=False
    )
    assert start.status_code == 403, start.text
    assert "This way of signing in is not available." in start.text
    events, _ = services.store.list_audit(AuditQuery(action="upstream.sign_in_refused"))
    assert [e.details["reason"] for e in events] == ["provider_unknown", "state_invalid"]
    assert all(e.target_id in (None, "corp") for e in events)


KEYED = {key: value for key, value in BODY.items() if key != "client_secret"} | {
    "token_auth_method": "private_key_jwt"
}


def test_the_api_shows_the_public_key_hands_out_the_certificate_and_rotates_it(
    client: TestClient, services: Services, admin: Account, alice: Account
) -> None:
    created = client.post(API, json=KEYED, headers=bearer(admin))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["token_auth_method"] == "private_key_jwt" and body["has_client_secret"] is False
    assert body["assertion_audience"] == "token_endpoint"
    key = body["assertion_key"]
    assert set(key) == {"kid", "x5t", "not_after", "jwks_uri"}
    assert key["jwks_uri"] == "http://testserver/login/upstream/corp/jwks"
    stored = services.store.get_upstream_provider("corp")
    assert stored is not None and stored.assertion_key and stored.assertion_certificate
    assert stored.assertion_key not in created.text and "PRIVATE" not in created.text

    cert = client.get(f"{API}/corp/certificate", headers=bearer(admin))
    assert cert.status_code == 200
    assert cert.headers["content-type"].startswith("application/x-pem-file")
    assert cert.headers["content-disposition"] == 'attachment; filename="authgate-corp.pem"'
    assert cert.text == stored.assertion_certificate
    assert client.get(f"{API}/corp/certificate", headers=bearer(alice)).status_code == 403
    assert client.post(f"{API}/corp/assertion-key", headers=bearer(alice)).status_code == 403

    rotated = client.post(f"{API}/corp/assertion-key", headers=bearer(admin))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["assertion_key"]["kid"] != key["kid"]
    published = client.get("/login/upstream/corp/jwks").json()
    assert [k["kid"] for k in published["keys"]] == [rotated.json()["assertion_key"]["kid"]]
    assert client.get(f"{API}/corp/certificate", headers=bearer(admin)).text != cert.text

    # Back to a client secret: no key, no certificate, nothing to rotate.
    back = client.patch(
        f"{API}/corp",
        json={"token_auth_method": None, "client_secret": SECRET},
        headers=bearer(admin),
    )
    assert back.status_code == 200, back.text
    assert back.json()["token_auth_method"] is None and back.json()["assertion_key"] is None
    missing = client.get(f"{API}/corp/certificate", headers=bearer(admin))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    conflict = client.post(f"{API}/corp/assertion-key", headers=bearer(admin))
    assert conflict.status_code == 409
    assert actions(services) == [
        "upstream_provider.created",
        "upstream_provider.key_rotated",
        "upstream_provider.updated",
    ]


def test_a_secret_sent_with_private_key_jwt_is_a_problem(
    client: TestClient, services: Services, admin: Account
) -> None:
    resp = client.post(API, json=KEYED | {"client_secret": SECRET}, headers=bearer(admin))
    assert resp.status_code == 400, resp.text
    assert "client_secret" in resp.json()["validations"]
    assert services.store.list_upstream_providers() == []


def test_the_environment_takes_private_key_jwt_and_keeps_the_key(services: Services) -> None:
    keyed = KEYED | {"assertion_audience": "issuer"}
    configured = services.settings.model_copy(update={"upstream_providers": json.dumps([keyed])})
    startup = Services(configured, services.store, services.ctx)
    assert apply_upstream_configuration(startup) == ["corp"]
    first = services.store.get_upstream_provider("corp")
    assert first is not None and first.assertion_key is not None
    assert first.assertion_audience == "issuer"
    assert apply_upstream_configuration(startup) == []  # the key stays: nothing changes
    again = services.store.get_upstream_provider("corp")
    assert again is not None and again.assertion_key == first.assertion_key
