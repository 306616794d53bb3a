"""The cleanup part of the ``Store`` contract (``purge_expired``), on every backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from authgate.core.ports import Store
from tests.storage import store_builders as b
from tests.storage.test_store_contract import family, run_together

__all__ = ["family"]  # the fixture, used by the tests below


def test_expired_sessions_go_live_ones_stay(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    live, dead = b.session(u.id, expires_at=b.at(60)), b.session(u.id, expires_at=b.at(10))
    store.create_session(live)
    store.create_session(dead)
    assert store.purge_expired("sessions", b.at(30), 100) == 1
    assert store.get_session_by_hash(dead.token_hash) is None
    assert store.get_session_by_hash(live.token_hash) is not None
    assert store.purge_expired("sessions", b.at(30), 100) == 0


def test_a_batch_deletes_at_most_limit_rows(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    for minute in range(5):
        store.create_session(b.session(u.id, expires_at=b.at(minute)))
    assert [store.purge_expired("sessions", b.at(10), 2) for _ in range(4)] == [2, 2, 1, 0]


def test_expiry_is_exclusive_of_the_cutoff(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    store.create_session(b.session(u.id, expires_at=b.at(10)))
    assert store.purge_expired("sessions", b.at(10), 10) == 0
    assert store.purge_expired("sessions", b.at(10) + timedelta(microseconds=1), 10) == 1


def test_a_grant_goes_only_after_everything_that_refers_to_it(
    store: Store, family: dict[str, Any]
) -> None:
    grant, code = family["grant"], family["code"]
    access, refresh = family["access"], family["refresh"]
    far = b.at(60 * 24 * 365)
    # The redeemed code (expires at minute 1) still names the grant.
    assert store.purge_expired("grants", far, 100) == 0
    assert store.purge_expired("codes", b.at(2), 100) == 1
    assert store.get_code_by_prefix(code.prefix) is None
    assert store.purge_expired("grants", far, 100) == 0  # its tokens still refer to it
    assert store.purge_expired("access_tokens", b.at(61), 100) == 1
    assert store.get_access_token_by_prefix(access.prefix) is None
    assert store.purge_expired("refresh_tokens", b.at(61), 100) == 0  # a 30-day refresh token
    assert store.get_refresh_token_by_prefix(refresh.prefix) is not None
    assert store.purge_expired("grants", far, 100) == 0
    assert store.get_grant(grant.id) is not None
    assert store.purge_expired("refresh_tokens", far, 100) == 1
    # Nothing refers to it now; it goes once it was created before the cutoff.
    assert store.purge_expired("grants", b.at(0), 100) == 0
    assert store.purge_expired("grants", b.at(1), 100) == 1
    assert store.get_grant(grant.id) is None


def test_unexpired_rows_of_every_kind_are_kept(store: Store, family: dict[str, Any]) -> None:
    for kind in ("sessions", "codes", "access_tokens", "refresh_tokens", "grants"):
        assert store.purge_expired(kind, b.at(0), 100) == 0, kind
    assert store.get_grant(family["grant"].id) is not None
    assert store.get_code_by_prefix(family["code"].prefix) is not None


def test_client_credentials_tokens_without_a_grant_are_purged(store: Store) -> None:
    a = b.app()
    store.create_app(a)
    token = b.access(None, a.id, expires_at=b.at(5))
    store.create_access_token(token)
    assert store.purge_expired("access_tokens", b.at(6), 10) == 1
    assert store.get_access_token_by_prefix(token.prefix) is None


def test_concurrent_cleaners_delete_every_row_once(store: Store) -> None:
    """Several nodes cleaning at once: each row is deleted by exactly one of them."""
    u = b.user()
    store.create_user(u)
    for minute in range(60):
        store.create_session(b.session(u.id, expires_at=b.at(minute % 10)))

    def clean(_: int) -> int:
        total = 0
        for _batch in range(100):
            count = store.purge_expired("sessions", b.at(30), 7)
            total += count
            if count == 0:
                break
        return total

    assert sum(run_together(4, clean)) == 60
    assert store.purge_expired("sessions", b.at(30), 100) == 0
