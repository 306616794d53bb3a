"""The error pages a person sees: plain words on what went wrong and what to do, a link back,
the reference to give the operator (the start of the request id), and the developer's detail
under a "details" disclosure — with no inline script, and nothing secret on the page."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from authgate.core import authorize
from tests.conftest import Client
from tests.flows import REDIRECT_URI, authorize_url, generate_pkce
from tests.http_types import Response

SECRET_DETAIL = "internal detail: db password is hunter2"


def _text(page: Response, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page.text, re.S)
    assert match is not None, f"no #{element_id} on the page"
    return unescape(match.group(1)).strip()


def assert_error_page(page: Response, status: int, error: str, title: str, what: str) -> None:
    assert page.status_code == status, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "location" not in page.headers
    assert page.headers["cache-control"] == "no-store"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1]
    assert "<script>" not in page.text and " on" + "click=" not in page.text
    # Plain words first: what went wrong and what to do, and a way back.
    assert _text(page, "error-title") == title
    assert what in _text(page, "error-what")
    assert _text(page, "error-todo")
    assert re.search(r'<a href="/" id="error-back">[^<]+</a>', page.text)
    # The reference to give the operator: the start of this response's request id.
    request_id = page.headers["x-request-id"]
    assert _text(page, "error-reference") == request_id[:8]
    # The developer's detail, folded away.
    details = page.text[page.text.index('<details id="error-details">') :]
    assert details.index("</details>") > details.index(f'<code id="error-code">{error}</code>')
    assert _text(page, "error-request-id") == request_id
    assert _text(page, "error-status") == str(status)
    assert _text(page, "error-description")


def test_invalid_client(signed_in: TestClient, confidential: Client) -> None:
    page = signed_in.get(authorize_url("no-such-client"), follow_redirects=False)

    assert_error_page(
        page, 400, "invalid_client", "This app is not recognised", "is not registered"
    )
    assert _text(page, "error-description") == "The client_id is not known to this server"


def test_bad_redirect(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(confidential.id, redirect_uri="https://attacker.example/cb")

    page = signed_in.get(url, follow_redirects=False)

    assert_error_page(
        page,
        400,
        "invalid_request",
        "This app's sign-in link is not set up correctly",
        "nothing was shared with the app",
    )
    assert "attacker.example" not in page.text  # the page never offers the unverified address


def test_invalid_request(signed_in: TestClient, confidential: Client) -> None:
    # A client secret pasted into the browser's address bar is never shown back.
    query = {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "client_secret": confidential.secret or "",
    }
    url = "/oauth2/authorize?" + urlencode(query)

    page = signed_in.get(url, follow_redirects=False)

    assert_error_page(
        page, 400, "invalid_request", "This request could not be completed", "not valid"
    )
    assert _text(page, "error-description") == "Missing client_id parameter"
    assert confidential.secret is not None and confidential.secret not in page.text


def test_server_error(
    signed_in: TestClient, confidential: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError(SECRET_DETAIL)

    monkeypatch.setattr(authorize, "validate", boom)
    pkce = generate_pkce()
    with TestClient(
        signed_in.app, base_url="http://testserver", raise_server_exceptions=False
    ) as browser:
        browser.cookies = signed_in.cookies
        page = browser.get(authorize_url(confidential.id, challenge=pkce.challenge))

    assert_error_page(
        page, 500, "server_error", "Something went wrong on our side", "Nothing was changed"
    )
    assert "hunter2" not in page.text and "RuntimeError" not in page.text
    assert "Traceback" not in page.text


def test_reference_is_the_start_of_an_incoming_request_id(
    signed_in: TestClient, confidential: Client
) -> None:
    page = signed_in.get(
        authorize_url("no-such-client"), headers={"X-Request-Id": "edge-7f3a9c21-trace"}
    )

    assert page.headers["x-request-id"] == "edge-7f3a9c21-trace"
    assert _text(page, "error-reference") == "edge-7f3"


def test_api_and_token_errors_stay_json(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only people get pages: a machine endpoint's unexpected error is still RFC 6749 JSON."""
    from authgate.core import token_endpoint

    boom: Callable[..., None] = lambda *a: (_ for _ in ()).throw(RuntimeError(SECRET_DETAIL))  # noqa: E731
    monkeypatch.setattr(token_endpoint, "exchange", boom)
    with TestClient(client.app, base_url="http://testserver", raise_server_exceptions=False) as c:
        resp = c.post("/oauth2/tokens", data={"grant_type": "authorization_code"})
    assert resp.status_code == 500 and resp.json()["error"] == "server_error"
    assert "hunter2" not in resp.text
