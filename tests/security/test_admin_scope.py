"""The keys to authgate itself: its own `admin` scope, and the user's own account surfaces.

Sources: RFC 6749 §3.3 (the server may narrow the requested scope by policy and says so in
`scope`), RFC 6750 §3.1, RFC 9700 §2.3 (privilege restriction: least privilege), DESIGN.md §7
("authgate's own admin scopes: only for apps an operator created and marked for them; never
for self-registered or document clients"). Each attack runs over real HTTP against a running
authgate (`live`) and asserts the refusal and that nothing was created or changed.
"""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa

from authgate.app import Services
from authgate.core import clients, resources
from authgate.core.context import SYSTEM
from authgate.core.models import ScopeInfo
from tests.conftest import Account, Client, make_client
from tests.flows import (
    REDIRECT_URI,
    authorize_url,
    callback_params,
    csrf_from,
    generate_pkce,
    login,
)
from tests.security.helpers import assert_error_page, snapshot
from tests.security.live import Live

API = "/api/v2"
NEW_USER = {"username": "mallory", "password": "correct horse battery staple 9"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _users(services: Services) -> int:
    with services.store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one())


def _with_profile_scope(services: Services) -> None:
    """authgate's API resource with a second, harmless scope next to `admin`."""
    own = resources.lookup(services.ctx, services.ctx.policy.audience)
    resources.update_resource(
        services.ctx,
        SYSTEM,
        own.id,
        resources.ResourceFields(scopes=[*own.scopes, ScopeInfo("profile", "Read your profile")]),
    )


def _register(http: httpx.Client) -> str:
    resp = http.post(
        "/oauth2/register",
        json={
            "client_name": "Totally the admin tool",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "admin profile",
        },
    )
    assert resp.status_code == 201, resp.text
    client_id: str = resp.json()["client_id"]
    return client_id


def _consent(http: httpx.Client, url: str) -> tuple[httpx.Response, dict[str, str]]:
    """Show the consent page and allow it: the page, and the redirect's parameters."""
    page = http.get(url)
    assert page.status_code == 200, page.text
    resp = http.post(url, data={"csrf_token": csrf_from(page), "decision": "allow"})
    return page, callback_params(resp)


def _token(http: httpx.Client, client_id: str, secret: str | None, **kw: str) -> httpx.Response:
    data = {"client_id": client_id, **kw}
    if secret is not None:
        data["client_secret"] = secret
    return http.post("/oauth2/tokens", data=data)


def _authorized_token(
    http: httpx.Client, client_id: str, secret: str | None, scope: str
) -> tuple[httpx.Response, dict[str, Any]]:
    pkce = generate_pkce()
    page, got = _consent(http, authorize_url(client_id, challenge=pkce.challenge, scope=scope))
    resp = _token(
        http,
        client_id,
        secret,
        grant_type="authorization_code",
        code=got["code"],
        redirect_uri=REDIRECT_URI,
        code_verifier=pkce.verifier,
    )
    assert resp.status_code == 200, resp.text
    return page, resp.json()


def _create_user(http: httpx.Client, token: str) -> httpx.Response:
    return http.post(f"{API}/users", json=NEW_USER, headers=_bearer(token))


def _assert_forbidden(resp: httpx.Response, *, scope_challenge: bool) -> dict[str, Any]:
    assert resp.status_code == 403, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["status"] == 403 and body["detail"]
    challenge = resp.headers.get("www-authenticate", "")
    assert ('error="insufficient_scope"' in challenge) is scope_challenge, challenge
    return body


def test_self_registered_client_asking_only_for_admin_is_refused_with_a_page(
    live: Live, services: Services, admin: Account
) -> None:
    """The attack of the issue: an unverified client asks an administrator for `admin`."""
    with live.client() as attacker, live.client() as browser:
        client_id = _register(attacker)
        login(browser, admin.user.username, admin.password)
        before = snapshot(services)
        url = authorize_url(client_id, challenge=generate_pkce().challenge, scope="admin")
        for resp in (browser.get(url), browser.post(url, data={"decision": "allow"})):
            # Never consented to: the error is a page, not a redirect (RFC 9700 §4.11.2).
            assert_error_page(resp, 400, "invalid_scope", "only for apps an operator created")
        assert snapshot(services) == before


def test_self_registered_client_gets_admin_narrowed_away(
    live: Live, services: Services, admin: Account
) -> None:
    _with_profile_scope(services)
    with live.client() as attacker, live.client() as browser:
        client_id = _register(attacker)
        login(browser, admin.user.username, admin.password)
        page, body = _authorized_token(browser, client_id, None, "admin profile")
        # The consent page asked only for what can be granted; the response says what was.
        assert "<li><code>profile</code>" in page.text
        assert "<code>admin</code>" not in page.text
        assert body["scope"] == "profile"
        users = _users(services)
        forbidden = _create_user(attacker, body["access_token"])
        _assert_forbidden(forbidden, scope_challenge=True)
        assert _users(services) == users
        assert services.store.get_user_by_username("mallory") is None
        # A refresh cannot bring it back either.
        again = _token(
            attacker,
            client_id,
            None,
            grant_type="refresh_token",
            refresh_token=body["refresh_token"],
            scope="admin",
        )
        assert again.status_code == 400 and again.json()["error"] == "invalid_scope"


def test_self_registered_client_cannot_be_marked_for_admin_access(
    live: Live, services: Services, admin: Account
) -> None:
    with live.client() as attacker:
        client_id = _register(attacker)
        before = snapshot(services)
        resp = attacker.put(
            f"{API}/oauth2-provider/apps/{client_id}",
            json={"name": "Totally the admin tool", "admin_access": True},
            headers=_bearer(admin.api_token),
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["validations"]["admin_access"] == "only for apps an operator created"
        assert snapshot(services) == before
        stored = services.store.get_app(client_id)
        assert stored is not None and stored.admin_access is False


def test_operator_app_without_admin_access_gets_no_admin(
    live: Live, services: Services, admin: Account
) -> None:
    _with_profile_scope(services)
    app = make_client(services)
    with live.client() as browser:
        login(browser, admin.user.username, admin.password)
        before = snapshot(services)
        url = authorize_url(app.id, challenge=generate_pkce().challenge, scope="admin")
        got = callback_params(browser.get(url))
        # An operator's app keeps the error redirect, with state and iss (RFC 9207).
        assert got["error"] == "invalid_scope"
        assert (got["state"], got["iss"]) == ("xyz-state", services.ctx.policy.issuer)
        assert snapshot(services) == before
        _, body = _authorized_token(browser, app.id, app.secret, "admin profile")
        assert body["scope"] == "profile"
        users = _users(services)
        _assert_forbidden(_create_user(browser, body["access_token"]), scope_challenge=True)
        assert _users(services) == users


def test_service_access_to_admin_does_not_stand_in_for_the_mark(
    live: Live, services: Services
) -> None:
    """An operator's client_credentials grant of ``admin`` on authgate's API does not replace
    the admin mark: the scope is withheld, and asking for it alone is ``invalid_scope``."""
    _with_profile_scope(services)
    own = services.ctx.policy.audience
    app = make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={own: ["admin", "profile"]},
    )
    creds = {"grant_type": "client_credentials", "resource": own}
    before = snapshot(services)
    with live.client() as http:
        asked = _token(http, app.id, app.secret, scope="admin", **creds)
        assert asked.status_code == 400, asked.text
        assert asked.json()["error"] == "invalid_scope" and "access_token" not in asked.json()
        assert snapshot(services) == before
        narrowed = _token(http, app.id, app.secret, **creds)
        assert narrowed.status_code == 200, narrowed.text
        assert narrowed.json()["scope"] == "profile"
        users = _users(services)
        # Nor does a service token act on the management API, which acts for a user.
        denied = _create_user(http, narrowed.json()["access_token"])
        assert denied.status_code == 401 and "user" in denied.json()["detail"]
        assert _users(services) == users


def test_marked_operator_app_gets_admin_until_the_mark_is_removed(
    live: Live, services: Services, admin: Account
) -> None:
    app = make_client(services, admin_access=True)
    with live.client() as browser:
        login(browser, admin.user.username, admin.password)
        page, body = _authorized_token(browser, app.id, app.secret, "admin")
        assert "<li><code>admin</code>" in page.text
        assert body["scope"] == "admin"
        created = _create_user(browser, body["access_token"])
        assert created.status_code == 201, created.text
        assert services.store.get_user_by_username("mallory") is not None
        # The operator removes the mark: the token already issued stops working at once.
        unmark = browser.put(
            f"{API}/oauth2-provider/apps/{app.id}",
            json={"name": app.app.name, "admin_access": False},
            headers=_bearer(admin.api_token),
        )
        assert unmark.status_code == 200 and unmark.json()["admin_access"] is False
        users = _users(services)
        other = {**NEW_USER, "username": "mallory2"}
        denied = browser.post(f"{API}/users", json=other, headers=_bearer(body["access_token"]))
        _assert_forbidden(denied, scope_challenge=True)
        assert _users(services) == users
        # Its refresh token no longer carries the scope, and cannot ask for it.
        asked = _token(
            browser,
            app.id,
            app.secret,
            grant_type="refresh_token",
            refresh_token=body["refresh_token"],
            scope="admin",
        )
        assert asked.status_code == 400 and asked.json()["error"] == "invalid_scope"
        rotated = _token(
            browser,
            app.id,
            app.secret,
            grant_type="refresh_token",
            refresh_token=body["refresh_token"],
        )
        assert rotated.status_code == 200, rotated.text
        assert "scope" not in rotated.json()
        [event] = [
            e
            for e in services.store.list_audit(_audit_query("app.updated"))[0]
            if e.target_id == app.id
        ]
        assert event.details["admin_access"] is False


def _audit_query(action: str) -> Any:
    from authgate.core.models import AuditQuery

    return AuditQuery(action=action)


def test_third_party_app_token_cannot_touch_the_users_apps_or_mint_api_tokens(
    live: Live, services: Services, alice: Account
) -> None:
    """An app's OAuth token for authgate's API acts for the user, but not as the user: it may
    not list or disconnect the user's other apps nor mint a personal API token."""
    other: Client = make_client(services, name="Mail")
    nosy: Client = make_client(services, name="Nosy")
    with live.client() as browser:
        login(browser, alice.user.username, alice.password)
        _authorized_token(browser, other.id, other.secret, "")
        _, body = _authorized_token(browser, nosy.id, nosy.secret, "")
        token = _bearer(body["access_token"])
        browser.cookies.clear()
        assert browser.get(f"{API}/users/me", headers=token).status_code == 200
        before = snapshot(services)
        attempts = [
            browser.get(f"{API}/users/me/apps", headers=token),
            browser.get(
                f"{API}/oauth2-provider/apps", params={"user_id": alice.user.id}, headers=token
            ),
            browser.delete(f"{API}/users/me/apps/{other.id}", headers=token),
            browser.delete("/oauth2/tokens", params={"client_id": other.id}, headers=token),
            browser.post(f"{API}/users/me/tokens", json={"name": "forever"}, headers=token),
            browser.get(f"{API}/users/me/tokens", headers=token),
        ]
        for resp in attempts:
            problem = _assert_forbidden(resp, scope_challenge=False)
            assert "browser session or a personal API token" in problem["detail"]
            assert other.id not in resp.text
        assert snapshot(services) == before
        assert len(services.store.list_api_tokens(alice.user.id)) == 1
        # The user's own credential still does all of it.
        mine = browser.get(f"{API}/users/me/apps", headers=_bearer(alice.api_token))
        assert sorted(a["id"] for a in mine.json()) == sorted([other.id, nosy.id])


def test_admin_access_is_set_and_shown_by_the_api(
    live: Live, services: Services, admin: Account
) -> None:
    with live.client() as http:
        made = http.post(
            f"{API}/oauth2-provider/apps",
            json={"name": "Ops console", "redirect_uris": [REDIRECT_URI], "admin_access": True},
            headers=_bearer(admin.api_token),
        )
        assert made.status_code == 201, made.text
        assert made.json()["admin_access"] is True
        stored = clients.get_app(services.ctx, made.json()["id"])
        assert stored.admin_access is True
        [event] = services.store.list_audit(_audit_query("app.created"))[0]
        assert event.details["admin_access"] is True
        listed = http.get(f"{API}/oauth2-provider/apps", headers=_bearer(admin.api_token))
        assert [a["admin_access"] for a in listed.json()] == [True]
