"""Refresh continuity without losing theft detection (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).

A used refresh token presented again within the window (AUTHGATE_REFRESH_REUSE_GRACE_SECONDS,
default 120 s) by the same client and secret — a retry after a lost response, or another
process of one CLI sharing a credential store — gets the family's *current* refresh token again
with a new access token: the family keeps exactly one live refresh token. A reuse only a thief
could make revokes the family. Each case checks the response, the database (live refresh
tokens per family, access tokens), the audit log (reasons) and the Prometheus counters.
Runs on SQLite and PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from starlette.testclient import TestClient

from authgate.app import Services, build_services, create_app
from authgate.config import Settings
from authgate.core import clients, resources, token_endpoint, tokens
from authgate.core.context import Actor
from authgate.core.models import AuditQuery
from authgate.core.params import Params
from authgate.core.tokens import find_refresh_token
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client, issued, make_account, make_client
from tests.flows import (
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
    refresh,
)
from tests.web.test_metrics import scrape, value

CONTINUED = "authgate_refresh_token_continued_total"
REFUSALS = "authgate_refresh_token_reuse_refusals_total"
REVOKED = "authgate_refresh_token_reuse_total"


def _tokens(client: TestClient, app: Client) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge)
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


def _refresh(client: TestClient, app: Client, value: str, secret: str | None = None) -> Any:
    return refresh(client, value, client_id=app.id, client_secret=secret or app.secret)


def _live_refresh_per_family(services: Services, app_id: str) -> dict[str, int]:
    """grant id → its refresh tokens neither used nor revoked (never more than one)."""
    query = sa.text(
        "SELECT g.id, (SELECT count(*) FROM refresh_tokens r WHERE r.grant_id = g.id "
        "AND r.consumed_at IS NULL AND r.revoked_at IS NULL) FROM grants g WHERE g.app_id = :a"
    )
    with services.store.engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(query, {"a": app_id})}


def _reasons(services: Services, action: str) -> list[str]:
    events, _ = services.store.list_audit(AuditQuery(action=action))
    return sorted(str(e.details["reason"]) for e in events)


def _events(services: Services, action: str) -> int:
    return services.store.list_audit(AuditQuery(action=action))[1]


def _me(client: TestClient, access: str) -> int:
    client.cookies.clear()
    return client.get("/api/v2/users/me", headers={"Authorization": f"Bearer {access}"}).status_code


@pytest.mark.parametrize("later", [1, 76, 120], ids=["retry-1s", "sibling-76s", "edge-120s"])
def test_a_used_token_within_the_window_gets_the_current_token_again(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    clock: MovableClock,
    later: int,
) -> None:
    first = _tokens(signed_in, confidential)
    second = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    clock.advance(seconds=later)
    again = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    assert again["refresh_token"] == second["refresh_token"]  # the same chain, not a fork
    assert again["access_token"] not in (first["access_token"], second["access_token"])
    assert again["expires_in"] == 3600
    assert _me(signed_in, again["access_token"]) == 200
    assert _me(signed_in, second["access_token"]) == 200  # the other process keeps working
    state = issued(services, confidential.id)
    assert (state.grants, state.refresh, state.access, state.live_access) == (1, 2, 3, 3)
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [1]
    events, count = services.store.list_audit(AuditQuery(action="refresh_token.continued"))
    assert count == 1
    assert events[0].details["seconds_since_rotation"] == later
    assert events[0].details["current_prefix"] == second["refresh_token"].split("_")[1]
    assert second["refresh_token"] not in str(events[0].details)
    assert first["refresh_token"] not in str(events[0].details)
    assert _events(services, "refresh_token.reused") == 0
    samples = scrape(signed_in)
    assert value(samples, CONTINUED) == 1
    assert value(samples, REVOKED) == 0
    # The chain goes on from the token both holders now have.
    third = assert_token_response(_refresh(signed_in, confidential, second["refresh_token"]))
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [1]


def test_after_the_window_the_reuse_revokes_the_family(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, confidential)
    second = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    clock.advance(seconds=121)
    body = assert_oauth_error(
        _refresh(signed_in, confidential, first["refresh_token"]), 400, "invalid_grant"
    )
    assert body["error_description"] == "The refresh token is invalid or expired"
    assert issued(services, confidential.id).live_access == 0
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [0]
    assert _me(signed_in, second["access_token"]) == 401
    assert_oauth_error(
        _refresh(signed_in, confidential, second["refresh_token"]), 400, "invalid_grant"
    )
    assert _reasons(services, "refresh_token.reused") == ["window_passed"]
    samples = scrape(signed_in)
    assert value(samples, REFUSALS, reason="window_passed") == 1
    assert value(samples, REVOKED) == 1
    assert value(samples, CONTINUED) == 0


def test_a_chain_two_steps_on_is_continued_without_a_fork(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, confidential)
    second = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    clock.advance(seconds=20)
    third = assert_token_response(_refresh(signed_in, confidential, second["refresh_token"]))
    clock.advance(seconds=30)
    # A process still holding the first token, 50 s after its rotation: the head of the chain.
    late = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    assert late["refresh_token"] == third["refresh_token"]
    middle = assert_token_response(_refresh(signed_in, confidential, second["refresh_token"]))
    assert middle["refresh_token"] == third["refresh_token"]
    state = issued(services, confidential.id)
    assert (state.refresh, state.access, state.live_access) == (3, 5, 5)
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [1]
    assert _events(services, "refresh_token.continued") == 2
    assert value(scrape(signed_in), CONTINUED) == 2
    # The window counts from the presented token's own rotation: the first one's has passed
    # (20 + 30 + 71 > 120 s) while the second's has not, and the first's reuse is theft.
    clock.advance(seconds=71)
    assert_oauth_error(
        _refresh(signed_in, confidential, first["refresh_token"]), 400, "invalid_grant"
    )
    assert _reasons(services, "refresh_token.reused") == ["window_passed"]
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [0]


def test_a_used_token_presented_by_another_client_revokes_the_family(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    other = make_client(services, name="Other")
    first = _tokens(signed_in, confidential)
    second = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    body = assert_oauth_error(
        _refresh(signed_in, other, first["refresh_token"]), 400, "invalid_grant"
    )
    assert body["error_description"] == "The refresh token is invalid or expired"
    assert issued(services, other.id).access == 0
    assert issued(services, confidential.id).live_access == 0
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [0]
    assert _me(signed_in, second["access_token"]) == 401
    events, _ = services.store.list_audit(AuditQuery(action="refresh_token.reused"))
    assert [(e.details["reason"], e.actor_id) for e in events] == [("other_client", other.id)]
    samples = scrape(signed_in)
    assert value(samples, REFUSALS, reason="other_client") == 1
    assert value(samples, REVOKED) == 1


def test_a_live_token_presented_by_another_client_is_refused_and_kept(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """Not a reuse (the chain has not moved on): refused as before, the family untouched."""
    other = make_client(services, name="Other")
    first = _tokens(signed_in, confidential)
    assert_oauth_error(_refresh(signed_in, other, first["refresh_token"]), 400, "invalid_grant")
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [1]
    assert _events(services, "refresh_token.reused") == 0
    assert value(scrape(signed_in), REFUSALS, reason="other_client") == 0
    assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))


def test_another_secret_of_a_confidential_client_revokes_the_family(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    _, other_secret = clients.create_secret(services.ctx, Actor("system"), confidential.id)
    first = _tokens(signed_in, confidential)
    assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    assert_oauth_error(
        _refresh(signed_in, confidential, first["refresh_token"], secret=other_secret),
        400,
        "invalid_grant",
    )
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [0]
    assert issued(services, confidential.id).live_access == 0
    assert _reasons(services, "refresh_token.reused") == ["other_secret"]
    assert value(scrape(signed_in), REFUSALS, reason="other_secret") == 1


def test_a_wrong_secret_is_refused_and_changes_nothing(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, confidential)
    second = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    clock.advance(seconds=5)
    before = issued(services, confidential.id)
    wrong = "agcs_" + "x" * 50
    assert_oauth_error(
        _refresh(signed_in, confidential, first["refresh_token"], secret=wrong),
        401,
        "invalid_client",
    )
    assert issued(services, confidential.id) == before
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [1]
    for action in ("refresh_token.reused", "refresh_token.continued"):
        assert _events(services, action) == 0, action
    again = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    assert again["refresh_token"] == second["refresh_token"]


def test_a_public_client_retry_continues_the_family(
    signed_in: TestClient, services: Services, public: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, public)
    second = assert_token_response(_refresh(signed_in, public, first["refresh_token"]))
    clock.advance(seconds=76)
    again = assert_token_response(_refresh(signed_in, public, first["refresh_token"]))
    assert again["refresh_token"] == second["refresh_token"]
    assert list(_live_refresh_per_family(services, public.id).values()) == [1]


def test_a_small_clock_skew_is_tolerated_a_jump_back_revokes(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, confidential)
    second = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    clock.advance(seconds=-3)  # another node's clock, a little behind
    again = assert_token_response(_refresh(signed_in, confidential, first["refresh_token"]))
    assert again["refresh_token"] == second["refresh_token"]
    clock.advance(minutes=-10)
    assert_oauth_error(
        _refresh(signed_in, confidential, first["refresh_token"]), 400, "invalid_grant"
    )
    assert _reasons(services, "refresh_token.reused") == ["clock_went_back"]
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [0]
    assert value(scrape(signed_in), REFUSALS, reason="clock_went_back") == 1


def test_a_chain_that_cannot_be_followed_is_refused_without_revoking(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """A token rotated before successors were derived (an older authgate): nothing proves the
    presenter held the chain, nor that it is a theft. Refused; the family lives on."""
    first = _tokens(signed_in, confidential)
    ctx = services.ctx
    row = find_refresh_token(ctx, first["refresh_token"])
    assert row is not None
    grant = services.store.get_grant(row.grant_id)
    assert grant is not None
    minted = tokens.mint(
        ctx,
        grant,
        resources.lookup(ctx, row.audience),
        secret_id=row.secret_id,
        with_refresh=True,
        scope=row.scope,
    )  # a random successor, as before derivation
    assert minted.refresh is not None and minted.refresh_value is not None
    assert services.store.rotate_refresh_token(
        row.id, ctx.clock.now(), minted.access, minted.refresh
    )
    assert_oauth_error(
        _refresh(signed_in, confidential, first["refresh_token"]), 400, "invalid_grant"
    )
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [1]
    assert _events(services, "refresh_token.reused") == 0
    assert _reasons(services, "refresh_token.reuse_refused") == ["chain_unknown"]
    samples = scrape(signed_in)
    assert value(samples, REFUSALS, reason="chain_unknown") == 1
    assert value(samples, REVOKED) == 0
    assert_token_response(_refresh(signed_in, confidential, minted.refresh_value))


def test_concurrent_presentations_end_with_one_live_chain(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """Eight threads present the same token at once (on PostgreSQL each its own connection):
    one rotates, the others are continued with the very token it minted."""
    first = _tokens(signed_in, confidential)
    assert confidential.secret is not None
    form = Params.from_pairs(
        [
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"]),
            ("client_id", confidential.id),
            ("client_secret", confidential.secret),
        ]
    )
    actor = Actor("client", confidential.id)
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: token_endpoint.exchange(services.ctx, form, None, actor), range(8))
        )
    assert len({r.refresh_token for r in results}) == 1
    assert len({r.access_token for r in results}) == 8
    assert sum(not r.continued for r in results) == 1
    state = issued(services, confidential.id)
    assert (state.refresh, state.access, state.live_access) == (2, 9, 9)
    assert list(_live_refresh_per_family(services, confidential.id).values()) == [1]
    assert _events(services, "refresh_token.continued") == 7
    assert _events(services, "refresh_token.reused") == 0


def test_the_window_is_configurable_and_bounded(settings: Settings, clock: MovableClock) -> None:
    with pytest.raises(ValidationError):
        settings.model_validate(settings.model_dump() | {"refresh_reuse_grace_seconds": 601})
    with pytest.raises(ValidationError):
        settings.model_validate(settings.model_dump() | {"refresh_reuse_grace_seconds": -1})
    short = settings.model_copy(update={"refresh_reuse_grace_seconds": 30})
    services = build_services(short, clock=clock)
    account = make_account(services, "short", admin=False)
    app = make_client(services)
    with TestClient(create_app(short, services=services), base_url=ISSUER) as client:
        login(client, account.user.username, account.password)
        first = _tokens(client, app)
        second = assert_token_response(_refresh(client, app, first["refresh_token"]))
        clock.advance(seconds=30)
        again = assert_token_response(_refresh(client, app, first["refresh_token"]))
        assert again["refresh_token"] == second["refresh_token"]
        clock.advance(seconds=1)
        assert_oauth_error(_refresh(client, app, first["refresh_token"]), 400, "invalid_grant")
    assert _reasons(services, "refresh_token.reused") == ["window_passed"]
    assert list(_live_refresh_per_family(services, app.id).values()) == [0]
    services.store.close()
