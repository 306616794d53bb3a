"""What the consent page says about who the client is, and how self-registered clients' errors
are shown before anyone has signed in (DESIGN.md §7)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.conftest import Account, Client
from tests.flows import (
    REDIRECT_URI,
    authorize,
    authorize_url,
    callback_params,
    generate_pkce,
    login,
)


def _register(client: TestClient, name: str) -> dict[str, Any]:
    resp = client.post(
        "/oauth2/register",
        json={
            "client_name": name,
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
        },
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _identity(page_text: str) -> str:
    start = page_text.index('id="identity"')
    return page_text[start : page_text.index("</p>", start)]


def test_operator_app_is_labelled(signed_in: TestClient, confidential: Client) -> None:
    page = signed_in.get(authorize_url(confidential.id, challenge=generate_pkce().challenge))
    assert "Registered by the operator" in _identity(page.text)


def test_self_registered_app_is_unverified(client: TestClient, alice: Account) -> None:
    registered = _register(client, "Some MCP client")
    login(client, alice.user.username, alice.password)
    page = client.get(authorize_url(registered["client_id"], challenge=generate_pkce().challenge))
    assert page.status_code == 200
    assert "Unverified" in _identity(page.text)


def test_name_collision_with_operator_app_is_flagged(
    client: TestClient, alice: Account, confidential: Client
) -> None:
    registered = _register(client, confidential.app.name.upper())
    login(client, alice.user.username, alice.password)
    page = client.get(authorize_url(registered["client_id"], challenge=generate_pkce().challenge))
    identity = _identity(page.text)
    assert 'role="alert"' in identity and "same name" in identity


def test_self_registered_client_errors_are_pages_until_sign_in(
    client: TestClient, alice: Account
) -> None:
    registered = _register(client, "Phisher")
    url = authorize_url(
        registered["client_id"],
        challenge=generate_pkce().challenge,
        resource="https://unregistered.example.com",
    )
    before = client.get(url, follow_redirects=False)
    assert before.status_code == 400 and "location" not in before.headers
    assert '<code id="error-code">invalid_target</code>' in before.text
    login(client, alice.user.username, alice.password)
    # Errors redirect once the person has consented to the client (RFC 9700 §4.11.2).
    authorize(client, registered["client_id"], challenge=generate_pkce().challenge)
    after = callback_params(client.get(url, follow_redirects=False))
    assert after["error"] == "invalid_target"


def test_operator_app_errors_redirect_even_before_sign_in(
    client: TestClient, confidential: Client
) -> None:
    url = authorize_url(
        confidential.id,
        challenge=generate_pkce().challenge,
        resource="https://unregistered.example.com",
    )
    assert callback_params(client.get(url, follow_redirects=False))["error"] == "invalid_target"
