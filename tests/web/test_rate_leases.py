"""Rate-limit counting in blocks (core/rate_limits.Leases): a busy limit costs one store write
per block, and still never admits more than the limit, across nodes that share the store."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import sqlalchemy as sa

from authgate.app import Services
from authgate.core import rate_limits
from authgate.core.caches import Caches
from authgate.core.context import Context
from authgate.core.models import AuditQuery
from authgate.core.rate_limits import MINUTE, Limit, RateLimitedError
from tests.clock import MovableClock
from tests.web.test_rate_limits import ACTOR


def node(services: Services) -> Context:
    """Another node: the same store and clock, its own caches and leases."""
    return dataclasses.replace(services.ctx, caches=Caches())


def stored_count(services: Services, key: str) -> int:
    with services.store.engine.connect() as conn:
        query = sa.text("SELECT coalesce(sum(count), 0) FROM rate_limits WHERE key = :k")
        return int(conn.execute(query, {"k": key}).scalar_one())


@pytest.mark.parametrize(("max_hits", "block"), [(5, 1), (39, 1), (40, 2), (600, 30), (10**6, 50)])
def test_block_size(max_hits: int, block: int) -> None:
    assert rate_limits.block_size(Limit("k", max_hits)) == block


def test_a_busy_limit_writes_once_per_block(services: Services) -> None:
    limit = Limit("busy", 600, MINUTE)
    counts = [rate_limits.hit(services.ctx, limit).count for _ in range(31)]
    assert counts == list(range(1, 32))
    assert stored_count(services, "busy") == 60  # two blocks of 30 claimed


def test_small_limits_count_every_hit_in_the_store(services: Services) -> None:
    limit = Limit("small", 10, MINUTE)
    for expected in range(1, 6):
        assert rate_limits.hit(services.ctx, limit).count == expected
        assert stored_count(services, "small") == expected


def test_two_nodes_never_admit_more_than_the_limit(services: Services) -> None:
    a, b = services.ctx, node(services)
    limit = Limit("shared", 100, MINUTE)  # blocks of 5
    admitted, refused, numbers = 0, 0, []
    for i in range(150):
        ctx = a if i % 3 else b  # uneven, so one node holds unused hits at times
        try:
            rate_limits.enforce(ctx, ACTOR, limit, scope="test", what="tests")
            admitted += 1
            numbers.append(ctx.caches.rate_leases._leases[limit.key].next - 1)
        except RateLimitedError:
            refused += 1
    assert admitted + refused == 150
    assert 100 - 2 * 5 <= admitted <= 100  # at most one unused block per node
    assert len(set(numbers)) == admitted  # every admitted hit got its own number
    # Past the limit each node refuses from memory: at most one more block per node was
    # claimed, not one per refused hit.
    assert stored_count(services, "shared") <= 100 + 2 * 5


def test_the_first_refusal_is_audited_once_across_nodes(services: Services) -> None:
    a, b = services.ctx, node(services)
    limit = Limit("audited", 40, MINUTE)  # blocks of 2
    for i in range(60):
        with contextlib.suppress(RateLimitedError):
            rate_limits.enforce(a if i % 2 else b, ACTOR, limit, scope="test", what="tests")
    events, _ = services.store.list_audit(AuditQuery(action="rate_limit.exceeded"))
    assert len(events) == 1


def test_a_new_window_starts_a_new_block(services: Services, clock: MovableClock) -> None:
    limit = Limit("windows", 600, MINUTE)
    clock.current = clock.current.replace(second=20, microsecond=0)
    assert rate_limits.hit(services.ctx, limit).count == 1
    assert rate_limits.hit(services.ctx, limit).count == 2
    clock.advance(minutes=1)
    assert rate_limits.hit(services.ctx, limit).count == 1
    clock.advance(seconds=-70)  # the clock went back into the first window
    assert rate_limits.hit(services.ctx, limit).count == 31  # a fresh block: 31..60


def test_unlimited_counts_nothing(services: Services) -> None:
    assert rate_limits.hit(services.ctx, Limit("off", 0, MINUTE)).count == 1
    assert stored_count(services, "off") == 0
