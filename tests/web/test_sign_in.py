"""Sign-in, sessions, sign-out and the user's own withdrawal of an app (DELETE /oauth2/tokens)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.models import AuditQuery
from tests.clock import MovableClock
from tests.conftest import PASSWORD, Account, Client, issued
from tests.flows import (
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
    session_csrf,
)


def _csrf(client: TestClient, path: str = "/login") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match is not None
    return match.group(1)


def test_sign_in_sets_a_hardened_cookie_and_stores_only_a_hash(
    client: TestClient, services: Services, alice: Account
) -> None:
    token = _csrf(client)
    resp = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token, "return_to": "/"},
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/"
    cookie = next(
        c for c in resp.headers.get_list("set-cookie") if c.startswith("authgate_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # http issuer in tests; https issuers set Secure
    value = cookie.split(";")[0].split("=", 1)[1]
    with services.store.engine.connect() as conn:
        hashes = [r[0] for r in conn.execute(sa.text("SELECT token_hash FROM sessions"))]
    assert len(hashes) == 1 and value not in hashes[0]
    events, _ = services.store.list_audit(AuditQuery(action="user.logged_in"))
    assert events[0].actor_id == alice.user.id


def test_failed_sign_in_says_the_same_for_unknown_and_wrong(
    client: TestClient, services: Services, alice: Account
) -> None:
    bodies = []
    for username, password in (("alice", "wrong password"), ("nobody", "wrong password")):
        resp = client.post(
            "/login", data={"username": username, "password": password, "csrf_token": _csrf(client)}
        )
        assert resp.status_code == 401
        assert "Incorrect username or password." in resp.text
        # The request id, and the reference (its start) that finds the attempt's flow, differ.
        rid = resp.headers["x-request-id"]
        bodies.append(resp.text.replace(rid, "").replace(rid[:8], ""))

    def strip(text: str) -> str:
        return re.sub(r'value="[^"]{20,}"', "", text)

    assert strip(bodies[0]) == strip(bodies[1])
    assert "authgate_session" not in client.cookies
    events, count = services.store.list_audit(AuditQuery(action="user.login_failed"))
    assert count == 2
    assert all("wrong password" not in str(e.details) for e in events)


def test_sign_in_without_csrf_is_refused(client: TestClient, alice: Account) -> None:
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 403
    assert "authgate_session" not in client.cookies


def test_return_to_accepts_only_local_paths(client: TestClient, alice: Account) -> None:
    for target, expected in (
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/oauth2/authorize?x=1", "/oauth2/authorize?x=1"),
    ):
        client.cookies.clear()
        resp = client.post(
            "/login",
            data={
                "username": "alice",
                "password": PASSWORD,
                "csrf_token": _csrf(client),
                "return_to": target,
            },
            follow_redirects=False,
        )
        assert resp.headers["location"] == expected


def test_disabled_user_cannot_sign_in(
    client: TestClient, services: Services, alice: Account
) -> None:
    from authgate.core import accounts
    from authgate.core.context import SYSTEM

    accounts.update_user(services.ctx, SYSTEM, alice.user.id, disabled=True)
    resp = client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": _csrf(client)}
    )
    assert resp.status_code == 401


def test_session_expires(signed_in: TestClient, clock: MovableClock) -> None:
    assert signed_in.get("/", follow_redirects=False).status_code == 200
    clock.advance(hours=13)
    assert signed_in.get("/", follow_redirects=False).status_code == 302


def test_logout_ends_the_session(signed_in: TestClient, services: Services) -> None:
    token = _csrf(signed_in, "/logout")
    resp = signed_in.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303
    with services.store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar_one() == 0


def test_withdraw_app_revokes_codes_and_tokens(
    signed_in: TestClient, services: Services, confidential: Client, alice: Account
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    body = assert_token_response(
        exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
        )
    )
    pending = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    forged = signed_in.delete(f"/oauth2/tokens?client_id={confidential.id}")
    assert forged.status_code == 403
    assert issued(services, confidential.id).live_access == 1
    resp = signed_in.delete(
        f"/oauth2/tokens?client_id={confidential.id}", headers=session_csrf(signed_in)
    )
    assert resp.status_code == 204
    assert issued(services, confidential.id).live_access == 0
    late = exchange_code(
        signed_in,
        pending,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=pkce.verifier,
    )
    assert late.status_code == 400
    signed_in.cookies.clear()
    me = signed_in.get(
        "/api/v2/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 401
    events, _ = services.store.list_audit(AuditQuery(action="grant.revoked"))
    assert events[0].actor_id == alice.user.id and events[0].target_id == confidential.id


def test_withdraw_needs_a_user_and_a_known_app(client: TestClient, alice: Account) -> None:
    assert client.delete("/oauth2/tokens?client_id=x").status_code == 401
    login(client, "alice", PASSWORD)
    header = session_csrf(client)
    missing = client.delete("/oauth2/tokens", headers=header)
    assert missing.status_code == 400
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.delete("/oauth2/tokens?client_id=nope", headers=header).status_code == 404
