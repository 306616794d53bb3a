"""Next signing keys when nodes race (``core/keys.py``): nodes that start together on an empty
database, or refresh together, each make a next key; one stays, so a rotation afterwards
publishes a fresh one. The in-memory store; the race between real nodes on PostgreSQL is
tests/e2e/test_multi_node.py."""

from __future__ import annotations

from datetime import UTC, datetime

from authgate.core import keys
from authgate.core.context import SYSTEM, Context
from authgate.core.policy import Policy
from tests.clock import MovableClock
from tests.fakes import InMemoryStore

START = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def node(store: InMemoryStore, clock: MovableClock) -> Context:
    """A node: its own caches, the shared store and clock."""
    return Context(store, clock, Policy(issuer="https://auth.example.com"), b"k" * 32)


def pending(store: InMemoryStore) -> list[str]:
    return [k.kid for k in store.list_signing_keys() if k.activated_at is None]


def test_a_next_key_made_beside_another_one_gives_way_to_the_older() -> None:
    store, clock = InMemoryStore(), MovableClock(START)
    a, b = node(store, clock), node(store, clock)
    first = keys.new_key(a, "ES256")  # node A's, stored before node B looks
    clock.advance(seconds=1)
    kept = keys._new_next_key(b)  # node B makes its own, then finds A's
    assert kept.kid == first.kid
    assert pending(store) == [first.kid]
    # An activated key is never deleted as a surplus next key.
    assert store.activate_signing_key(first.kid, clock.now(), clock.now())
    assert store.delete_next_signing_key(first.kid) is False


def test_nodes_refreshing_together_leave_one_next_key_and_rotation_publishes_a_fresh_one() -> None:
    store, clock = InMemoryStore(), MovableClock(START)
    a, b = node(store, clock), node(store, clock)
    # Both refresh an empty keyring: an active key and exactly one next key, whoever came first.
    keys.current_keys(a)
    keys.current_keys(b)
    stored = store.list_signing_keys()
    assert len([k for k in stored if k.activated_at is not None]) == 1
    assert len(pending(store)) == 1
    before = {k.kid for k in stored}
    promoted = keys.rotate(a, SYSTEM)
    after = {k.kid for k in store.list_signing_keys()}
    assert promoted.kid in before  # the published next key became the active one
    assert len(after - before) == 1  # and a fresh next key is published
    assert len(pending(store)) == 1
