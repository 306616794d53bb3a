"""A password typed into the username field is not written down anywhere.

People type their password into the wrong field; a failed sign-in is audited, and the audit
trail is read by every administrator (``/admin/audit``, ``/api/v2/audit``). So the typed name is
recorded only when it names an account; otherwise a keyed hash (HMAC with a key derived from
``AUTHGATE_SECRET_KEY``: a plain hash of a short password is reversed by guessing) stands in
for it, which still lets repeated attempts be matched. The per-username slow-down counts by the
same keyed hash, so its counters do not hold the text either.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import sqlalchemy as sa

from authgate.app import Services
from authgate.core.models import AuditQuery
from tests.conftest import Account
from tests.flows import csrf_from, login
from tests.security.live import Live

TYPED = "Tr0ub4dor&3-Horse"  # a password, typed where the username goes


def sign_in(browser: httpx.Client, username: str, password: str) -> httpx.Response:
    token = csrf_from(browser.get("/login"))
    return browser.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def stored_text(services: Services) -> str:
    """Everything the audit log and the rate-limit counters hold, as text."""
    with services.store.engine.connect() as conn:
        found: list[Any] = []
        for table in ("audit_log", "rate_limits"):
            found += conn.execute(sa.text(f"SELECT * FROM {table}")).all()
    return "\n".join(repr(tuple(row)) for row in found)


def test_a_password_typed_as_the_username_is_not_recorded(
    live: Live, services: Services, admin: Account, alice: Account
) -> None:
    with live.client() as browser:
        for _ in range(2):  # the same mistake twice
            resp = sign_in(browser, TYPED, "whatever was typed next")
            assert resp.status_code == 401 and "Incorrect username or password." in resp.text
        resp = sign_in(browser, "alice", "not her password")
        assert resp.status_code == 401

    spellings = (TYPED, TYPED.lower(), hashlib.sha256(TYPED.lower().encode()).hexdigest())
    text = stored_text(services)
    for spelling in spellings:
        assert spelling not in text
    failed, _ = services.store.list_audit(AuditQuery(action="user.login_failed"))
    by_name = [e for e in failed if e.target_id is None]
    assert len(by_name) == 2
    for event in by_name:
        assert set(event.details) == {"username_hmac", "reason"}
        assert event.details["reason"] == "unknown_user"
        assert event.details["username_hmac"].startswith("hmac-sha256:")
    # The same text, the same keyed hash: repeated attempts can still be matched.
    assert by_name[0].details["username_hmac"] == by_name[1].details["username_hmac"]
    # An account's name is recorded as it is.
    [hers] = [e for e in failed if e.target_id == alice.user.id]
    assert hers.details == {"username": "alice", "reason": "bad_password"}

    # What administrators read: the console and the API.
    with live.client() as console:
        login(console, admin.user.username, admin.password)
        page = console.get("/admin/audit?action=user.login_failed")
        assert page.status_code == 200
        assert by_name[0].details["username_hmac"] in page.text
        assert "alice" in page.text
    api = live.client()
    with api:
        listed = api.get(
            "/api/v2/audit",
            params={"action": "user.login_failed"},
            headers={"Authorization": f"Bearer {admin.api_token}"},
        )
    assert listed.status_code == 200 and listed.json()["count"] == 3
    for spelling in spellings:
        assert spelling not in page.text
        assert spelling not in listed.text
