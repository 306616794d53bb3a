"""The pages in headless Chromium against a real authgate process: sign in, consent, Allow and
Deny, remembered consent, disconnecting an app, the admin console, and framing refused.

Each test saves screenshots into its pytest tmp dir (the README's come from these).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Callback, Server, authorize_url, pkce

pytestmark = pytest.mark.browser


def sign_in(page: Any, username: str, password: str) -> None:
    """With the keyboard only: the username field has focus, Tab to the password, Enter.

    The browser applies ``autofocus`` at its next rendering step after the page has loaded, so
    the focus is waited for (at most 5 s), not read at once. Playwright's ``expect`` polls
    with its own injected script: a string given to ``wait_for_function`` is evaluated with
    ``eval`` once the first check fails, which the pages' CSP (no 'unsafe-eval') refuses."""
    expect(page.locator("#username")).to_be_focused(timeout=5000)
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(password)
    page.keyboard.press("Enter")


def shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def wait_for_callback(page: Any, callback: Callback) -> dict[str, str]:
    page.wait_for_url(re.compile(re.escape(callback.redirect_uri) + r"\?"))
    assert page.inner_text("h1") == "Callback received"
    return callback.last()


def test_sign_in_consent_allow_and_the_code_exchanges_for_a_token(
    page: Any, server: Server, callback: Callback, tmp_path: Path
) -> None:
    username = server.create_user("ada")
    pair = pkce()
    url = authorize_url(server.client_id, callback.redirect_uri, pair.challenge)
    page.goto(url)
    assert page.url.startswith(f"{server.url}/login?return_to=")
    shot(page, tmp_path, "sign-in")
    sign_in(page, username, "wrong password")
    assert page.inner_text("#login-error") == "Incorrect username or password."
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#consent-form")
    assert page.inner_text("#app-name") == "Demo app"
    assert page.inner_text("#username") == username
    assert page.inner_text("#redirect-host") == f"127.0.0.1:{callback.port}"
    assert "Registered by the operator" in page.inner_text("#identity")
    shot(page, tmp_path, "consent")
    state = dict(re.findall(r"([a-z_]+)=([^&]+)", url))["state"]
    page.click("#allow")
    got = wait_for_callback(page, callback)
    assert got["state"] == state and got["iss"] == server.url
    token = server.exchange(got["code"], pair.verifier, callback.redirect_uri)
    assert token.status_code == 200, token.text
    me = httpx.get(
        f"{server.url}/api/v2/users/me",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert me.json()["username"] == username


def test_deny_sends_access_denied_on_a_phone_sized_screen(
    browser: Any, server: Server, callback: Callback, tmp_path: Path
) -> None:
    context = browser.new_context(
        base_url=server.url, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = context.new_page()
    try:
        username = server.create_user("bob")
        page.goto(authorize_url(server.client_id, callback.redirect_uri, pkce().challenge))
        sign_in(page, username, PASSWORD)
        page.wait_for_selector("#consent-form")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "the consent page scrolls sideways on a phone"
        shot(page, tmp_path, "consent-phone")
        page.click("#deny")
        got = wait_for_callback(page, callback)
        assert got["error"] == "access_denied" and "code" not in got
    finally:
        context.close()


def test_remembered_consent_skips_the_page(
    page: Any, server: Server, callback: Callback, tmp_path: Path
) -> None:
    username = server.create_user("cy")
    first = pkce()
    page.goto(authorize_url(server.client_id, callback.redirect_uri, first.challenge))
    sign_in(page, username, PASSWORD)
    page.click("#allow")
    code = wait_for_callback(page, callback)["code"]
    assert server.exchange(code, first.verifier, callback.redirect_uri).status_code == 200
    second = pkce()
    seen: list[str] = []
    page.on("response", lambda r: seen.append(r.url))
    page.goto(authorize_url(server.client_id, callback.redirect_uri, second.challenge))
    again = wait_for_callback(page, callback)
    assert not any(u.startswith(f"{server.url}/login") for u in seen)
    assert server.exchange(again["code"], second.verifier, callback.redirect_uri).status_code == 200
    # prompt=consent still shows the page.
    page.goto(
        authorize_url(server.client_id, callback.redirect_uri, pkce().challenge, prompt="consent")
    )
    page.wait_for_selector("#consent-form")
    shot(page, tmp_path, "consent-forced")


def test_disconnect_in_connected_apps_revokes_the_token(
    page: Any, server: Server, callback: Callback, tmp_path: Path
) -> None:
    username = server.create_user("dee")
    pair = pkce()
    page.goto(authorize_url(server.client_id, callback.redirect_uri, pair.challenge))
    sign_in(page, username, PASSWORD)
    page.click("#allow")
    code = wait_for_callback(page, callback)["code"]
    token = server.exchange(code, pair.verifier, callback.redirect_uri).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{server.url}/api/v2/users/me", headers=bearer).status_code == 200
    page.goto("/account/apps")
    assert "Demo app" in page.inner_text("#connected-apps")
    assert "Connected since" in page.inner_text("#connected-apps")
    shot(page, tmp_path, "connected-apps")
    page.get_by_role("button", name="Disconnect Demo app").click()
    page.wait_for_selector("#notice")
    assert page.locator("#no-apps").is_visible()
    assert httpx.get(f"{server.url}/api/v2/users/me", headers=bearer).status_code == 401


def test_admin_creates_an_app_and_a_secret_and_uses_them(
    browser: Any, server: Server, callback: Callback, tmp_path: Path
) -> None:
    context = browser.new_context(base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    try:
        page.goto("/admin")
        sign_in(page, server.admin, server.admin_password)
        page.wait_for_selector("nav.tabs")
        page.get_by_role("link", name="Apps", exact=True).click()
        page.click("#new-app")
        page.fill("#name", "Browser-made app")
        page.fill("#redirect_uris", callback.redirect_uri)
        page.click("#create-app")
        page.wait_for_selector("#notice")
        client_id = page.inner_text("#client-id")
        shot(page, tmp_path, "admin-app")
        page.click("#new-secret")
        secret = page.input_value("#client-secret")
        assert secret.startswith("agcs_") or secret.startswith("ag")
        page.click("button.copy")
        expect(page.locator("[data-copy-status]")).not_to_have_text("")
        assert page.evaluate("navigator.clipboard.readText()") == secret
        shot(page, tmp_path, "admin-secret")
        page.goto(f"/admin/apps/{client_id}")
        assert secret not in page.content() and secret[-6:] in page.content()
        pair = pkce()
        page.goto(authorize_url(client_id, callback.redirect_uri, pair.challenge))
        page.click("#allow")
        got = wait_for_callback(page, callback)
        token = server.exchange(
            got["code"], pair.verifier, callback.redirect_uri, client_id=client_id, secret=secret
        )
        assert token.status_code == 200, token.text
        page.goto("/admin/audit?action=secret.created")
        assert client_id in page.inner_text("#audit")
        shot(page, tmp_path, "admin-audit")
    finally:
        context.close()


def test_pages_refuse_to_be_framed(page: Any, server: Server, callback: Callback) -> None:
    callback.pages["/frame-authgate"] = (
        f'<!doctype html><iframe id="f" src="{server.url}/login"></iframe>'
    )
    callback.pages["/frame-control"] = (
        f'<!doctype html><iframe id="f" src="{callback.origin()}/plain"></iframe>'
    )
    page.goto(f"{callback.origin()}/frame-control")
    page.wait_for_timeout(300)
    control = [f for f in page.frames if f.url.endswith("/plain")]
    assert control and control[0].query_selector("p") is not None  # framing works at all
    page.goto(f"{callback.origin()}/frame-authgate")
    page.wait_for_timeout(500)
    framed = [f for f in page.frames if f != page.main_frame]
    assert framed, "the iframe element is there"
    assert all(f.query_selector("#login-form") is None for f in framed)
