"""``document_policy.admit_new``: what a document not stored yet must pass before it is
fetched, against the in-memory store (the HTTP side: tests/availability)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from authgate.core import document_policy
from authgate.core.context import Actor, Context
from authgate.core.models import RegistrationSettings
from authgate.core.policy import Policy
from authgate.core.rate_limits import RateLimitedError
from tests.clock import MovableClock
from tests.fakes import InMemoryStore

PER_SOURCE = 3
ATTACKER = Actor(type="anonymous", id=None, ip="198.51.100.7", user_agent=None, request_id=None)
OTHER = Actor(type="anonymous", id=None, ip="203.0.113.9", user_agent=None, request_id=None)


class CountingStore(InMemoryStore):
    """The in-memory store, counting the queries a flood would repeat."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = 0
        self.hits = 0

    def count_document_apps(self) -> int:
        self.counts += 1
        return super().count_document_apps()

    def hit_rate_limit(self, *args: Any, **kwargs: Any) -> int:
        self.hits += 1
        return super().hit_rate_limit(*args, **kwargs)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def ctx(store: CountingStore) -> Context:
    policy = Policy(issuer="https://auth.example.com", document_loads_per_ip=PER_SOURCE)
    start = datetime(2026, 3, 4, 5, 0, 1, tzinfo=UTC)  # well inside one window
    return Context(store, MovableClock(start), policy, b"k" * 32)


def test_a_spent_source_is_refused_from_memory_before_any_store_query(
    ctx: Context, store: CountingStore
) -> None:
    settings = RegistrationSettings()
    for _ in range(PER_SOURCE):
        document_policy.admit_new(ctx, ATTACKER, settings)
    with pytest.raises(RateLimitedError) as first:
        document_policy.admit_new(ctx, ATTACKER, settings)  # counted: the node learns it
    assert "rate limit documents_ip" in (first.value.debug or "")
    counts, hits = store.counts, store.hits
    for _ in range(50):
        with pytest.raises(RateLimitedError) as refused:
            document_policy.admit_new(ctx, ATTACKER, settings)
        assert refused.value.retry_after > 0
        assert refused.value.description == first.value.description
    # Fifty refusals: not one count of the cap, not one counter read or written.
    assert (store.counts, store.hits) == (counts, hits)
    # Another source is not refused, and its admission counts the cap as before.
    document_policy.admit_new(ctx, OTHER, settings)
    assert store.counts == counts + 1
