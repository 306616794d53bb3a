"""Rate limits of sign-in, the token endpoint and introspection (DESIGN.md §6), shared by every
node through the store's fixed-window counters.

Limits are set low here; time is a ``MovableClock`` aligned to a window boundary, so each
``Retry-After`` is exact and a new window is reached by moving the clock, never by sleeping.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.config import Settings
from authgate.core import accounts, rate_limits
from authgate.core.context import Actor
from authgate.core.models import AuditQuery
from authgate.core.rate_limits import RateLimitedError
from tests.clock import MovableClock
from tests.conftest import ISSUER, PASSWORD, Account, Client, issued, make_client
from tests.flows import (
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
    refresh,
)
from tests.http_types import Response

TOKEN_LIMIT = 3
INTROSPECTION_LIMIT = 2
PER_IP = 6
PER_USER = 2
ACTOR = Actor("anonymous", ip="203.0.113.7")


@pytest.fixture
def settings(tmp_path: object, database_url: str) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        token_rate_per_client=TOKEN_LIMIT,
        introspection_rate_per_client=INTROSPECTION_LIMIT,
        sign_in_rate_per_ip=PER_IP,
        sign_in_attempts_per_user=PER_USER,
    )


def align(clock: MovableClock, *, minutes: int = 15, second: int = 15) -> None:
    """Move the clock forward to ``second`` seconds past the next ``minutes`` boundary."""
    now = clock.now()
    base = now.replace(minute=now.minute - now.minute % minutes, second=0)
    clock.current = base + timedelta(minutes=minutes, seconds=second)


def assert_limited(resp: Response, retry_after: int) -> None:
    body = assert_oauth_error(resp, 429, "temporarily_unavailable", "try again in")
    assert resp.headers["retry-after"] == str(retry_after)
    assert f"{retry_after} seconds" in body["error_description"]


def limit_events(services: Services, scope: str) -> int:
    events, _ = services.store.list_audit(AuditQuery(action="rate_limit.exceeded"))
    return len([e for e in events if e.target_id == scope])


def _bogus_refresh(client: TestClient, app: Client) -> Response:
    return refresh(client, "agrt_bogus", client_id=app.id, client_secret=app.secret)


def test_token_endpoint_per_client(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    align(clock, minutes=1)
    before = issued(services, confidential.id)
    for _ in range(TOKEN_LIMIT):
        assert_oauth_error(_bogus_refresh(signed_in, confidential), 400, "invalid_grant")
    # Over the limit a valid code is refused, and neither consumed nor exchanged.
    exchange: dict[str, Any] = {"client_id": confidential.id, "client_secret": confidential.secret}
    resp = exchange_code(signed_in, code, verifier=pkce.verifier, **exchange)
    assert_limited(resp, 45)
    assert issued(services, confidential.id) == before
    # Named in the Basic header, it is the same client.
    assert_limited(
        exchange_code(signed_in, code, verifier=pkce.verifier, basic=True, **exchange), 45
    )
    # Another client is not held back by this one.
    other = make_client(services, name="Other app")
    assert_oauth_error(_bogus_refresh(signed_in, other), 400, "invalid_grant")
    assert limit_events(services, "token_client") == 1  # once per window, not per request
    clock.advance(seconds=45)  # the next window
    assert_token_response(exchange_code(signed_in, code, verifier=pkce.verifier, **exchange))
    assert issued(services, confidential.id).access == before.access + 1


def test_token_endpoint_per_address_when_no_client_is_named(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    align(clock, minutes=1, second=50)
    for _ in range(TOKEN_LIMIT):
        resp = client.post("/oauth2/tokens", data={"grant_type": "client_credentials"})
        assert_oauth_error(resp, 401, "invalid_client")
    resp = client.post("/oauth2/tokens", data={"grant_type": "client_credentials"})
    assert_limited(resp, 10)
    assert resp.headers["access-control-allow-origin"] == "*"  # CORS still answers
    events, _ = services.store.list_audit(AuditQuery(action="rate_limit.exceeded"))
    assert [(e.target_id, e.ip, e.details["limit"]) for e in events] == [
        ("token_ip", "testclient", TOKEN_LIMIT)
    ]


def test_introspection_per_client(
    client: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    align(clock, minutes=1, second=0)
    auth = (confidential.id, confidential.secret or "")
    for _ in range(INTROSPECTION_LIMIT):
        resp = client.post("/oauth2/introspect", data={"token": "agat_unknown"}, auth=auth)
        assert resp.status_code == 200 and resp.json() == {"active": False}
    resp = client.post("/oauth2/introspect", data={"token": "agat_unknown"}, auth=auth)
    assert_limited(resp, 60)
    assert limit_events(services, "introspection_client") == 1


def _sign_in_page(client: TestClient, username: str, password: str) -> Response:
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf.group(1)},
        follow_redirects=False,
    )


def _sessions(services: Services) -> int:
    with services.store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar_one())


def test_sign_in_per_address(
    client: TestClient, services: Services, alice: Account, clock: MovableClock
) -> None:
    align(clock, minutes=1, second=30)
    for n in range(PER_IP):
        assert _sign_in_page(client, f"guess{n}", "wrong password").status_code == 401
    resp = _sign_in_page(client, "alice", PASSWORD)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "30"
    assert resp.headers["content-type"].startswith("text/html")
    assert "Too many sign-in attempts. Please wait a minute and try again." in resp.text
    assert 'name="csrf_token"' in resp.text  # the form stays, to try again later
    assert "authgate_session" not in client.cookies and _sessions(services) == 0
    events, _ = services.store.list_audit(AuditQuery(action="user.logged_in"))
    assert events == []
    assert limit_events(services, "sign_in_ip") == 1
    clock.advance(seconds=30)
    login(client, "alice", PASSWORD)
    assert _sessions(services) == 1


def test_sign_in_slow_down_per_username_and_source(
    client: TestClient, settings: Settings, services: Services, alice: Account, clock: MovableClock
) -> None:
    """Wrong passwords from one source hold that source for that username; the user signing
    in from another source is not held (issue 18: no stranger can lock a user out)."""
    align(clock, minutes=15, second=20)
    for _ in range(PER_USER):
        assert _sign_in_page(client, "alice", "wrong password").status_code == 401
    # The same source is held, even with the right password, until the minute ends...
    resp = _sign_in_page(client, "ALICE", PASSWORD)
    assert resp.status_code == 429 and resp.headers["retry-after"] == "40"
    assert "Please wait a minute" in resp.text and _sessions(services) == 0
    # ...only for that username...
    assert _sign_in_page(client, "bob", "wrong password").status_code == 401
    failed, _ = services.store.list_audit(AuditQuery(action="user.login_failed"))
    assert len(failed) == PER_USER + 1  # the refused attempt checked no password
    events, _ = services.store.list_audit(AuditQuery(action="rate_limit.exceeded"))
    assert [(e.target_id, e.details["limit"], e.details["window_seconds"]) for e in events] == [
        ("sign_in_user", PER_USER, 60)
    ]
    # ...and the user from elsewhere signs in at once.
    app = client.app
    with TestClient(app, base_url=ISSUER, client=("198.51.100.23", 40000)) as elsewhere:
        login(elsewhere, "alice", PASSWORD)
    assert _sessions(services) == 1
    clock.advance(seconds=40)
    login(client, "alice", PASSWORD)  # after the delay, the first source too
    assert _sessions(services) == 2


def _attempt(services: Services, username: str) -> int | None:
    """One wrong password for ``username``: None if checked, else the Retry-After."""
    try:
        user = accounts.sign_in(services.ctx, ACTOR, username, "wrong", slow_down=PER_USER)
    except RateLimitedError as exc:
        return exc.retry_after
    assert user is None
    return None


def test_slow_down_grows_and_is_capped(services: Services, clock: MovableClock) -> None:
    """A persistent guesser waits a minute, then to the 5-minute boundary, then to the
    15-minute one; never longer, whatever the number of refused attempts."""
    align(clock, minutes=15, second=0)
    # Minute 1: PER_USER checks, then held to the end of the minute.
    assert [_attempt(services, "nobody") for _ in range(PER_USER + 3)] == [None] * PER_USER + [
        60
    ] * 3
    # Minute 2: PER_USER more (the 5-minute tier allows 2 × PER_USER), then held again.
    clock.advance(minutes=1)
    assert [_attempt(services, "nobody") for _ in range(PER_USER + 1)] == [None] * PER_USER + [60]
    # Minute 3: the 5-minute tier is spent: held until the 5-minute boundary.
    clock.advance(minutes=1)
    assert _attempt(services, "nobody") == 180
    clock.advance(minutes=2, seconds=30)
    assert _attempt(services, "nobody") == 30
    # Minutes 6–7: the 15-minute tier (3 × PER_USER) is spent after PER_USER more checks.
    clock.advance(seconds=30)
    assert [_attempt(services, "nobody") for _ in range(PER_USER + 1)] == [None] * PER_USER + [60]
    clock.advance(minutes=1)
    assert _attempt(services, "nobody") == 9 * 60  # until the 15-minute boundary: the cap
    for _ in range(50):
        retry = _attempt(services, "nobody")
        assert retry is not None and retry <= 15 * 60
    # After the cap, the account is checked again: never a lock-out.
    clock.advance(minutes=9)
    assert _attempt(services, "nobody") is None
    # An unknown and an existing username are slowed down alike (nothing to enumerate).
    assert rate_limits.sign_in_limits("203.0.113.7", "alice", PER_USER)[0].key.endswith(
        ":203.0.113.7:alice"
    )


def test_unlimited_when_set_to_zero(services: Services, clock: MovableClock) -> None:
    for _ in range(5):
        assert accounts.sign_in(services.ctx, ACTOR, "x", "wrong", slow_down=0) is None
    for _ in range(50):
        rate_limits.enforce_per_client(services.ctx, ACTOR, "token", "c", 0)
    assert rate_limits.sign_in_limits("203.0.113.7", "x", 0) == ()
    with services.store.engine.connect() as conn:  # nothing was even counted
        assert conn.execute(sa.text("SELECT count(*) FROM rate_limits")).scalar_one() == 0


def test_long_caller_values_are_hashed_into_keys() -> None:
    url = "https://client.example.com/" + "a" * 300
    part = rate_limits.key_part(url)
    assert part.startswith("sha256:") and len(part) == 71
    assert rate_limits.key_part("short-id") == "short-id"
    assert rate_limits.key_part(None) == "unknown"
