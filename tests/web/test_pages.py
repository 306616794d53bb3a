"""The pages people see, at the HTTP level: remembered consent and ``prompt``, switching
account, connected apps, branding, escaping and the security headers (tests/browser drives
the same pages in Chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from authgate.app import Services, create_app
from authgate.config import Settings
from authgate.core import clients, consent
from authgate.core.context import SYSTEM
from authgate.core.models import AuditQuery
from authgate.web.templating import Branding
from tests.clock import MovableClock
from tests.conftest import ISSUER, PASSWORD, Account, Client, issued, make_client
from tests.flows import (
    REDIRECT_URI,
    RESOURCE,
    assert_token_response,
    authorize_url,
    callback_params,
    csrf_from,
    exchange_code,
    generate_pkce,
    login,
)
from tests.http_types import Response


def allow(client: TestClient, url: str) -> dict[str, str]:
    """Show the consent page, press Allow; the callback's parameters."""
    page = client.get(url, follow_redirects=False)
    assert page.status_code == 200, page.text
    resp = client.post(
        url, data={"csrf_token": csrf_from(page), "decision": "allow"}, follow_redirects=False
    )
    return callback_params(resp)


def connect(
    client: TestClient, app: Client | str, secret: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    """A whole authorization: consent, code, token. Returns the token response."""
    client_id = app if isinstance(app, str) else app.id
    secret = secret if isinstance(app, str) else app.secret
    pkce = generate_pkce()
    params = allow(client, authorize_url(client_id, challenge=pkce.challenge, **kwargs))
    resp = exchange_code(
        client,
        params["code"],
        client_id=client_id,
        client_secret=secret,
        verifier=pkce.verifier,
        redirect_uri=kwargs.get("redirect_uri", REDIRECT_URI),
        resource=kwargs.get("resource"),
    )
    return assert_token_response(resp)


def granted_events(services: Services) -> list[dict[str, Any]]:
    events, _ = services.store.list_audit(AuditQuery(action="consent.granted"))
    return [e.details for e in events]


def csrf(client: TestClient) -> str:
    return csrf_from(client.get("/account/apps"))


# Remembered consent


def test_remembered_consent_skips_the_page_once_a_grant_exists(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    connect(signed_in, confidential, scope="read", resource=RESOURCE)
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, scope="read", resource=RESOURCE
    )
    again = signed_in.get(url, follow_redirects=False)
    params = callback_params(again)
    assert params["code"].startswith("agac_") and params["state"] == "xyz-state"
    assert params["iss"] == ISSUER
    events = granted_events(services)  # the same instant: order by what decided
    assert sorted(e["decided_by"] for e in events) == ["remembered", "user"]
    assert all(e["code_prefix"] and "code" not in e for e in events)
    assert params["code"].split("_")[1] in {e["code_prefix"] for e in events}


def test_an_unredeemed_decision_is_not_remembered(
    signed_in: TestClient, confidential: Client
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    allow(signed_in, url)  # the code is never exchanged: no grant
    assert signed_in.get(url, follow_redirects=False).status_code == 200


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param({"scope": "read write", "resource": RESOURCE}, id="more-scope"),
        pytest.param({"scope": "read", "resource": "https://mcp.example.com/mcp"}, id="other-res"),
    ],
)
def test_asking_for_more_or_elsewhere_shows_the_page(
    signed_in: TestClient, confidential: Client, request_: dict[str, str]
) -> None:
    connect(signed_in, confidential, scope="read", resource=RESOURCE)
    url = authorize_url(
        confidential.id,
        challenge=generate_pkce().challenge,
        scope=request_["scope"],
        resource=request_["resource"],
    )
    page = signed_in.get(url, follow_redirects=False)
    assert page.status_code == 200 and 'id="consent-form"' in page.text


def test_less_scope_is_covered(signed_in: TestClient, confidential: Client) -> None:
    connect(signed_in, confidential, scope="read write", resource=RESOURCE)
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, scope="write", resource=RESOURCE
    )
    assert "code" in callback_params(signed_in.get(url, follow_redirects=False))


def test_remembered_consent_is_per_user(
    client: TestClient, services: Services, confidential: Client, alice: Account, admin: Account
) -> None:
    login(client, "alice", PASSWORD)
    connect(client, confidential)
    client.cookies.clear()
    login(client, "admin", PASSWORD)
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    assert client.get(url, follow_redirects=False).status_code == 200


def test_disconnecting_forgets_the_consent(signed_in: TestClient, confidential: Client) -> None:
    connect(signed_in, confidential)
    resp = signed_in.post(
        "/account/apps/disconnect", data={"csrf_token": csrf(signed_in), "app_id": confidential.id}
    )
    assert resp.status_code == 200
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    assert signed_in.get(url, follow_redirects=False).status_code == 200


def test_prompt_consent_shows_the_page_anyway(signed_in: TestClient, confidential: Client) -> None:
    connect(signed_in, confidential)
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, extra={"prompt": "consent"}
    )
    page = signed_in.get(url, follow_redirects=False)
    assert page.status_code == 200
    decided = signed_in.post(
        url, data={"csrf_token": csrf_from(page), "decision": "allow"}, follow_redirects=False
    )
    params = callback_params(decided)
    assert "code" in params


def _register(client: TestClient, uris: list[str]) -> dict[str, Any]:
    resp = client.post(
        "/oauth2/register",
        json={"client_name": "CLI", "redirect_uris": uris, "token_endpoint_auth_method": "none"},
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_self_registered_client_is_remembered_only_for_the_same_redirect_uri(
    signed_in: TestClient,
) -> None:
    loopback, other = "http://127.0.0.1:33418/callback", "https://app.example.com/cb"
    reg = _register(signed_in, [loopback, other])
    connect(signed_in, reg["client_id"], redirect_uri=loopback)
    new_port = "http://127.0.0.1:50123/callback"
    same = authorize_url(reg["client_id"], redirect_uri=new_port, challenge="x" * 43)
    assert "code" in callback_params(signed_in.get(same, follow_redirects=False))
    elsewhere = authorize_url(reg["client_id"], redirect_uri=other, challenge="x" * 43)
    assert signed_in.get(elsewhere, follow_redirects=False).status_code == 200


# First party


def test_first_party_app_skips_consent(signed_in: TestClient, services: Services) -> None:
    app = make_client(services, name="Our portal", first_party=True)
    url = authorize_url(app.id, challenge=generate_pkce().challenge)
    params = callback_params(signed_in.get(url, follow_redirects=False))
    assert "code" in params
    assert granted_events(services)[0]["decided_by"] == "first_party"
    forced = authorize_url(app.id, challenge=generate_pkce().challenge, extra={"prompt": "consent"})
    assert signed_in.get(forced, follow_redirects=False).status_code == 200


def test_first_party_flag_never_skips_for_a_self_registered_client(
    signed_in: TestClient, services: Services
) -> None:
    reg = _register(signed_in, [REDIRECT_URI])
    clients.update_app(services.ctx, SYSTEM, reg["client_id"], clients.AppFields(first_party=True))
    found = services.store.get_app(reg["client_id"])
    assert found is not None and found.first_party
    url = authorize_url(reg["client_id"], challenge=generate_pkce().challenge)
    assert signed_in.get(url, follow_redirects=False).status_code == 200


# prompt=none and prompt=login


def test_prompt_none_without_a_session_is_login_required(
    client: TestClient, confidential: Client
) -> None:
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, extra={"prompt": "none"}
    )
    params = callback_params(client.get(url, follow_redirects=False))
    assert params["error"] == "login_required" and params["state"] == "xyz-state"
    assert params["iss"] == ISSUER and "code" not in params


def test_prompt_none_without_consent_is_consent_required(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, extra={"prompt": "none"}
    )
    params = callback_params(signed_in.get(url, follow_redirects=False))
    assert params["error"] == "consent_required"
    assert issued(services, confidential.id).grants == 0


def test_prompt_none_with_remembered_consent_issues_a_code(
    signed_in: TestClient, confidential: Client
) -> None:
    connect(signed_in, confidential)
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, extra={"prompt": "none"}
    )
    assert "code" in callback_params(signed_in.get(url, follow_redirects=False))


@pytest.mark.parametrize(
    "prompt",
    [pytest.param("none login", id="none-with-login"), pytest.param("bogus", id="unknown")],
)
def test_bad_prompt_is_invalid_request(
    signed_in: TestClient, confidential: Client, prompt: str
) -> None:
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, extra={"prompt": prompt}
    )
    assert callback_params(signed_in.get(url, follow_redirects=False))["error"] == "invalid_request"


def _follow_login(client: TestClient, location: str) -> Response:
    """On the sign-in page ``location`` leads to, sign in as alice; the redirect after."""
    form = client.get(location, follow_redirects=False)
    assert form.status_code == 200 and 'id="login-form"' in form.text
    return_to = re.search(r'name="return_to" value="([^"]*)"', form.text)
    assert return_to is not None
    return client.post(
        "/login",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrf_token": csrf_from(form),
            "return_to": return_to.group(1).replace("&amp;", "&"),
        },
        follow_redirects=False,
    )


def test_prompt_login_asks_a_signed_in_person_to_sign_in_again(
    signed_in: TestClient, confidential: Client, clock: MovableClock
) -> None:
    connect(signed_in, confidential)  # even remembered consent waits for the sign-in
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, extra={"prompt": "login"}
    )
    first = signed_in.get(url, follow_redirects=False)
    assert first.status_code == 302 and first.headers["location"].startswith("/login?")
    assert first.headers["location"].endswith("&prompt=login")
    clock.advance(seconds=1)
    back = _follow_login(signed_in, first.headers["location"])
    assert back.status_code == 303
    target = back.headers["location"]
    assert target.startswith("/oauth2/authorize?") and "authgate_login=" in target
    assert "code" in callback_params(signed_in.get(target, follow_redirects=False))


def test_prompt_login_marker_cannot_be_forged_or_reused_later(
    signed_in: TestClient, confidential: Client, services: Services, clock: MovableClock
) -> None:
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, extra={"prompt": "login"}
    )
    for marker in ("0.abc", "9999999999999." + "0" * 64, consent.login_marker(services.ctx)):
        # Forged, or genuine but made after the session began: a new sign-in is still needed.
        again = signed_in.get(f"{url}&authgate_login={quote(marker)}", follow_redirects=False)
        assert again.headers["location"].startswith("/login?"), marker
    clock.advance(seconds=1)
    back = _follow_login(signed_in, signed_in.get(url, follow_redirects=False).headers["location"])
    clock.advance(minutes=11)
    late = signed_in.get(back.headers["location"], follow_redirects=False)
    assert late.headers["location"].startswith("/login?")


# Switch account


def test_switch_account_signs_out_and_returns_to_the_request(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    page = signed_in.get(url)
    form = re.search(r'id="switch-account-form">(.*?)</form>', page.text, re.S)
    assert form is not None and 'action="/logout"' in page.text
    return_to = re.search(r'name="return_to" value="([^"]+)"', form.group(1))
    assert return_to is not None
    resp = signed_in.post(
        "/logout",
        data={"csrf_token": csrf_from(page), "return_to": return_to.group(1).replace("&amp;", "&")},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    location = resp.headers["location"]
    assert location == "/login?return_to=" + quote(url, safe="")
    assert signed_in.get(url, follow_redirects=False).headers["location"] == location
    events, _ = services.store.list_audit(AuditQuery(action="user.logged_out"))
    assert len(events) == 1


def test_logout_return_to_is_local_only(signed_in: TestClient) -> None:
    page = signed_in.get("/logout")
    resp = signed_in.post(
        "/logout",
        data={"csrf_token": csrf_from(page), "return_to": "https://evil.example/"},
        follow_redirects=False,
    )
    assert resp.headers["location"] == "/login"


# Connected apps


def test_connected_apps_lists_what_each_app_may_do(
    signed_in: TestClient, services: Services, clock: MovableClock
) -> None:
    app = make_client(services, name="<img src=x onerror=alert(1)> Notes")
    connect(signed_in, app, scope="read write", resource=RESOURCE)
    page = signed_in.get("/account/apps")
    assert page.status_code == 200
    assert "&lt;img src=x onerror=alert(1)&gt; Notes" in page.text
    assert "<img src=x" not in page.text
    assert "Example API" in page.text and RESOURCE in page.text
    assert "<code>read</code>: Read your data" in page.text
    assert "<code>write</code>: Change your data" in page.text
    assert "Connected since" in page.text and "Last authorized" in page.text
    # "Last used" is this user's last access token for the app (not the app's, across users):
    # the token was minted at the (frozen) clock's now.
    assert f'Last used <time datetime="{clock.now().isoformat()}">' in page.text
    assert page.headers["cache-control"] == "no-store"


def test_connected_apps_is_empty_for_someone_new(signed_in: TestClient) -> None:
    assert 'id="no-apps"' in signed_in.get("/account/apps").text


def test_disconnect_revokes_tokens_and_is_audited(
    signed_in: TestClient, services: Services, confidential: Client, alice: Account
) -> None:
    body = connect(signed_in, confidential)
    resp = signed_in.post(
        "/account/apps/disconnect",
        data={"csrf_token": csrf(signed_in), "app_id": confidential.id},
        follow_redirects=False,
    )
    assert (
        resp.status_code == 303 and resp.headers["location"] == "/account/apps?notice=disconnected"
    )
    assert issued(services, confidential.id).live_access == 0
    signed_in.cookies.clear()
    me = signed_in.get(
        "/api/v2/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 401
    events, _ = services.store.list_audit(AuditQuery(action="grant.revoked"))
    assert events[0].actor_id == alice.user.id and events[0].target_id == confidential.id


def test_disconnect_without_csrf_changes_nothing(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    connect(signed_in, confidential)
    for token in (None, "0" * 64):
        data = {"app_id": confidential.id} | ({"csrf_token": token} if token else {})
        resp = signed_in.post("/account/apps/disconnect", data=data)
        assert resp.status_code == 403 and '<code id="error-code">access_denied</code>' in resp.text
    assert issued(services, confidential.id).live_access == 1
    _, count = services.store.list_audit(AuditQuery(action="grant.revoked"))
    assert count == 0


def test_disconnect_of_an_app_not_connected_is_404(
    signed_in: TestClient, confidential: Client
) -> None:
    resp = signed_in.post(
        "/account/apps/disconnect", data={"csrf_token": csrf(signed_in), "app_id": confidential.id}
    )
    assert resp.status_code == 404


def test_connected_apps_needs_a_session(client: TestClient) -> None:
    resp = client.get("/account/apps", follow_redirects=False)
    assert resp.headers["location"] == "/login?return_to=%2Faccount%2Fapps"
    assert client.post("/account/apps/disconnect", follow_redirects=False).status_code == 303


# Headers, escaping, branding


@pytest.mark.parametrize("path", ["/login", "/account/apps", "/", "/logout"])
def test_every_page_sends_the_security_headers(signed_in: TestClient, path: str) -> None:
    resp = signed_in.get(path)
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    for part in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert part in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["cache-control"] == "no-store"
    assert "<script>" not in resp.text and " style=" not in resp.text


def test_error_page_escapes_what_the_client_sent(client: TestClient) -> None:
    resp = client.get("/oauth2/authorize?client_id=%3Cscript%3Ealert(1)%3C/script%3E")
    assert resp.status_code == 400
    assert "<script>alert" not in resp.text
    assert re.search(r"Request ID: <code>[0-9a-f-]{36}</code>", resp.text)


def test_branding_and_template_override(
    tmp_path: Path, settings: Settings, services: Services, alice: Account
) -> None:
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "login.html").write_text(
        '{% extends "authgate/login.html" %}{% block title %}Welcome to {{ brand.name }}'
        "{% endblock %}"
    )
    branded = settings.model_copy(
        update={
            "brand_name": "Acme <Login>",
            "brand_accent_color": "#ffd33d",
            "brand_support_url": "https://help.acme.example/",
            "brand_logo_url": "https://cdn.acme.example/logo.png",
            "template_dir": str(custom),
        }
    )
    with TestClient(create_app(branded, services=services), base_url=ISSUER) as client:
        page = client.get("/login")
        assert "<title>Welcome to Acme &lt;Login&gt;</title>" in page.text
        assert 'href="https://help.acme.example/"' in page.text
        assert 'src="https://cdn.acme.example/logo.png"' in page.text
        assert 'id="login-form"' in page.text  # the built-in page, extended
        css = client.get("/branding.css")
        assert css.headers["content-type"].startswith("text/css")
        assert "--accent: #ffd33d; --accent-text: #000000;" in css.text  # dark text on yellow
        assert css.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("accent", "text"), [("#2457d6", "#ffffff"), ("#ffffff", "#000000"), ("#000000", "#ffffff")]
)
def test_accent_text_contrasts(accent: str, text: str) -> None:
    assert Branding(accent=accent).accent_text == text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("brand_accent_color", "red; } body { display:none"),
        ("brand_logo_url", "javascript:alert(1)"),
        ("brand_logo_url", "//evil.example/x.png"),
        ("brand_support_url", "javascript:alert(1)"),
        ("template_dir", "/nonexistent/dir"),
    ],
)
def test_branding_settings_are_validated(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        values: dict[str, Any] = {field: value}
        Settings(**values)


def test_consent_page_hides_an_unverified_clients_logo(signed_in: TestClient) -> None:
    resp = signed_in.post(
        "/oauth2/register",
        json={
            "client_name": "Logo",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "logo_uri": "https://evil.example/bank-logo.png",
        },
    )
    reg = resp.json()
    page = signed_in.get(authorize_url(reg["client_id"], challenge=generate_pkce().challenge))
    assert page.status_code == 200 and "bank-logo.png" not in page.text
