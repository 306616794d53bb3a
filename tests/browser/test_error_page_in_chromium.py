"""An error page in headless Chromium against a real authgate process: a person reads what went
wrong and what to do, the reference matches the response's request id, the developer's detail
stays folded until asked for (no script needed: the strict CSP holds), and the link leads back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Callback, Server, authorize_url, pkce

pytestmark = pytest.mark.browser


def test_a_bad_redirect_explains_itself_with_a_reference_and_folded_details(
    page: Any, server: Server, callback: Callback, tmp_path: Path
) -> None:
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    url = authorize_url(server.client_id, "https://attacker.example/cb", pkce().challenge)

    response = page.goto(url)

    assert response.status == 400
    assert page.url.startswith(f"{server.url}/oauth2/authorize?")  # shown, never redirected
    assert page.inner_text("h1") == "This app's sign-in link is not set up correctly"
    assert "nothing was shared with the app" in page.inner_text("#error-what")
    assert page.inner_text("#error-todo").startswith("Go back to the app")
    request_id = response.headers["x-request-id"]
    assert page.inner_text("#error-reference") == request_id[:8]
    # The developer's detail is there, folded away until the person opens it.
    assert not page.is_visible("#error-code")
    page.screenshot(path=str(tmp_path / "error-page.png"), full_page=True)
    page.click("#error-details summary")
    assert page.is_visible("#error-code")
    assert page.inner_text("#error-code") == "invalid_request"
    assert page.inner_text("#error-request-id") == request_id
    assert "redirect_uri" in page.inner_text("#error-description")
    assert "attacker.example" not in page.content()
    page.screenshot(path=str(tmp_path / "error-page-details.png"), full_page=True)
    assert violations == []  # nothing the page uses was blocked by its CSP
    # The way back.
    page.click("#error-back")
    page.wait_for_url(f"{server.url}/**")
    assert not page.url.startswith(f"{server.url}/oauth2/authorize")
