"""Known-client profiles and "test this client" against a real server and a local HTTPS
document server (issue 17, items 5 and 6).

claude.ai's document server answers datacenter addresses with a challenge page (403): until
one fetch succeeded, authgate could not serve that client at all. A profile's pinned copy is
used only when the live fetch of exactly that URL fails and no stored copy is usable; a live
answer always wins. ``/api/v2/client-check`` explains, through the real validation, what
authgate will accept, drop and refuse, and stores nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authgate.app import Services
from authgate.config import Settings
from authgate.core.models import AuditQuery
from tests.conftest import ISSUER, Account, issued
from tests.fetch.server import DocumentServer, Route, write_certificates
from tests.flows import (
    REDIRECT_URI,
    assert_token_response,
    authorize,
    authorize_url,
    exchange_code,
    generate_pkce,
    login,
)
from tests.security.helpers import assert_error_page, snapshot
from tests.security.live import Live

PROFILES = "/api/v2/client-profiles"
CHECK = "/api/v2/client-check"
CHALLENGE = Route(
    body=b"<html>Just a moment...</html>", status=403, headers={"Content-Type": "text/html"}
)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentServer]:
    directory = tmp_path_factory.mktemp("tls")
    _, cert, key = write_certificates(directory)
    with DocumentServer(cert, key) as server:
        server.ca = directory / "ca.pem"
        yield server


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    docs.seen.clear()
    docs.routes.clear()
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1,localhost",
        fetch_ca_bundle=str(docs.ca),
        fetch_timeout_seconds=1,
    )


def document(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Hosted client",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        **fields,
    }


def admin_call(live: Live, admin: Account, method: str, path: str, **kw: Any) -> Any:
    with live.client() as api:
        resp = api.request(
            method, path, headers={"Authorization": f"Bearer {admin.api_token}"}, **kw
        )
    assert resp.status_code < 300, resp.text
    return resp.json() if resp.content else None


def pin_profile(live: Live, admin: Account, url: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "Hosted client",
        "document_urls": [url],
        "redirect_hosts": ["localhost", "127.0.0.1"],
        "client_names": ["Hosted client"],
        "quirks": ["Its document server answers servers with a challenge page."],
        "sources": ["the test"],
        "pinned_document": document(url, client_name="Pinned client", **fields),
    }
    saved: dict[str, Any] = admin_call(live, admin, "PUT", f"{PROFILES}/hosted", json=body)
    return saved


def events(services: Services, action: str) -> list[Any]:
    return list(services.store.list_audit(AuditQuery(action=action))[0])


def sign_in_and_get_tokens(live: Live, alice: Account, url: str) -> dict[str, Any]:
    pkce = generate_pkce()
    with live.client() as user:
        login(user, alice.user.username, alice.password)
        code = authorize(user, url, challenge=pkce.challenge)
        resp = exchange_code(user, code, client_id=url, client_secret=None, verifier=pkce.verifier)
    body: dict[str, Any] = assert_token_response(resp)
    return body


# The pinned copy


def test_a_refused_live_fetch_falls_back_to_the_pinned_copy(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    url = docs.url("/claude-like.json")
    docs.routes["/claude-like.json"] = CHALLENGE
    pin_profile(live, admin, url)
    assert services.store.get_app(url) is None

    sign_in_and_get_tokens(live, alice, url)

    assert docs.requests_to("/claude-like.json") == 1, "the live document was tried first"
    app = services.store.get_app(url)
    assert app is not None and app.metadata_document and app.name == "Pinned client"
    assert app.redirect_uris == (REDIRECT_URI,)
    assert issued(services, url).access == 1
    [used] = events(services, "client_profile.pinned_copy_used")
    assert used.target_id == url
    assert used.details["profile"] == "hosted" and used.details["origin"] == "operator"
    assert used.details["fetch_error"] == "the server answered HTTP 403"
    # The pinned copy is kept for the shortest time, so that the live one is tried again soon.
    assert app.metadata_expires_at is not None
    assert (app.metadata_expires_at - app.updated_at).total_seconds() == 300


def test_a_live_answer_always_wins_over_the_pinned_copy(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    url = docs.url("/live.json")
    docs.routes["/live.json"] = Route.json(document(url, client_name="Live client"))
    pin_profile(live, admin, url)

    sign_in_and_get_tokens(live, alice, url)

    app = services.store.get_app(url)
    assert app is not None and app.name == "Live client"
    assert events(services, "client_profile.pinned_copy_used") == []


def test_a_pin_for_another_url_is_never_used(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    url = docs.url("/refused.json")
    docs.routes["/refused.json"] = CHALLENGE
    pin_profile(live, admin, docs.url("/other.json"))
    with live.client() as user:
        login(user, alice.user.username, alice.password)
        before = snapshot(services)
        resp = user.get(authorize_url(url, challenge=generate_pkce().challenge))
    assert_error_page(resp, 400, "invalid_client", "the server answered HTTP 403")
    assert snapshot(services) == before
    assert services.store.get_app(url) is None
    assert events(services, "client_profile.pinned_copy_used") == []


# Test this client


def check(live: Live, admin: Account, **target: Any) -> dict[str, Any]:
    report: dict[str, Any] = admin_call(live, admin, "POST", CHECK, json=target)
    return report


def messages(report: dict[str, Any], outcome: str) -> list[str]:
    return [f["message"] for f in report["findings"] if f["outcome"] == outcome]


def test_check_a_good_document(
    live: Live, services: Services, docs: DocumentServer, admin: Account
) -> None:
    url = docs.url("/good.json")
    docs.routes["/good.json"] = Route.json(
        document(url, grant_types=["authorization_code", "refresh_token"])
    )
    before = snapshot(services)
    report = check(live, admin, document_url=url)
    assert report["verdict"] == "accepted" and report["kind"] == "document"
    assert report["registered"]["client_id"] == url
    assert report["registered"]["token_endpoint_auth_method"] == "none"
    accepted = messages(report, "accept")
    assert "Shown as 'Hosted client'." in accepted
    assert f"Redirects to {REDIRECT_URI}." in accepted
    assert "May use authorization_code, refresh_token." in accepted
    assert messages(report, "refuse") == [] and messages(report, "drop") == []
    assert any("consent page will show it as" in m for m in messages(report, "note"))
    assert snapshot(services) == before, "a check stores nothing"
    assert services.store.get_app(url) is None


def test_check_a_document_with_an_unsupported_grant(
    live: Live, services: Services, docs: DocumentServer, admin: Account
) -> None:
    """claude.ai's document lists the jwt-bearer grant: the negotiation drops it, the rest is
    registered, and the report says which and why."""
    url = docs.url("/jwt-bearer.json")
    grants = ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
    docs.routes["/jwt-bearer.json"] = Route.json(document(url, grant_types=grants))
    before = snapshot(services)
    report = check(live, admin, document_url=url)
    assert report["verdict"] == "accepted"
    assert report["registered"]["grant_types"] == ["authorization_code", "refresh_token"]
    assert messages(report, "drop") == [
        "The grant type urn:ietf:params:oauth:grant-type:jwt-bearer is not supported by "
        "authgate; the client is registered without it."
    ]
    assert [f["field"] for f in report["findings"] if f["outcome"] == "drop"] == ["grant_types"]
    assert messages(report, "refuse") == []
    assert snapshot(services) == before


def test_check_a_document_with_a_bad_redirect(
    live: Live, docs: DocumentServer, admin: Account
) -> None:
    url = docs.url("/bad-redirect.json")
    docs.routes["/bad-redirect.json"] = Route.json(
        document(url, redirect_uris=["http://evil.example/callback"])
    )
    report = check(live, admin, document_url=url)
    assert report["verdict"] == "refused"
    [refusal] = messages(report, "refuse")
    assert refusal == (
        "The document is refused: http redirect_uri is only allowed for localhost, 127.0.0.1 "
        "and [::1]."
    )
    assert report["registered"] == {}


def test_check_an_unreachable_document(live: Live, admin: Account) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"https://127.0.0.1:{port}/client.json"
    report = check(live, admin, document_url=url)
    assert report["verdict"] == "refused" and report["pinned_copy_used"] is False
    assert messages(report, "refuse") == [
        "The document could not be fetched: the server could not be reached."
    ]


def test_check_a_refused_document_explains_the_pinned_copy(
    live: Live, docs: DocumentServer, admin: Account
) -> None:
    url = docs.url("/challenged.json")
    docs.routes["/challenged.json"] = CHALLENGE
    pin_profile(live, admin, url)
    report = check(live, admin, document_url=url)
    assert report["verdict"] == "accepted" and report["pinned_copy_used"] is True
    assert report["profile"] == "hosted"
    assert report["registered"]["client_name"] == "Pinned client"
    notes = messages(report, "note")
    assert any("the server answered HTTP 403" in n and "pinned copy" in n for n in notes)
    assert "Its document server answers servers with a challenge page." in notes


def test_check_a_registration_body_and_an_app(
    live: Live, services: Services, admin: Account
) -> None:
    vscode = {
        "client_name": "Visual Studio Code",
        "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    }
    before = snapshot(services)
    report = check(live, admin, registration=vscode)
    assert report["verdict"] == "accepted" and report["profile"] == "vscode"
    assert report["registered"]["client_type"] == "public"
    refused = check(live, admin, registration=vscode | {"redirect_uris": ["javascript:alert(1)"]})
    assert refused["verdict"] == "refused"
    assert [f["field"] for f in refused["findings"] if f["outcome"] == "refuse"] == [
        "invalid_redirect_uri"
    ]
    assert snapshot(services) == before
    with live.client() as api:
        missing = api.post(
            CHECK,
            headers={"Authorization": f"Bearer {admin.api_token}"},
            json={"app_id": "no-such-app"},
        )
        both = api.post(
            CHECK,
            headers={"Authorization": f"Bearer {admin.api_token}"},
            json={"app_id": "x", "registration": {}},
        )
        anonymous = api.post(CHECK, json={"app_id": "x"})
    assert missing.status_code == 404 and missing.json()["detail"] == "No such app"
    assert both.status_code == 400 and "target" in both.json()["validations"]
    assert anonymous.status_code == 401


def test_pin_fetches_what_the_document_serves_now(
    live: Live, services: Services, docs: DocumentServer, admin: Account
) -> None:
    url = docs.url("/to-pin.json")
    live_document = document(url, client_name="Served now")
    docs.routes["/to-pin.json"] = Route.json(live_document)
    pin_profile(live, admin, url)
    pinned = admin_call(live, admin, "POST", f"{PROFILES}/hosted/pin", json={})
    assert pinned["pinned_document"] == live_document
    assert pinned["pinned_note"] == "pinned by operator"
    assert docs.requests_to("/to-pin.json") == 1
    [event] = events(services, "client_profile.pinned")
    assert event.target_id == "hosted" and event.details["document_url"] == url
    # A document that cannot be fetched pins nothing.
    docs.routes["/to-pin.json"] = CHALLENGE
    with live.client() as api:
        refused = api.post(
            f"{PROFILES}/hosted/pin",
            headers={"Authorization": f"Bearer {admin.api_token}"},
            json={},
        )
    assert refused.status_code == 400
    assert (
        refused.json()["detail"]
        == "The document could not be fetched: the server answered HTTP 403"
    )
    stored = services.store.get_setting("client_profiles")
    assert stored is not None
    assert stored["hosted"]["pinned_document"] == live_document
    assert len(events(services, "client_profile.pinned")) == 1
