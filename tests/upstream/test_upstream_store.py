"""The upstream tables on each backend: a sign-in transaction is consumed once even when two
nodes (two stores on one database) finish the same callback at the same moment; an expired
one is never consumed and the background cleanup purges it; deleting a provider or a user
takes their identities along."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from authgate import storage
from authgate.core import cleanup
from authgate.core.context import SYSTEM
from authgate.core.models import UpstreamIdentity, UpstreamTransaction
from authgate.core.upstream import providers
from authgate.core.upstream.providers import ProviderSpec
from authgate.services import Services
from tests.clock import MovableClock
from tests.conftest import Account


def _transaction(services: Services, state_hash: str, ttl: timedelta) -> UpstreamTransaction:
    now = services.ctx.clock.now()
    return UpstreamTransaction(state_hash, "corp", "n", "v" * 64, "/", now, now + ttl)


def _provider(services: Services) -> None:
    spec = ProviderSpec(
        id="corp", display_name="Corp", issuer="https://idp.example.com", client_id="authgate"
    )
    providers.create_provider(services.ctx, SYSTEM, spec)


def _race(stores: list[storage.SqlStore], state_hash: str, now: datetime) -> list[object]:
    """Every store consumes ``state_hash`` at once (a barrier releases them together)."""
    barrier = threading.Barrier(len(stores))

    def consume(store: storage.SqlStore) -> object:
        barrier.wait(timeout=30)
        return store.consume_upstream_transaction(state_hash, now)

    with ThreadPoolExecutor(len(stores)) as pool:
        return list(pool.map(consume, stores))


def test_two_nodes_finishing_one_callback_consume_it_once(services: Services) -> None:
    _provider(services)
    other = storage.open_store(services.settings.resolved_database_url)
    try:
        for round_ in range(5):
            state_hash = f"hash-{round_}"
            services.store.create_upstream_transaction(
                _transaction(services, state_hash, timedelta(minutes=10))
            )
            now = services.ctx.clock.now()
            results = _race([services.store, other], state_hash, now)
            assert sum(r is not None for r in results) == 1, results
            assert services.store.consume_upstream_transaction(state_hash, now) is None
    finally:
        other.close()


def test_an_expired_transaction_is_not_consumed_and_the_cleanup_purges_it(
    services: Services, clock: MovableClock
) -> None:
    _provider(services)
    services.store.create_upstream_transaction(_transaction(services, "old", timedelta(minutes=10)))
    services.store.create_upstream_transaction(_transaction(services, "new", timedelta(hours=2)))
    clock.advance(minutes=11)
    assert services.store.consume_upstream_transaction("old", clock.now()) is None
    report = cleanup.run(services.ctx, retention=timedelta(0), batch_size=10)
    assert report.deleted["upstream_transactions"] == 1
    assert services.store.consume_upstream_transaction("new", clock.now()) is not None


def test_identities_go_with_their_provider_or_their_user(
    services: Services, alice: Account, admin: Account
) -> None:
    _provider(services)
    now = services.ctx.clock.now()
    for subject, user in (("a", alice.user), ("b", admin.user)):
        services.store.create_upstream_identity(UpstreamIdentity("corp", subject, user.id, now))
    assert services.store.delete_user(alice.user.id, now)
    assert services.store.get_upstream_identity("corp", "a") is None
    assert services.store.get_upstream_identity("corp", "b") is not None
    providers.delete_provider(services.ctx, SYSTEM, "corp")
    assert services.store.get_upstream_identity("corp", "b") is None
    assert services.store.get_user(admin.user.id) is not None  # the user stays
