"""The flow timeline in headless Chromium against a real ``authgate serve`` process: a person
meets an error page and denies a consent, then an operator finds both flows in the admin
console, by the reference the error page showed, by reason, and among the failing clients."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PASSWORD, Callback, Server, authorize_url, pkce
from tests.browser.test_pages_in_chromium import shot, sign_in, wait_for_callback

pytestmark = pytest.mark.browser


def eventually(page: Any, url: str, selector: str) -> None:
    """Open ``url`` until ``selector`` is on it: the server writes flow steps in batches a
    moment after the request (at most a few seconds, bounded here)."""
    for _ in range(40):
        page.goto(url)
        if page.locator(selector).count():
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"{selector} never appeared on {url}")


def test_operator_finds_the_flows_a_person_failed_in(
    browser: Any, server: Server, callback: Callback, tmp_path: Path
) -> None:
    person = browser.new_context(base_url=server.url)
    operator = browser.new_context(base_url=server.url)
    try:
        page = person.new_page()
        # An unregistered redirect URI: an error page with a reference, no redirect.
        page.goto(authorize_url(server.client_id, "https://evil.example/cb", pkce().challenge))
        reference = page.inner_text("#error-reference")
        assert re.fullmatch(r"[0-9a-f-]{8}", reference), reference
        shot(page, tmp_path, "error-reference")
        # A person who signs in and chooses Deny on the real consent page.
        username = server.create_user("flow")
        page.goto(authorize_url(server.client_id, callback.redirect_uri, pkce().challenge))
        sign_in(page, username, PASSWORD)
        page.wait_for_selector("#consent-form")
        page.click("#deny")
        assert wait_for_callback(page, callback)["error"] == "access_denied"

        admin = operator.new_page()
        admin.goto("/admin")
        sign_in(admin, server.admin, server.admin_password)
        admin.wait_for_selector("nav.tabs")
        admin.get_by_role("link", name="Flows", exact=True).click()
        admin.wait_for_selector("#flow-filters")
        eventually(admin, "/admin/flows?reason=user_denied", "#flows tbody tr")
        assert "user_denied" in admin.inner_text("#flows")
        failing = admin.inner_text("#failing")
        assert server.client_id in failing
        shot(admin, tmp_path, "admin-flows")

        # The reference alone opens the flow's timeline, each refusal explained.
        admin.goto("/admin/flows")
        admin.fill("#f-reference", reference)
        admin.click("#flow-search")
        admin.wait_for_selector("#timeline")
        step = admin.locator("#timeline li[data-reason]")
        assert step.get_attribute("data-reason") == "redirect_uri_not_registered"
        assert "did not register" in step.inner_text()
        assert admin.inner_text("#flow-client") == server.client_id
        shot(admin, tmp_path, "admin-flow-timeline")

        # The denied flow: sign-in, consent page, Deny, in order, with the person named.
        admin.goto("/admin/flows?reason=user_denied")
        admin.locator("#flows tbody tr a").first.click()
        admin.wait_for_selector("#timeline")
        kinds = admin.eval_on_selector_all(
            "#timeline li", "items => items.map(i => i.dataset.kind + ':' + i.dataset.outcome)"
        )
        assert kinds == [
            "authorize:ok",
            "sign_in:ok",
            "authorize:ok",
            "consent:refused",
        ], kinds
        assert admin.locator("#flow-user").count() == 1
    finally:
        person.close()
        operator.close()
