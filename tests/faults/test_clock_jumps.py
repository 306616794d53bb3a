"""The server's clock jumps: forward past an expiry in the middle of a flow, and backwards (an
NTP correction of -10 minutes).

What is right, and what these tests hold the server to:

- Every code, access token and refresh token carries an absolute expiry, `expires_at`, fixed
  when it is issued (issue time + lifetime) and compared with the clock when it is used. A
  jump does not move it: after a forward jump past it the code or token is refused (and the
  refusal writes nothing); after a backwards jump it stays valid until the clock reaches the
  same instant again — never longer than its lifetime as the server's clock measures it.
  Nothing is reckoned from "time since the last request", which a jump would stretch.
- A JWT's `iat` is the clock at issue (after a backwards jump, the corrected time) and `exp`
  is `iat` + the lifetime; `expires_in` and introspection's `iat`/`exp` say the same.
- A negative elapsed time (the clock went back since an event) is not "within" any interval:
  a refresh token reused after a backwards jump is a reuse, not a retry within the grace
  period; a node's key cache loaded "in the future" is stale, not fresh.
- Rate-limit windows are fixed slices of the clock: a jump lands in another window, never
  breaks one; a refused request always says `Retry-After` between 1 and the window.
- Automatic key rotation fires once when the interval has passed, never again after a
  backwards jump, and the JWKS publishes only the active, the next and the retiring keys.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services, build_services, warm_up
from authgate.config import Settings
from authgate.core import keys
from authgate.core.context import SYSTEM
from authgate.core.models import AuditQuery
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client, issued, make_client
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    refresh,
    token_request,
)
from tests.http_types import Response

CODE_TTL = 600
ACCESS_TTL = 3600
RATE = 2  # token requests per client per minute


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        token_rate_per_client=RATE,
    )


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def header(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def new_code(signed_in: TestClient, client: Client) -> tuple[str, str]:
    pkce = generate_pkce()
    return authorize(
        signed_in, client.id, challenge=pkce.challenge, resource=RESOURCE
    ), pkce.verifier


def redeem(signed_in: TestClient, client: Client, code: str, verifier: str) -> Response:
    return exchange_code(
        signed_in,
        code,
        client_id=client.id,
        client_secret=client.secret,
        verifier=verifier,
        resource=RESOURCE,
    )


def introspect(client: TestClient, caller: Client, value: str) -> dict[str, Any]:
    resp = client.post(
        "/oauth2/introspect", data={"token": value}, auth=(caller.id, caller.secret or "")
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def assert_consistent(body: dict[str, Any], clock: MovableClock) -> dict[str, Any]:
    """An access token issued now: iat is the clock, exp is iat + lifetime, and expires_in
    says the same."""
    found = claims(body["access_token"])
    now = int(clock.now().timestamp())
    assert found["iat"] == now, (found, now)
    assert found["exp"] == now + ACCESS_TTL
    assert body["expires_in"] == found["exp"] - found["iat"]
    return found


def test_code_refused_after_a_forward_jump_past_its_lifetime(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    code, verifier = new_code(signed_in, confidential)
    before = issued(services, confidential.id)
    clock.advance(seconds=CODE_TTL)  # expires_at <= now: expired at the very instant
    assert_oauth_error(redeem(signed_in, confidential, code, verifier), 400, "invalid_grant")
    assert issued(services, confidential.id) == before
    clock.advance(days=1)
    assert_oauth_error(redeem(signed_in, confidential, code, verifier), 400, "invalid_grant")
    assert issued(services, confidential.id) == before


def test_code_expiry_is_absolute_across_a_backwards_jump(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    issued_at = clock.now()
    late, late_verifier = new_code(signed_in, confidential)
    code, verifier = new_code(signed_in, confidential)
    clock.advance(minutes=-10)  # NTP correction
    # The clock now reads earlier than the code's issue: it is valid (expiry is absolute) and
    # the token it buys is stamped with the corrected clock.
    body = assert_token_response(redeem(signed_in, confidential, code, verifier))
    assert_consistent(body, clock)
    # At the code's absolute expiry (20 minutes later on the corrected clock): refused.
    clock.current = issued_at
    clock.advance(seconds=CODE_TTL)
    before = issued(services, confidential.id)
    assert_oauth_error(redeem(signed_in, confidential, late, late_verifier), 400, "invalid_grant")
    assert issued(services, confidential.id) == before


def test_access_token_expiry_is_absolute_and_jwt_times_consistent(
    signed_in: TestClient, confidential: Client, clock: MovableClock
) -> None:
    code, verifier = new_code(signed_in, confidential)
    first = assert_token_response(redeem(signed_in, confidential, code, verifier))
    first_claims = assert_consistent(first, clock)
    info = introspect(signed_in, confidential, first["access_token"])
    assert (info["active"], info["iat"], info["exp"]) == (
        True,
        first_claims["iat"],
        first_claims["exp"],
    )

    clock.advance(minutes=-10)
    info = introspect(signed_in, confidential, first["access_token"])
    assert info["active"] is True and info["exp"] == first_claims["exp"]  # not moved
    rotated = refresh(
        signed_in,
        first["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    second_claims = assert_consistent(assert_token_response(rotated), clock)
    assert second_claims["iat"] == first_claims["iat"] - 600

    clock.advance(minutes=10, seconds=ACCESS_TTL)  # the first token's exp, on the clock
    assert introspect(signed_in, confidential, first["access_token"]) == {"active": False}
    # The second was issued 10 minutes "earlier": it expired before the first.
    assert introspect(signed_in, confidential, rotated.json()["access_token"]) == {"active": False}


def test_refresh_token_refused_after_a_forward_jump_past_its_lifetime(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    code, verifier = new_code(signed_in, confidential)
    body = assert_token_response(redeem(signed_in, confidential, code, verifier))
    before = issued(services, confidential.id)
    clock.advance(days=30)
    resp = refresh(
        signed_in,
        body["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    assert_oauth_error(resp, 400, "invalid_grant")
    assert issued(services, confidential.id) == before
    assert introspect(signed_in, confidential, body["refresh_token"]) == {"active": False}


def test_refresh_reuse_after_a_backwards_jump_is_a_reuse_not_a_retry(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    """The reuse window (120 s) covers a client retrying a rotation it did not see answered.
    After the clock went back, "now - consumed_at" is negative: how long ago the token was
    used is unknown, so a second use is treated as the reuse it may be (the family ends)."""
    code, verifier = new_code(signed_in, confidential)
    body = assert_token_response(redeem(signed_in, confidential, code, verifier))
    old = body["refresh_token"]
    rotated = refresh(signed_in, old, client_id=confidential.id, client_secret=confidential.secret)
    new = assert_token_response(rotated)
    clock.advance(minutes=-10)
    before = issued(services, confidential.id)
    reused = refresh(signed_in, old, client_id=confidential.id, client_secret=confidential.secret)
    assert_oauth_error(reused, 400, "invalid_grant")
    after = issued(services, confidential.id)
    assert (after.access, after.refresh) == (before.access, before.refresh)  # nothing issued
    assert introspect(signed_in, confidential, new["refresh_token"]) == {"active": False}
    assert introspect(signed_in, confidential, new["access_token"]) == {"active": False}
    events, _ = services.store.list_audit(AuditQuery(action="refresh_token.reused"))
    assert len(events) == 1


def test_rate_limit_windows_survive_jumps_both_ways(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    service = make_client(
        services,
        name="Service",
        grant_types=["client_credentials"],
        service_access={ISSUER: []},
    )
    assert service.secret is not None
    creds = (service.id, service.secret)
    data = {"grant_type": "client_credentials"}

    def call() -> Response:
        resp = token_request(client, data, basic=creds)
        assert resp.status_code in (200, 429), resp.text
        if resp.status_code == 429:
            assert_oauth_error(resp, 429, "temporarily_unavailable")
            assert 1 <= int(resp.headers["retry-after"]) <= 60, resp.headers
        return resp

    # Start on a window boundary, then walk to its last second.
    clock.current = clock.current.replace(second=0)
    statuses = [call().status_code for _ in range(RATE + 1)]
    assert statuses == [200] * RATE + [429]
    clock.advance(seconds=59)
    last = call()
    assert last.status_code == 429 and last.headers["retry-after"] == "1"

    clock.advance(minutes=-10)  # lands in an older window: counted afresh there
    assert [call().status_code for _ in range(RATE + 1)] == [200] * RATE + [429]
    clock.advance(minutes=10)  # back in the window that was full: still full
    assert call().status_code == 429
    clock.advance(seconds=1)  # the next window
    assert call().status_code == 200
    clock.advance(hours=5)
    assert call().status_code == 200


def published_kids(client: TestClient) -> set[str]:
    resp = client.get("/.well-known/jwks.json")
    assert resp.status_code == 200, resp.text
    return {k["kid"] for k in resp.json()["keys"]}


def rotations(services: Services) -> list[str]:
    events, _ = services.store.list_audit(AuditQuery(action="signing_key.rotated"))
    return sorted(str(e.target_id) for e in events)


def assert_key_states(services: Services, client: TestClient, clock: MovableClock) -> str:
    """One active key; the JWKS is exactly the active, the next and the still-retiring keys;
    tokens are signed with the active one. Returns the active kid."""
    stored = list(services.store.list_signing_keys())
    active = [k for k in stored if k.activated_at is not None and k.retired_at is None]
    assert len(active) == 1, stored
    expected = {k.kid for k in keys.published(stored, clock.now())}
    assert published_kids(client) == expected
    service = make_client(
        services,
        name="Signer",
        grant_types=["client_credentials"],
        service_access={RESOURCE: []},
    )
    assert service.secret is not None
    resp = token_request(
        client,
        {"grant_type": "client_credentials", "resource": RESOURCE},
        basic=(service.id, service.secret),
    )
    assert header(assert_token_response(resp)["access_token"])["kid"] == active[0].kid
    return active[0].kid


def test_key_rotation_fires_once_across_jumps(
    client: TestClient, services: Services, settings: Settings, clock: MovableClock
) -> None:
    other = build_services(settings, clock=clock)  # a second node on the same database
    try:
        before = rotations(services)
        first = assert_key_states(services, client, clock)
        clock.advance(days=30, seconds=31)  # past the interval and the key caches
        published_kids(client)
        keys.current_keys(other.ctx)
        published_kids(client)
        assert len(rotations(services)) == len(before) + 1
        second = assert_key_states(services, client, clock)
        assert second != first

        clock.advance(minutes=-10)  # NTP correction: the new key was activated "in the future"
        clock.advance(seconds=31)
        published_kids(client)
        keys.current_keys(other.ctx)
        assert assert_key_states(services, client, clock) == second
        clock.advance(minutes=10, seconds=31)
        published_kids(client)
        assert len(rotations(services)) == len(before) + 1
        assert assert_key_states(services, client, clock) == second
        # The retired key leaves the JWKS once its tokens expired, not before.
        clock.advance(seconds=ACCESS_TTL + 300 + 31)
        assert first not in published_kids(client)
        assert assert_key_states(services, client, clock) == second
    finally:
        other.store.close()


def test_key_cache_loaded_before_a_backwards_jump_is_refreshed(
    client: TestClient, services: Services, settings: Settings, clock: MovableClock
) -> None:
    """A node's key cache is fresh for 30 s (`policy.cache_ttl`) after it was loaded. After the
    clock went back 10 minutes it must not count as fresh for 10 more minutes: a rotation on
    another node would stay unseen that long."""
    other = build_services(settings, clock=clock)
    try:
        warm_up(other)
        published_kids(client)  # node A loads its cache
        clock.advance(minutes=-10)
        rotated = keys.rotate(other.ctx, SYSTEM)  # node B rotates
        stored = list(services.store.list_signing_keys())
        nxt = keys.upcoming(stored)
        assert nxt is not None
        clock.advance(seconds=31)  # past the cache bound, on the clock
        assert {rotated.kid, nxt.kid} <= published_kids(client)
        assert assert_key_states(services, client, clock) == rotated.kid
    finally:
        other.store.close()
