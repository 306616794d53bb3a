"""``max_age`` and ``login_hint`` (OpenID Connect Core 1.0 §3.1.2.1) through the real sign-in
page, beside the ``prompt`` values that keep working."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import jwt
from starlette.testclient import TestClient

from authgate.app import Services
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account, Client, make_client
from tests.flows import (
    RESOURCE,
    assert_token_response,
    authorize_url,
    callback_params,
    csrf_from,
    exchange_code,
    generate_pkce,
    login,
)


def sign_in_on(client: TestClient, page_url: str, account: Account) -> str:
    """Fill the sign-in page at ``page_url`` and return where it sends the browser."""
    page = client.get(page_url)
    assert page.status_code == 200, page.text
    form = dict(parse_qs(urlsplit(page_url).query))
    resp = client.post(
        "/login",
        data={
            "username": account.user.username,
            "password": account.password,
            "csrf_token": csrf_from(page),
            "return_to": form["return_to"][0],
        },
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    return str(resp.headers["location"])


def id_token_of(client: TestClient, app: Client, location: str, verifier: str) -> dict[str, object]:
    code = callback_params(client.get(location, follow_redirects=False))["code"]
    body = assert_token_response(
        exchange_code(client, code, client_id=app.id, client_secret=app.secret, verifier=verifier)
    )
    claims: dict[str, object] = jwt.decode(body["id_token"], options={"verify_signature": False})
    return claims


def test_max_age_forces_a_new_sign_in(
    client: TestClient, services: Services, alice: Account, clock: MovableClock
) -> None:
    app = make_client(services, first_party=True)  # no consent page in the way
    login(client, alice.user.username, alice.password)
    first_sign_in = int(clock.now().timestamp())
    clock.advance(minutes=10)
    pkce = generate_pkce()
    url = authorize_url(app.id, challenge=pkce.challenge, scope="openid", extra={"max_age": "900"})
    # Younger than max_age: straight through, auth_time is the first sign-in.
    fresh = client.get(url, follow_redirects=False)
    assert fresh.status_code == 302 and "code=" in fresh.headers["location"]
    claims = id_token_of(client, app, url, pkce.verifier)
    assert claims["auth_time"] == first_sign_in
    # Older: the sign-in form again, even with a live session.
    clock.advance(minutes=10)
    pkce = generate_pkce()
    url = authorize_url(app.id, challenge=pkce.challenge, scope="openid", extra={"max_age": "900"})
    resp = client.get(url, follow_redirects=False)
    assert resp.status_code == 302
    location = resp.headers["location"]
    assert location.startswith("/login?") and "prompt=login" in location
    back = sign_in_on(client, location, alice)
    assert back.startswith("/oauth2/authorize?")
    claims = id_token_of(client, app, back, pkce.verifier)
    assert claims["auth_time"] == int(clock.now().timestamp()) > first_sign_in


def test_max_age_zero_is_a_fresh_sign_in_once(
    client: TestClient, services: Services, alice: Account, clock: MovableClock
) -> None:
    """max_age=0 asks for a sign-in now; the request it answers then goes on (no loop)."""
    app = make_client(services, first_party=True)
    login(client, alice.user.username, alice.password)
    pkce = generate_pkce()
    url = authorize_url(app.id, challenge=pkce.challenge, scope="openid", extra={"max_age": "0"})
    location = client.get(url, follow_redirects=False).headers["location"]
    assert location.startswith("/login?")
    clock.advance(seconds=1)  # the sign-in comes after the request (a real clock moves)
    back = sign_in_on(client, location, alice)
    assert "code=" in client.get(back, follow_redirects=False).headers["location"]


def test_max_age_with_prompt_none_is_login_required(
    client: TestClient, services: Services, alice: Account, clock: MovableClock
) -> None:
    app = make_client(services, first_party=True)
    login(client, alice.user.username, alice.password)
    clock.advance(hours=1)
    url = authorize_url(
        app.id,
        challenge=generate_pkce().challenge,
        scope="openid",
        extra={"max_age": "60", "prompt": "none"},
    )
    got = callback_params(client.get(url, follow_redirects=False))
    assert got["error"] == "login_required" and got["iss"] == ISSUER
    assert "code" not in got


def test_bad_max_age_is_invalid_request(
    client: TestClient, services: Services, alice: Account
) -> None:
    app = make_client(services, first_party=True)
    login(client, alice.user.username, alice.password)
    for value in ("-1", "soon", "1" * 11):
        url = authorize_url(app.id, challenge=generate_pkce().challenge, extra={"max_age": value})
        got = callback_params(client.get(url, follow_redirects=False))
        assert got["error"] == "invalid_request" and "max_age" in got["error_description"]


def test_login_hint_fills_the_username(
    client: TestClient, services: Services, alice: Account
) -> None:
    app = make_client(services, first_party=True)
    url = authorize_url(
        app.id, challenge=generate_pkce().challenge, extra={"login_hint": "alice<b>"}
    )
    location = client.get(url, follow_redirects=False).headers["location"]
    assert "login_hint=alice%3Cb%3E" in location
    page = client.get(location)
    field = re.search(r'<input id="username"[^>]*>', page.text)
    assert field is not None
    assert 'value="alice&lt;b&gt;"' in field.group(0)  # escaped, never markup
    assert "autofocus" not in field.group(0)  # the password field has it
    # Without a hint, or with one that cannot be a name: an empty field.
    for hint in (None, "x" * 255, "a\nb"):
        target = "/login" + (f"?login_hint={quote(hint)}" if hint else "")
        field = re.search(r'<input id="username"[^>]*>', client.get(target).text)
        assert field is not None and "value=" not in field.group(0)


def test_consent_page_says_what_openid_scopes_release(
    signed_in: TestClient, services: Services
) -> None:
    app = make_client(services)
    url = authorize_url(
        app.id, challenge=generate_pkce().challenge, scope="openid email read", resource=RESOURCE
    )
    page = signed_in.get(url)
    assert page.status_code == 200
    items = re.findall(r"<li><code>([^<]+)</code>(?::\s*([^<]*))?</li>", page.text)
    assert items == [
        ("openid", "Know who you are (your account id) and when you signed in"),
        ("email", "See your email address"),
        ("read", "Read your data"),
    ]
