"""Cross-site request forgery, clickjacking, session fixation and consent bypass.

Sources: RFC 6749 §10.12 (CSRF against the redirect URI and the authorization endpoint) and
§10.13 (clickjacking: X-Frame-Options), RFC 6819 §4.4.1.8 (CSRF on the authorization
endpoint), §4.4.1.9 (clickjacking) and §5.1.5.x, RFC 9700 §4.7 (CSRF) and §4.16 (clickjacking:
CSP ``frame-ancestors``), OAuth 2.1 draft §7.13, OWASP session fixation (CWE-384: the session
identifier must change on sign-in, a pre-set identifier is never adopted) and login CSRF.

Every refused form changes nothing: no code, grant, app, user, key, setting or session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import accounts, consent
from authgate.core.context import SYSTEM
from authgate.crypto import secrets
from tests.conftest import Account, Client
from tests.flows import (
    assert_token_response,
    authorize,
    authorize_url,
    callback_params,
    csrf_from,
    exchange_code,
    generate_pkce,
    login,
)
from tests.http_types import Response
from tests.security.helpers import (
    assert_error_page,
    assert_unframable,
    code_count,
    page_csrf,
    snapshot,
)


def _other_session_token(services: Services, user: Account) -> str:
    """The CSRF token of another live session (of ``user``): valid, but not this session's."""
    session, _ = accounts.start_session(services.ctx, SYSTEM, user.user)
    return consent.csrf_token(services.ctx, session.id)


def _bad_tokens(services: Services, other: Account) -> dict[str, str | None]:
    return {
        "missing": None,
        "empty": "",
        "wrong": "0" * 64,
        "other-session": _other_session_token(services, other),
        "truncated": None,  # filled in by the test: this session's token minus a character
    }


# Admin console forms (RFC 6819 §4.4.1.8 applies to every state-changing form).

ADMIN_FORMS: list[Any] = [
    pytest.param("/admin/apps/new", {"name": "Forged", "redirect_uris": "https://x.example/cb"},
                 id="7.13-admin-create-app"),
    pytest.param("/admin/apps/{app}/delete", {}, id="7.13-admin-delete-app"),
    pytest.param("/admin/apps/{app}/secrets", {}, id="7.13-admin-new-secret"),
    pytest.param("/admin/apps/{app}", {"name": "Renamed", "redirect_uris": "https://x.example/cb"},
                 id="7.13-admin-update-app"),
    pytest.param("/admin/users", {"username": "mallory", "password": "p" * 16},
                 id="7.13-admin-create-user"),
    pytest.param("/admin/users/{alice}/disable", {}, id="7.13-admin-disable-user"),
    pytest.param("/admin/users/{alice}/password", {"password": "p" * 16},
                 id="7.13-admin-reset-password"),
    pytest.param("/admin/keys/rotate", {}, id="7.13-admin-rotate-keys"),
    pytest.param("/admin/settings", {"registration_max_clients": "1"},
                 id="7.13-admin-settings"),
    pytest.param("/admin/resources", {"identifier": "https://forged.example", "name": "F"},
                 id="7.13-admin-create-resource"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "form"), ADMIN_FORMS)
def test_admin_form_without_this_sessions_csrf_token_changes_nothing(
    client: TestClient,
    services: Services,
    admin: Account,
    alice: Account,
    confidential: Client,
    path: str,
    form: dict[str, str],
) -> None:
    login(client, admin.user.username, admin.password)
    target = path.format(app=confidential.id, alice=alice.user.id)
    tokens = _bad_tokens(services, admin)
    tokens["truncated"] = page_csrf(client)[:-1]
    before = snapshot(services)
    victim, app = services.store.get_user(alice.user.id), services.store.get_app(confidential.id)
    for name, token in tokens.items():
        data = dict(form)
        if token is not None:
            data["csrf_token"] = token
        resp = client.post(
            target, data=data, headers={"Origin": "https://evil.example"}, follow_redirects=False
        )
        assert_error_page(resp, 403, "access_denied", "The form expired")
        assert snapshot(services).rows == before.rows, name
    after = snapshot(services)
    assert after.revoked_grants == before.revoked_grants
    assert services.store.get_user(alice.user.id) == victim
    assert services.store.get_app(confidential.id) == app


def test_admin_form_with_the_right_token_works(
    client: TestClient, services: Services, admin: Account
) -> None:
    """The control for the table above: the same form with this session's token succeeds."""
    login(client, admin.user.username, admin.password)
    before = snapshot(services).rows["users"]
    resp = client.post(
        "/admin/users",
        data={"username": "mallory", "password": "p" * 16, "csrf_token": page_csrf(client)},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    assert snapshot(services).rows["users"] == before + 1


def test_non_admin_with_a_valid_token_is_refused(signed_in: TestClient, services: Services) -> None:
    before = snapshot(services)
    resp = signed_in.post(
        "/admin/users",
        data={"username": "mallory", "password": "p" * 16, "csrf_token": page_csrf(signed_in)},
        follow_redirects=False,
    )
    assert_error_page(resp, 403, "access_denied", "for administrators")
    assert snapshot(services) == before


def test_disconnect_app_without_csrf_keeps_the_grant(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 6819 §4.4.1.8: a forged "disconnect" must not revoke the user's grant."""
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    assert_token_response(
        exchange_code(
            signed_in, code, client_id=confidential.id, client_secret=confidential.secret,
            verifier=pkce.verifier,
        )
    )  # fmt: skip
    before = snapshot(services)
    resp = signed_in.post(
        "/account/apps/disconnect",
        data={"app_id": confidential.id, "csrf_token": "0" * 64},
        follow_redirects=False,
    )
    assert_error_page(resp, 403, "access_denied")
    assert snapshot(services) == before


def test_logout_without_csrf_does_not_end_the_session(
    signed_in: TestClient, services: Services
) -> None:
    """A cross-site sign-out (logout CSRF) leaves the server-side session alive."""
    cookie = signed_in.cookies["authgate_session"]
    before = snapshot(services)
    resp = signed_in.post("/logout", data={"csrf_token": "x" * 64}, follow_redirects=False)
    # Refused outright (issue 16): 403 with the sign-out form again, and the cookie kept.
    assert resp.status_code == 403 and "location" not in resp.headers
    assert "set-cookie" not in resp.headers
    assert snapshot(services) == before
    assert accounts.resolve_session(services.ctx, cookie) is not None


# Login CSRF (RFC 6749 §10.12; the sign-in form has its own double-submit token).


def test_login_csrf_is_refused(client: TestClient, services: Services, alice: Account) -> None:
    """Login CSRF: a cross-site form signing the victim into the attacker's account."""
    before = snapshot(services)
    for cookie, sent in [(None, "abc"), ("abc", None), ("abc", "abd"), ("", "")]:
        client.cookies.clear()
        if cookie is not None:
            client.cookies.set("authgate_login_csrf", cookie, path="/login")
        data = {"username": alice.user.username, "password": alice.password}
        if sent is not None:
            data["csrf_token"] = sent
        resp = client.post("/login", data=data, follow_redirects=False)
        assert resp.status_code == 403, (cookie, sent)
        assert "location" not in resp.headers
        assert "Your sign-in form expired" in resp.text
        assert_unframable(resp)
        assert "authgate_session" not in resp.headers.get("set-cookie", "")
    assert snapshot(services) == before


# Session fixation (CWE-384).


def _sign_in(client: TestClient, account: Account) -> Response:
    # prompt=login: the form even when the browser already carries a (planted) session.
    page = client.get("/login?prompt=login")
    return client.post(
        "/login",
        data={
            "username": account.user.username,
            "password": account.password,
            "csrf_token": csrf_from(page),
        },
        follow_redirects=False,
    )


def _set_cookie_value(resp: Response) -> str:
    for header in resp.headers.get_list("set-cookie"):
        if header.startswith("authgate_session="):
            return header.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError(resp.headers)


@pytest.mark.parametrize(
    "planted",
    [
        pytest.param("attacker-chosen-value", id="cwe384-arbitrary-value"),
        pytest.param(secrets.generate("ses").value, id="cwe384-well-formed-unknown"),
    ],
)
def test_planted_session_cookie_is_never_adopted(
    client: TestClient, services: Services, alice: Account, planted: str
) -> None:
    client.cookies.set("authgate_session", planted)
    resp = _sign_in(client, alice)
    assert resp.status_code == 303
    issued = _set_cookie_value(resp)
    assert issued != planted
    assert accounts.resolve_session(services.ctx, planted) is None
    who = accounts.resolve_session(services.ctx, issued)
    assert who is not None and who.user.id == alice.user.id


def test_attackers_own_session_is_replaced_on_sign_in(
    client: TestClient, services: Services, alice: Account, admin: Account
) -> None:
    """The attacker plants their own valid session; the victim signs in: the victim gets a new
    session, and the attacker's cookie still names only the attacker."""
    _, attacker_cookie = accounts.start_session(services.ctx, SYSTEM, admin.user)
    client.cookies.set("authgate_session", attacker_cookie)
    resp = _sign_in(client, alice)
    issued = _set_cookie_value(resp)
    assert issued != attacker_cookie
    attacker = accounts.resolve_session(services.ctx, attacker_cookie)
    assert attacker is not None and attacker.user.id == admin.user.id
    victim = accounts.resolve_session(services.ctx, issued)
    assert victim is not None and victim.user.id == alice.user.id


def test_session_cookie_changes_on_every_sign_in_and_dies_on_sign_out(
    client: TestClient, services: Services, alice: Account
) -> None:
    first = _set_cookie_value(_sign_in(client, alice))
    second = _set_cookie_value(_sign_in(client, alice))
    assert first != second
    header = next(
        h for h in _sign_in(client, alice).headers.get_list("set-cookie")
        if h.startswith("authgate_session=")
    )  # fmt: skip
    assert "HttpOnly" in header and "SameSite=lax" in header and "Path=/" in header
    current = client.cookies["authgate_session"]
    client.post("/logout", data={"csrf_token": page_csrf(client)}, follow_redirects=False)
    assert accounts.resolve_session(services.ctx, current) is None
    client.cookies.set("authgate_session", current)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


# Consent bypass (RFC 6819 §4.4.1.8, RFC 9700 §4.7).


def _consent_url(app: Client) -> str:
    return authorize_url(app.id, challenge=generate_pkce().challenge)


Forge = Callable[[TestClient, Services, Account], dict[str, str]]

CONSENT_FORGERIES: list[Any] = [
    pytest.param(lambda c, s, a: {"decision": "allow"}, id="6819-4.4.1.8-no-prior-get-no-token"),
    pytest.param(lambda c, s, a: {"decision": "allow", "csrf_token": "0" * 64},
                 id="6819-4.4.1.8-guessed-token"),
    pytest.param(lambda c, s, a: {"decision": "allow",
                                  "csrf_token": _other_session_token(s, a)},
                 id="9700-4.7-token-of-another-users-session"),
    pytest.param(lambda c, s, a: {"decision": "allow",
                                  "csrf_token": c.cookies.get("authgate_login_csrf") or "x"},
                 id="9700-4.7-login-form-token"),
    pytest.param(lambda c, s, a: {"decision": "allow",
                                  "csrf_token": c.cookies["authgate_session"]},
                 id="9700-4.7-session-cookie-as-token"),
    pytest.param(lambda c, s, a: {"decision": "allow",
                                  "csrf_token": page_csrf(c).upper()},
                 id="9700-4.7-token-case-changed"),
]  # fmt: skip


@pytest.mark.parametrize("forge", CONSENT_FORGERIES)
def test_forged_consent_post_issues_nothing(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    admin: Account,
    forge: Forge,
) -> None:
    url = _consent_url(confidential)
    data = forge(signed_in, services, admin)
    before = snapshot(services)
    resp = signed_in.post(
        url, data=data, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert_error_page(resp, 403, "access_denied", "The consent form expired")
    assert code_count(services) == 0
    assert snapshot(services) == before


def test_consent_decision_must_be_allow_or_deny(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    url = _consent_url(confidential)
    token = csrf_from(signed_in.get(url))
    for decision in ("", "ALLOW", "allow ", "yes", "allow,deny"):
        resp = signed_in.post(
            url, data={"decision": decision, "csrf_token": token}, follow_redirects=False
        )
        assert_error_page(resp, 400, "invalid_request", "Choose Allow or Deny")
    assert code_count(services) == 0


def test_consent_form_replayed_after_sign_out_goes_to_sign_in(
    signed_in: TestClient, services: Services, confidential: Client, alice: Account
) -> None:
    url = _consent_url(confidential)
    token = csrf_from(signed_in.get(url))
    signed_in.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    resp = signed_in.post(
        url, data={"decision": "allow", "csrf_token": token}, follow_redirects=False
    )
    assert resp.status_code == 302
    assert resp.headers["location"].startswith("/login?return_to=%2Foauth2%2Fauthorize")
    # Signed in again (a new session), the old form's token is worthless.
    login(signed_in, alice.user.username, alice.password)
    replay = signed_in.post(
        url, data={"decision": "allow", "csrf_token": token}, follow_redirects=False
    )
    assert_error_page(replay, 403, "access_denied")
    assert code_count(services) == 0


def test_prompt_none_never_consents_silently(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """OIDC Core §3.1.2.1: prompt=none cannot be used to skip the consent a user never gave."""
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, extra={"prompt": "none"}
    )
    got = callback_params(signed_in.get(url, follow_redirects=False))
    assert got["error"] == "consent_required" and "code" not in got
    assert code_count(services) == 0


def test_self_registered_first_party_claim_does_not_skip_consent(
    signed_in: TestClient, services: Services
) -> None:
    """RFC 7591 §5: a client cannot declare itself trusted; its consent page is always shown."""
    resp = signed_in.post(
        "/oauth2/register",
        json={
            "client_name": "Sneaky",
            "redirect_uris": ["http://localhost:9876/callback"],
            "token_endpoint_auth_method": "none",
            "first_party": True,
            "skip_consent": True,
        },
    )
    assert resp.status_code == 201, resp.text
    url = authorize_url(resp.json()["client_id"], challenge=generate_pkce().challenge)
    page = signed_in.get(url, follow_redirects=False)
    assert page.status_code == 200 and 'id="identity"' in page.text
    assert code_count(services) == 0


# Clickjacking: every page refuses to be framed (RFC 6749 §10.13, RFC 9700 §4.16).

USER_PAGES = [
    "/login?prompt=login",
    "/logout",
    "/",
    "/account/apps",
    "{consent}",
    "/oauth2/authorize?client_id=nope",
]
ADMIN_PAGES = [
    "/admin",
    "/admin/apps",
    "/admin/apps/new",
    "/admin/apps/{app}",
    "/admin/users",
    "/admin/resources",
    "/admin/keys",
    "/admin/settings",
    "/admin/audit",
]


@pytest.mark.parametrize(
    "pages", [USER_PAGES, ADMIN_PAGES], ids=["10.13-user-pages", "10.13-admin-pages"]
)
def test_every_page_refuses_framing(
    client: TestClient, admin: Account, confidential: Client, pages: list[str]
) -> None:
    login(client, admin.user.username, admin.password)
    for path in pages:
        url = path.format(consent=_consent_url(confidential), app=confidential.id)
        resp = client.get(url, follow_redirects=False)
        assert resp.status_code in (200, 400), (path, resp.status_code)
        assert resp.headers["content-type"].startswith("text/html"), path
        assert_unframable(resp)
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["cache-control"] == "no-store"
        assert "access-control-allow-origin" not in resp.headers
