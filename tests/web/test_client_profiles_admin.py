"""Operators add, override, pin and delete known-client profiles through ``/api/v2/client-
profiles`` and the console's ``/admin/profiles``, and see which profile an app matched (API and
console). Each test checks the body, the settings row and the audit event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import client_profiles
from authgate.core.models import AuditEvent, AuditQuery
from tests.conftest import PASSWORD, Account, make_client
from tests.flows import csrf_from, login

PROFILES = "/api/v2/client-profiles"
APPS = "/api/v2/oauth2-provider/apps"
URL = "https://tool.example.com/oauth/client.json"
PROFILE = {
    "name": "Internal tool",
    "document_urls": [URL],
    "redirect_hosts": ["tool.example.com"],
    "client_names": ["Internal tool"],
    "sources": ["our own deployment"],
    "quirks": ["Sends no client_name."],
}


def bearer(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.api_token}"}


def events(services: Services, action: str) -> list[AuditEvent]:
    return list(services.store.list_audit(AuditQuery(action=action))[0])


def stored(services: Services) -> dict[str, Any]:
    value = services.store.get_setting(client_profiles.SETTING)
    return value if isinstance(value, dict) else {}


def test_api_lists_adds_pins_overrides_and_deletes(
    client: TestClient, services: Services, admin: Account
) -> None:
    listed = client.get(PROFILES, headers=bearer(admin))
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()][:2] == ["claude-ai", "claude-code"]

    put = client.put(f"{PROFILES}/internal-tool", headers=bearer(admin), json=PROFILE)
    assert put.status_code == 200, put.text
    assert put.json()["origin"] == "operator" and put.json()["document_urls"] == [URL]
    assert stored(services)["internal-tool"]["redirect_hosts"] == ["tool.example.com"]
    [saved] = events(services, "client_profile.saved")
    assert saved.target_id == "internal-tool" and saved.details["pinned"] is False
    # The operator's profiles come first.
    assert client.get(PROFILES, headers=bearer(admin)).json()[0]["id"] == "internal-tool"

    document = {"client_id": URL, "redirect_uris": ["https://tool.example.com/cb"]}
    pin = client.post(
        f"{PROFILES}/internal-tool/pin", headers=bearer(admin), json={"document": document}
    )
    assert pin.status_code == 200 and pin.json()["pinned_document"] == document
    assert stored(services)["internal-tool"]["pinned_document"] == document
    assert events(services, "client_profile.pinned")[0].details["document_url"] == URL

    # Override a shipped profile, then revert.
    chatgpt = client.get(f"{PROFILES}/chatgpt", headers=bearer(admin)).json()
    body = {k: v for k, v in chatgpt.items() if k not in ("id", "origin")}
    over = client.put(
        f"{PROFILES}/chatgpt", headers=bearer(admin), json=body | {"quirks": ["Ours."]}
    )
    assert over.json()["origin"] == "overridden" and over.json()["quirks"] == ["Ours."]
    assert client.delete(f"{PROFILES}/chatgpt", headers=bearer(admin)).status_code == 204
    assert client.get(f"{PROFILES}/chatgpt", headers=bearer(admin)).json()["origin"] == "shipped"
    assert "chatgpt" not in stored(services)
    assert [e.target_id for e in events(services, "client_profile.deleted")] == ["chatgpt"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (PROFILE | {"sources": []}, "sources"),
        (PROFILE | {"document_urls": ["http://tool.example.com/c.json"]}, "document_urls"),
        (PROFILE | {"pinned_document": {"client_id": "https://evil.example/c"}}, "pinned_document"),
        (PROFILE | {"redirect_hosts": ["not a host"]}, "redirect_hosts"),
    ],
)
def test_api_refuses_a_bad_profile_and_changes_nothing(
    client: TestClient, services: Services, admin: Account, body: dict[str, Any], field: str
) -> None:
    resp = client.put(f"{PROFILES}/internal-tool", headers=bearer(admin), json=body)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert field in resp.json()["validations"]
    assert stored(services) == {} and events(services, "client_profile.saved") == []


def test_api_is_for_admins_only(client: TestClient, services: Services, alice: Account) -> None:
    assert client.get(PROFILES).status_code == 401
    assert client.get(PROFILES, headers=bearer(alice)).status_code == 403
    put = client.put(f"{PROFILES}/x", headers=bearer(alice), json=PROFILE)
    assert put.status_code == 403 and stored(services) == {}
    assert (
        client.post("/api/v2/client-check", headers=bearer(alice), json={"app_id": "x"}).status_code
        == 403
    )


def test_the_app_view_names_the_matched_profile(
    client: TestClient, services: Services, admin: Account
) -> None:
    vscode = make_client(
        services,
        name="VS Code",
        client_type="public",
        redirect_uris=["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
    )
    other = make_client(services, name="Mine", redirect_uris=["https://mine.example/cb"])
    shown = client.get(f"{APPS}/{vscode.id}", headers=bearer(admin)).json()
    assert shown["client_profile"] == "vscode"
    listed = {a["id"]: a["client_profile"] for a in client.get(APPS, headers=bearer(admin)).json()}
    assert listed[vscode.id] == "vscode" and listed[other.id] is None
    login(client, "admin", PASSWORD)
    page = client.get(f"/admin/apps/{vscode.id}")
    assert (
        '<dd id="client-profile"><a href="/admin/profiles#profile-vscode">Visual Studio Code</a>'
        in page.text
    )
    assert "/admin/test-client?app_id=" in page.text
    assert "none matched" in client.get(f"/admin/apps/{other.id}").text
    listing = client.get("/admin/apps").text
    assert '<td class="known-client">Visual Studio Code</td>' in listing
    assert listing.count('<td class="known-client"></td>') == len(services.store.list_apps()) - 1


def test_console_adds_pins_and_deletes_a_profile(
    client: TestClient, services: Services, admin: Account
) -> None:
    login(client, "admin", PASSWORD)
    page = client.get("/admin/profiles")
    assert page.status_code == 200 and 'id="profile-claude-ai"' in page.text
    csrf = csrf_from(page)
    resp = client.post(
        "/admin/profiles",
        data={"csrf_token": csrf, "profile_id": "internal-tool", "profile": json.dumps(PROFILE)},
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"].endswith("notice=profile-saved")
    assert stored(services)["internal-tool"]["name"] == "Internal tool"
    [saved] = events(services, "client_profile.saved")
    assert saved.actor_id == admin.user.id

    document = {"client_id": URL, "redirect_uris": ["https://tool.example.com/cb"]}
    pinned = client.post(
        "/admin/profiles/internal-tool/pin",
        data={"csrf_token": csrf, "document": json.dumps(document)},
        follow_redirects=False,
    )
    assert pinned.status_code == 303
    assert stored(services)["internal-tool"]["pinned_document"] == document

    bad = client.post(
        "/admin/profiles",
        data={"csrf_token": csrf, "profile_id": "x", "profile": "{not json"},
    )
    assert bad.status_code == 400 and 'id="form-error"' in bad.text
    assert "x" not in stored(services)

    deleted = client.post(
        "/admin/profiles/internal-tool/delete", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert deleted.status_code == 303 and stored(services) == {}
    assert [e.target_id for e in events(services, "client_profile.deleted")] == ["internal-tool"]


def test_console_tests_a_registration_body(
    client: TestClient, services: Services, admin: Account
) -> None:
    login(client, "admin", PASSWORD)
    csrf = csrf_from(client.get("/admin/test-client"))
    body = {
        "client_name": "Visual Studio Code",
        "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
        "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
        "token_endpoint_auth_method": "none",
    }
    resp = client.post(
        "/admin/test-client", data={"csrf_token": csrf, "registration": json.dumps(body)}
    )
    assert resp.status_code == 200
    assert '<span id="verdict">accepted</span>' in resp.text
    assert (
        'Known client: <a href="/admin/profiles#profile-vscode">Visual Studio Code</a>' in resp.text
    )
    assert "<h3>Dropped</h3>" in resp.text
    assert (
        "The grant type urn:ietf:params:oauth:grant-type:device_code is not supported by "
        "authgate; the client is registered without it." in resp.text
    )
    assert "device_code grant" in resp.text  # the profile's quirk explains why
    assert all(a.name != "Visual Studio Code" for a in services.store.list_apps())
