"""A request refused by a rate limit writes nothing to the database.

Each refused request used to claim one more number from the shared counter: one durable write
per refusal, queued on SQLite's one writer (and its fsync) with the writes of every client, so
a flood of requests that were all refused — a source over its limit, fresh metadata-document
URLs — slowed every well-behaved client. Once a node has seen a key over its limit, it
refuses the rest of that window from memory (``core/caches.Leases``). Over HTTP against
the app, the counters in the database show it: they stop at the first refused hit, and the
first refusal is still audited once. Time is a ``MovableClock``; no sleeps.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.config import Settings
from authgate.core import rate_limits
from authgate.core.caches import Caches
from authgate.core.models import AuditQuery
from authgate.core.rate_limits import MINUTE, Limit, RateLimitedError
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client
from tests.flows import assert_oauth_error, refresh
from tests.http_types import Response
from tests.web.test_rate_limits import ACTOR, align

PER_CLIENT = 3
SIGN_INS = 2
FLOOD = 25


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        token_rate_per_client=PER_CLIENT,
        sign_in_rate_per_ip=SIGN_INS,
    )


def counters(services: Services, prefix: str) -> dict[str, int]:
    with services.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT key, count FROM rate_limits WHERE key LIKE :p"), {"p": prefix + "%"}
        )
        return {key: int(count) for key, count in rows}


def exceeded(services: Services) -> list[str | None]:
    events, _ = services.store.list_audit(AuditQuery(action="rate_limit.exceeded", limit=500))
    return [e.target_id for e in events]


def test_a_flood_of_refused_token_requests_writes_nothing(
    client: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    align(clock, minutes=1, second=30)

    def bogus_refresh() -> Response:
        return refresh(
            client,
            "agrt_bogus",
            client_id=confidential.app.id,
            client_secret=confidential.secret,
        )

    for _ in range(PER_CLIENT):
        assert_oauth_error(bogus_refresh(), 400, "invalid_grant")
    for _ in range(FLOOD):
        resp = bogus_refresh()
        assert_oauth_error(resp, 429, "temporarily_unavailable", "try again in")
        assert resp.headers["retry-after"] == "30"
    # The counter stopped at the first refused request: the other refusals wrote nothing.
    assert list(counters(services, "token:client:").values()) == [PER_CLIENT + 1]
    assert exceeded(services) == ["token_client"]
    # The next window counts afresh.
    clock.advance(minutes=1)
    assert_oauth_error(bogus_refresh(), 400, "invalid_grant")


def sign_in_attempt(client: TestClient) -> Response:
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None, page.text
    form = {"username": "nobody", "password": "wrong", "csrf_token": csrf.group(1)}
    return client.post("/login", data=form, follow_redirects=False)


def test_a_flood_of_refused_sign_ins_writes_nothing(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    align(clock, minutes=1, second=15)
    for _ in range(SIGN_INS):
        assert sign_in_attempt(client).status_code == 401
    for _ in range(FLOOD):
        resp = sign_in_attempt(client)
        assert resp.status_code == 429, resp.text
        assert resp.headers["retry-after"] == "45"
    assert list(counters(services, "sign_in:ip:").values()) == [SIGN_INS + 1]
    assert exceeded(services) == ["sign_in_ip"]


def test_each_node_writes_once_for_a_key_over_its_limit(
    services: Services, clock: MovableClock
) -> None:
    """Another node, sharing the store, learns it on its own first refusal: one write more,
    still audited once; a limit raised at runtime is counted in the store again."""
    align(clock, minutes=1, second=10)
    a = services.ctx
    b = dataclasses.replace(services.ctx, caches=Caches())
    limit = Limit("flood", 2, MINUTE)
    refused = 0
    for i in range(40):
        try:
            rate_limits.enforce(a if i % 2 else b, ACTOR, limit, scope="test", what="tests")
        except RateLimitedError:
            refused += 1
    assert refused == 38
    assert counters(services, "flood") == {"flood": 4}  # 2 admitted, each node's first refusal
    assert exceeded(services) == ["test"]
    raised = Limit("flood", 10, MINUTE)
    rate_limits.enforce(a, ACTOR, raised, scope="test", what="tests")  # the 5th of 10
    assert counters(services, "flood") == {"flood": 5}
