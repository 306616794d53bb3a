"""Sign-out without its CSRF token changes nothing; cookies are ``__Host-`` cookies over https.

- A ``POST /logout`` without this session's CSRF token (a cross-site form, RFC 9700 §4.7) used
  to clear the cookie while the server session lived on: a forged sign-out that also left a
  live session behind. Now it changes nothing — no ``Set-Cookie``, the session row stays — and
  answers 403 with the sign-out form; with the token it signs out as before.
- With an https issuer every authgate cookie is named ``__Host-…`` with ``Secure``, ``Path=/``
  and no ``Domain`` (RFC 6265bis §4.1.3.2), so a sibling subdomain cannot plant or overwrite it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services, create_app
from authgate.config import Settings
from authgate.core import accounts
from tests.conftest import Account
from tests.flows import csrf_from
from tests.http_types import Response
from tests.security.helpers import assert_unframable, page_csrf
from tests.security.live import Live


def sessions_of(services: Services, user_id: str) -> int:
    with services.store.engine.connect() as conn:
        sql = sa.text("SELECT count(*) FROM sessions WHERE user_id = :u")
        return int(conn.execute(sql, {"u": user_id}).scalar_one())


def sign_in(browser: httpx.Client | TestClient, account: Account) -> Response:
    token = csrf_from(browser.get("/login"))
    return browser.post(
        "/login",
        data={"username": account.user.username, "password": account.password, "csrf_token": token},
    )


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(None, id="9700-4.7-no-token"),
        pytest.param("", id="9700-4.7-empty-token"),
        pytest.param("0" * 64, id="9700-4.7-guessed-token"),
    ],
)
def test_logout_without_this_sessions_token_changes_nothing(
    live: Live, services: Services, alice: Account, sent: str | None
) -> None:
    with live.client() as browser:
        assert sign_in(browser, alice).status_code == 303
        cookie = browser.cookies["authgate_session"]
        data = {"return_to": "/account/apps"} | ({} if sent is None else {"csrf_token": sent})
        resp = browser.post("/logout", data=data, headers={"Origin": "https://evil.example"})

        assert resp.status_code == 403, resp.text
        assert "location" not in resp.headers
        assert "set-cookie" not in resp.headers  # the cookie is not cleared...
        assert resp.headers["content-type"].startswith("text/html")
        assert "so you are still signed in" in resp.text
        assert_unframable(resp)
        # ...and the server session lives on, as before.
        assert sessions_of(services, alice.user.id) == 1
        who = accounts.resolve_session(services.ctx, cookie)
        assert who is not None and who.user.id == alice.user.id
        # The page's own form signs out: with this session's token it works as always.
        token = csrf_from(resp)
        assert 'name="return_to" value="/account/apps"' in resp.text
        done = browser.post("/logout", data={"csrf_token": token, "return_to": "/account/apps"})
        assert done.status_code == 303
        assert done.headers["location"] == "/login?return_to=%2Faccount%2Fapps"
        cleared = done.headers["set-cookie"]
        assert cleared.startswith('authgate_session="";') and "Max-Age=0" in cleared
        assert sessions_of(services, alice.user.id) == 0
        assert accounts.resolve_session(services.ctx, cookie) is None


def test_logout_without_a_session_is_a_redirect_to_sign_in(live: Live) -> None:
    with live.client() as browser:
        resp = browser.post("/logout", data={"csrf_token": "0" * 64})
        assert resp.status_code == 303 and resp.headers["location"] == "/login"
        assert "set-cookie" not in resp.headers


@pytest.fixture
def https(settings: Settings, services: Services) -> Iterator[TestClient]:
    secure = settings.model_copy(update={"issuer": "https://testserver"})
    with TestClient(create_app(secure, services=services), base_url="https://testserver") as c:
        yield c


def _attributes(header: str) -> tuple[str, dict[str, str]]:
    first, *rest = [part.strip() for part in header.split(";")]
    attrs = {}
    for part in rest:
        key, _, value = part.partition("=")
        attrs[key.lower()] = value
    return first.split("=", 1)[0], attrs


def _host_cookie(header: str, name: str) -> dict[str, str]:
    cookie, attrs = _attributes(header)
    assert cookie == f"__Host-{name}", header
    assert "secure" in attrs and attrs["path"] == "/" and "domain" not in attrs, header
    assert "httponly" in attrs and attrs["samesite"] == "lax", header
    return attrs


def test_https_issuer_gives_host_prefixed_cookies(
    https: TestClient, services: Services, alice: Account
) -> None:
    page = https.get("/login")
    [login_csrf] = page.headers.get_list("set-cookie")
    _host_cookie(login_csrf, "authgate_login_csrf")

    resp = https.post(
        "/login",
        data={"username": "alice", "password": alice.password, "csrf_token": csrf_from(page)},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    issued = {_attributes(h)[0]: h for h in resp.headers.get_list("set-cookie")}
    assert set(issued) == {"__Host-authgate_session", "__Host-authgate_login_csrf"}
    session = _host_cookie(issued["__Host-authgate_session"], "authgate_session")
    assert int(session["max-age"]) > 0
    assert "max-age=0" in issued["__Host-authgate_login_csrf"].lower()  # used up
    value = https.cookies["__Host-authgate_session"]
    assert accounts.resolve_session(services.ctx, value) is not None
    assert https.get("/", follow_redirects=False).status_code == 200  # signed in

    # The unprefixed name is not read over https: a cookie a subdomain could set is ignored.
    with TestClient(https.app, base_url="https://testserver") as other:
        other.cookies.set("authgate_session", value)
        assert other.get("/", follow_redirects=False).headers["location"] == "/login"

    out = https.post("/logout", data={"csrf_token": page_csrf(https)}, follow_redirects=False)
    assert out.status_code == 303
    [cleared] = out.headers.get_list("set-cookie")
    attrs = _host_cookie(cleared, "authgate_session")
    assert attrs["max-age"] == "0"
    assert accounts.resolve_session(services.ctx, value) is None


def test_http_issuer_keeps_plain_names(live: Live, alice: Account) -> None:
    """Browsers refuse ``__Host-`` without https: development over http keeps the old names."""
    with live.client() as browser:
        page = browser.get("/login")
        assert page.headers["set-cookie"].startswith("authgate_login_csrf=")
        assert "secure" not in page.headers["set-cookie"].lower()
        resp = sign_in(browser, alice)
        assert "authgate_session" in browser.cookies and resp.status_code == 303
