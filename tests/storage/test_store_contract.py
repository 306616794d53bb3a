"""The ``Store`` contract (authgate.core.ports), run against every backend.

Each test runs on the in-memory fake, SQLite and PostgreSQL (see conftest.py), so the fake that
core tests rely on cannot drift from the real stores.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from authgate.core.models import AuditQuery, ScopeInfo
from authgate.core.ports import DuplicateKeyError, Store
from authgate.storage import SqlStore
from authgate.storage.sql.tables import client_assertion_jtis
from tests.fakes import InMemoryStore
from tests.storage import store_builders as b

T = TypeVar("T")


def assert_round_trip(stored: Any, original: Any) -> None:
    """Equal field by field, tuples still tuples, and every datetime aware UTC."""
    assert stored is not None
    assert type(stored) is type(original)
    for f in dataclasses.fields(original):
        got, want = getattr(stored, f.name), getattr(original, f.name)
        assert got == want, f.name
        assert type(got) is type(want), f.name
        if isinstance(got, datetime):
            assert got.tzinfo == UTC and got.utcoffset() == timedelta(0), f.name


def run_together(n: int, call: Callable[[int], T]) -> list[T]:
    """Call ``call(i)`` from n threads released at the same instant."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as error:  # surfaced below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.fixture
def family(store: Store) -> dict[str, Any]:
    """A user, an app with a secret, and one redeemed code: a live grant family."""
    u, a = b.user(), b.app()
    store.create_user(u)
    store.create_app(a)
    s = b.secret(a.id)
    store.create_secret(s)
    c = b.code(a.id, u.id)
    store.create_code(c)
    g = b.grant(a.id, u.id)
    at_, rt = b.access(g, a.id, secret_id=s.id), b.refresh(g, secret_id=s.id)
    assert store.redeem_code(c.id, b.at(0.5), g, at_, rt)
    return {"user": u, "app": a, "secret": s, "code": c, "grant": g, "access": at_, "refresh": rt}


# -- users ---------------------------------------------------------------------------------


def test_user_round_trip(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    assert_round_trip(store.get_user(u.id), u)
    assert_round_trip(store.get_user_by_username(u.username), u)
    assert store.get_user("missing") is None
    assert store.get_user_by_username("missing") is None


def test_user_with_nulls_round_trips(store: Store) -> None:
    u = b.user(password_hash=None, is_admin=False, disabled=True)
    store.create_user(u)
    assert_round_trip(store.get_user(u.id), u)


def test_list_and_count_users(store: Store) -> None:
    assert store.count_users() == 0
    assert list(store.list_users()) == []
    later, earlier = b.user(created_at=b.at(5)), b.user(created_at=b.at(1))
    store.create_user(later)
    store.create_user(earlier)
    assert [u.id for u in store.list_users()] == [earlier.id, later.id]
    assert store.count_users() == 2


def test_update_user_replaces_every_field(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    changed = dataclasses.replace(
        u,
        username=u.username + "x",
        email="new@example.test",
        name="New",
        password_hash=None,
        is_admin=False,
        disabled=True,
        updated_at=b.at(30),
    )
    store.update_user(changed)
    assert_round_trip(store.get_user(u.id), changed)
    assert store.get_user_by_username(u.username) is None
    assert store.count_users() == 1


def test_duplicate_username_or_id_is_refused(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    with pytest.raises(DuplicateKeyError):
        store.create_user(b.user(username=u.username))
    with pytest.raises(DuplicateKeyError):
        store.create_user(b.user(id=u.id))
    other = b.user()
    store.create_user(other)
    with pytest.raises(DuplicateKeyError):
        store.update_user(dataclasses.replace(other, username=u.username))
    assert store.count_users() == 2
    assert_round_trip(store.get_user(other.id), other)


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.create_user(b.user(created_at=datetime(2026, 1, 1)))
    assert store.count_users() == 0


# -- sessions and API tokens ---------------------------------------------------------------


def test_session_round_trip_and_delete(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    s1, s2 = b.session(u.id), b.session(u.id, ip=None, user_agent=None)
    store.create_session(s1)
    store.create_session(s2)
    assert_round_trip(store.get_session_by_hash(s1.token_hash), s1)
    assert_round_trip(store.get_session_by_hash(s2.token_hash), s2)
    store.delete_session(s1.id)
    assert store.get_session_by_hash(s1.token_hash) is None
    assert store.get_session_by_hash(s2.token_hash) is not None


def test_duplicate_session_hash_is_refused(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    s = b.session(u.id)
    store.create_session(s)
    with pytest.raises(DuplicateKeyError):
        store.create_session(b.session(u.id, token_hash=s.token_hash))


def test_delete_user_sessions_leaves_other_users_alone(store: Store) -> None:
    u, other = b.user(), b.user()
    store.create_user(u)
    store.create_user(other)
    mine, theirs = [b.session(u.id), b.session(u.id)], b.session(other.id)
    for s in [*mine, theirs]:
        store.create_session(s)
    store.delete_user_sessions(u.id)
    assert all(store.get_session_by_hash(s.token_hash) is None for s in mine)
    assert_round_trip(store.get_session_by_hash(theirs.token_hash), theirs)


def test_api_token_lifecycle(store: Store) -> None:
    u = b.user()
    store.create_user(u)
    first, second = b.api_token(u.id, created_at=b.at(1)), b.api_token(u.id, expires_at=None)
    store.create_api_token(first)
    store.create_api_token(second)
    assert_round_trip(store.get_api_token_by_prefix(first.prefix), first)
    assert [t.id for t in store.list_api_tokens(u.id)] == [second.id, first.id]
    assert list(store.list_api_tokens("nobody")) == []

    store.touch_api_token(first.id, b.at(10).astimezone(b.PLUS_TWO))
    touched = store.get_api_token_by_prefix(first.prefix)
    assert_round_trip(touched, dataclasses.replace(first, last_used_at=b.at(10)))

    with pytest.raises(DuplicateKeyError):
        store.create_api_token(b.api_token(u.id, prefix=first.prefix))
    assert store.delete_api_token(first.id) is True
    assert store.delete_api_token(first.id) is False
    assert store.get_api_token_by_prefix(first.prefix) is None
    assert [t.id for t in store.list_api_tokens(u.id)] == [second.id]


# -- apps and secrets ----------------------------------------------------------------------


def test_app_round_trip_keeps_tuples(store: Store) -> None:
    a = b.app()
    public = b.app(
        client_type="public",
        token_endpoint_auth_method=None,
        scope=None,
        redirect_uris=(),
        grant_types=("client_credentials",),
        first_party=True,
        created_at=b.at(1),
    )
    store.create_app(a)
    store.create_app(public)
    assert_round_trip(store.get_app(a.id), a)
    assert_round_trip(store.get_app(public.id), public)
    assert [x.id for x in store.list_apps()] == [a.id, public.id]
    assert store.get_app("missing") is None
    with pytest.raises(DuplicateKeyError):
        store.create_app(b.app(id=a.id))


def test_update_app(store: Store) -> None:
    a = b.app()
    store.create_app(a)
    changed = dataclasses.replace(
        a,
        name="Renamed",
        redirect_uris=("https://new.example.test/cb",),
        grant_types=("authorization_code",),
        require_pkce=False,
        updated_at=b.at(9),
    )
    store.update_app(changed)
    assert_round_trip(store.get_app(a.id), changed)


#: The registration metadata an app has when nobody set it (the model's defaults).
BARE_METADATA: dict[str, Any] = {
    "application_type": "web",
    "client_uri": "",
    "tos_uri": "",
    "policy_uri": "",
    "contacts": (),
    "jwks": None,
    "jwks_uri": "",
    "software_id": "",
    "software_version": "",
    "registration_token_hash": None,
    "metadata_document": False,
    "metadata_expires_at": None,
    "last_used_at": None,
}


def test_app_registration_metadata_round_trips(store: Store) -> None:
    full = b.app()
    bare = b.app(**BARE_METADATA, created_at=b.at(1))
    document = b.app(
        id=f"https://{b.uid('client')}.example.test/oauth/client.json",
        token_endpoint_auth_method="private_key_jwt",
        dynamically_registered=False,
        metadata_document=True,
        metadata_expires_at=b.at(60).astimezone(b.PLUS_TWO),
        jwks=None,
        registration_token_hash=None,
        created_at=b.at(2),
    )
    for a in (full, bare, document):
        store.create_app(a)
    assert_round_trip(store.get_app(full.id), full)
    assert_round_trip(store.get_app(bare.id), bare)
    assert_round_trip(store.get_app(document.id), document)
    listed = store.list_apps()
    assert [a.id for a in listed] == [full.id, bare.id, document.id]
    for stored, original in zip(listed, (full, bare, document), strict=True):
        assert_round_trip(stored, original)
    again = store.get_app(full.id)
    assert again is not None and type(again.jwks) is dict


def test_stored_jwks_is_not_shared_with_the_caller(store: Store) -> None:
    a = b.app()
    assert a.jwks is not None
    expected = copy.deepcopy(a.jwks)
    store.create_app(a)
    a.jwks["keys"].clear()  # the caller's dict, after the write
    got = store.get_app(a.id)
    assert got is not None and got.jwks == expected
    got.jwks["extra"] = True  # a reader's copy
    again = store.get_app(a.id)
    assert again is not None and again.jwks == expected


def _fields(model: Any) -> dict[str, Any]:
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}


def test_update_app_replaces_the_registration_metadata(store: Store) -> None:
    a, bare = b.app(), b.app(**BARE_METADATA)
    store.create_app(a)
    store.create_app(bare)
    cleared = dataclasses.replace(a, **BARE_METADATA, updated_at=b.at(9))
    store.update_app(cleared)
    assert_round_trip(store.get_app(a.id), cleared)
    full = _fields(b.app()) | {"metadata_document": True, "metadata_expires_at": b.at(30)}
    filled = dataclasses.replace(bare, **{k: v for k, v in full.items() if k in BARE_METADATA})
    store.update_app(filled)
    assert_round_trip(store.get_app(bare.id), filled)


def test_upsert_app_inserts_then_replaces_every_field(store: Store) -> None:
    a = b.app(**BARE_METADATA)
    store.upsert_app(a)
    assert_round_trip(store.get_app(a.id), a)
    s = b.secret(a.id)
    store.create_secret(s)

    replaced = b.app(id=a.id, name="Refreshed", created_at=b.at(-1), client_type="public")
    store.upsert_app(replaced)
    assert_round_trip(store.get_app(a.id), replaced)
    # An update in place: nothing that hangs off the app is deleted or re-created.
    assert_round_trip(store.get_secret_by_prefix(s.prefix), s)
    back = dataclasses.replace(replaced, **BARE_METADATA, scope=None, redirect_uris=())
    store.upsert_app(back)
    assert_round_trip(store.get_app(a.id), back)
    assert [x.id for x in store.list_apps()] == [a.id]


def test_concurrent_upserts_of_one_app_leave_one_row(store: Store) -> None:
    app_id = f"https://{b.uid('client')}.example.test/client.json"
    versions = [b.app(id=app_id, name=f"v{i}", metadata_document=True) for i in range(8)]

    run_together(8, lambda i: store.upsert_app(versions[i]))

    listed = store.list_apps()
    assert [a.id for a in listed] == [app_id]
    assert listed[0].name in {v.name for v in versions}
    assert_round_trip(listed[0], versions[int(listed[0].name[1:])])


def test_touch_app(store: Store) -> None:
    a, other = b.app(last_used_at=None), b.app()
    store.create_app(a)
    store.create_app(other)
    store.touch_app(a.id, b.at(10).astimezone(b.PLUS_TWO))
    assert_round_trip(store.get_app(a.id), dataclasses.replace(a, last_used_at=b.at(10)))
    store.touch_app(a.id, b.at(11))
    assert_round_trip(store.get_app(a.id), dataclasses.replace(a, last_used_at=b.at(11)))
    assert_round_trip(store.get_app(other.id), other)
    store.touch_app("missing", b.at(12))  # nothing happens
    assert len(store.list_apps()) == 2


def test_count_dynamic_apps(store: Store) -> None:
    assert store.count_dynamic_apps() == 0
    for dynamic in (True, False, True, False, False):
        store.create_app(b.app(dynamically_registered=dynamic))
    assert store.count_dynamic_apps() == 2
    gone = b.app()
    store.create_app(gone)
    assert store.count_dynamic_apps() == 3
    store.delete_app(gone.id)
    assert store.count_dynamic_apps() == 2


def test_list_stale_dynamic_apps(store: Store) -> None:
    """Last seen (last token request, else creation) strictly before the cutoff, oldest first."""
    never_used = b.app(created_at=b.at(0), last_used_at=None)
    seen_at_five = sorted(
        (
            b.app(created_at=b.at(-100), last_used_at=b.at(5)),
            b.app(created_at=b.at(5), last_used_at=None),
            b.app(created_at=b.at(1), last_used_at=b.at(5).astimezone(b.PLUS_TWO)),
        ),
        key=lambda a: a.id,
    )
    fresh = (
        b.app(created_at=b.at(-100), last_used_at=b.at(10)),  # at the cutoff: not before it
        b.app(created_at=b.at(-100), last_used_at=b.at(50)),
        b.app(created_at=b.at(20), last_used_at=None),
        b.app(created_at=b.at(10), last_used_at=None),
    )
    not_dynamic = (
        b.app(dynamically_registered=False, created_at=b.at(-100), last_used_at=None),
        b.app(dynamically_registered=False, metadata_document=True, created_at=b.at(-100)),
    )
    for a in (*fresh, *seen_at_five, never_used, *not_dynamic):
        store.create_app(a)

    stale = store.list_stale_dynamic_apps(b.at(10).astimezone(b.PLUS_TWO))

    assert [a.id for a in stale] == [never_used.id, *[a.id for a in seen_at_five]]
    for got, want in zip(stale, (never_used, *seen_at_five), strict=True):
        assert_round_trip(got, want)
    assert list(store.list_stale_dynamic_apps(b.at(-1000))) == []
    store.touch_app(never_used.id, b.at(11))
    assert [a.id for a in store.list_stale_dynamic_apps(b.at(10))] == [a.id for a in seen_at_five]
    assert len(store.list_stale_dynamic_apps(b.at(10_000))) == 4 + len(fresh)
    with pytest.raises(ValueError, match="naive"):
        store.list_stale_dynamic_apps(datetime(2026, 1, 1))


def test_secret_lifecycle(store: Store) -> None:
    a = b.app()
    store.create_app(a)
    s1, s2 = b.secret(a.id, created_at=b.at(2)), b.secret(a.id, created_at=b.at(1))
    store.create_secret(s1)
    store.create_secret(s2)
    assert_round_trip(store.get_secret_by_prefix(s1.prefix), s1)
    assert [s.id for s in store.list_secrets(a.id)] == [s2.id, s1.id]
    store.touch_secret(s1.id, b.at(3))
    assert_round_trip(
        store.get_secret_by_prefix(s1.prefix), dataclasses.replace(s1, last_used_at=b.at(3))
    )
    with pytest.raises(DuplicateKeyError):
        store.create_secret(b.secret(a.id, prefix=s1.prefix))
    assert store.delete_secret(s1.id, b.at(4)) is True
    assert store.delete_secret(s1.id, b.at(4)) is False
    assert store.get_secret_by_prefix(s1.prefix) is None
    assert [s.id for s in store.list_secrets(a.id)] == [s2.id]


def test_app_and_secret_are_read_together(store: Store) -> None:
    a, other = b.app(), b.app()
    store.create_app(a)
    store.create_app(other)
    mine, theirs = b.secret(a.id), b.secret(other.id)
    store.create_secret(mine)
    store.create_secret(theirs)
    app, secret = store.get_app_and_secret(a.id, mine.prefix)
    assert app is not None and secret is not None
    assert_round_trip(app, a)
    assert_round_trip(secret, mine)
    # Whichever app the secret belongs to: the caller checks.
    app, secret = store.get_app_and_secret(a.id, theirs.prefix)
    assert app is not None and app.id == a.id
    assert secret is not None
    assert_round_trip(secret, theirs)
    app, secret = store.get_app_and_secret(a.id, "no-such-prefix")
    assert app is not None and app.id == a.id and secret is None
    assert store.get_app_and_secret("no-such-app", mine.prefix) == (None, None)
    assert store.delete_secret(mine.id, b.at(1)) is True
    app, secret = store.get_app_and_secret(a.id, mine.prefix)
    assert app is not None and secret is None


def test_secret_of_missing_app_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.create_secret(b.secret("no-such-app"))


# -- codes ---------------------------------------------------------------------------------


def test_code_round_trip(store: Store) -> None:
    u, a = b.user(), b.app()
    store.create_user(u)
    store.create_app(a)
    c = b.code(a.id, u.id)
    bare = b.code(
        a.id,
        u.id,
        redirect_uri_provided=False,
        code_challenge=None,
        code_challenge_method=None,
        state_hash=None,
    )
    store.create_code(c)
    store.create_code(bare)
    assert_round_trip(store.get_code_by_prefix(c.prefix), c)
    assert_round_trip(store.get_code_by_prefix(bare.prefix), bare)
    with pytest.raises(DuplicateKeyError):
        store.create_code(b.code(a.id, u.id, prefix=c.prefix))


def test_redeem_code_once(store: Store, family: dict[str, Any]) -> None:
    c, g = family["code"], family["grant"]
    stored = store.get_code_by_prefix(c.prefix)
    assert_round_trip(stored, dataclasses.replace(c, consumed_at=b.at(0.5), grant_id=g.id))
    assert_round_trip(store.get_grant(g.id), g)
    assert_round_trip(store.get_access_token_by_prefix(family["access"].prefix), family["access"])
    assert_round_trip(
        store.get_refresh_token_by_prefix(family["refresh"].prefix), family["refresh"]
    )

    g2 = b.grant(g.app_id, g.user_id)
    a2, r2 = b.access(g2, g.app_id), b.refresh(g2)
    assert store.redeem_code(c.id, b.at(0.7), g2, a2, r2) is False
    assert store.get_grant(g2.id) is None
    assert store.get_access_token_by_prefix(a2.prefix) is None
    assert store.get_refresh_token_by_prefix(r2.prefix) is None
    again = store.get_code_by_prefix(c.prefix)
    assert again is not None and again.consumed_at == b.at(0.5) and again.grant_id == g.id


def test_redeem_code_without_refresh_token(store: Store) -> None:
    u, a = b.user(), b.app()
    store.create_user(u)
    store.create_app(a)
    c = b.code(a.id, u.id)
    store.create_code(c)
    g = b.grant(a.id, u.id)
    at_ = b.access(g, a.id)
    assert store.redeem_code(c.id, b.at(0.5), g, at_, None) is True
    assert_round_trip(store.get_access_token_by_prefix(at_.prefix), at_)


def test_redeem_unknown_code_stores_nothing(store: Store) -> None:
    a, u = b.app(), b.user()
    store.create_app(a)
    store.create_user(u)
    g = b.grant(a.id, u.id)
    assert store.redeem_code("no-such-code", b.at(0), g, b.access(g, a.id), None) is False
    assert store.get_grant(g.id) is None


def test_failed_redemption_is_rolled_back(store: Store, family: dict[str, Any]) -> None:
    """A write that fails half way leaves the code unconsumed and no grant behind."""
    u, a = family["user"], family["app"]
    c = b.code(a.id, u.id)
    store.create_code(c)
    g = b.grant(a.id, u.id)
    clash = b.access(g, a.id, prefix=family["access"].prefix)
    with pytest.raises(DuplicateKeyError):
        store.redeem_code(c.id, b.at(1), g, clash, b.refresh(g))
    stored = store.get_code_by_prefix(c.prefix)
    assert stored is not None and stored.consumed_at is None and stored.grant_id is None
    assert store.get_grant(g.id) is None


def test_concurrent_redemption_mints_one_family(store: Store) -> None:
    u, a = b.user(), b.app()
    store.create_user(u)
    store.create_app(a)
    c = b.code(a.id, u.id)
    store.create_code(c)
    attempts = []
    for _ in range(8):
        g = b.grant(a.id, u.id)
        attempts.append((g, b.access(g, a.id), b.refresh(g)))

    results = run_together(8, lambda i: store.redeem_code(c.id, b.at(1), *attempts[i]))

    assert results.count(True) == 1 and results.count(False) == 7
    winner = results.index(True)
    stored_grants = [store.get_grant(g.id) for g, _, _ in attempts]
    assert [x is not None for x in stored_grants] == [i == winner for i in range(8)]
    stored_access = [store.get_access_token_by_prefix(x.prefix) for _, x, _ in attempts]
    assert sum(x is not None for x in stored_access) == 1
    stored_refresh = [store.get_refresh_token_by_prefix(r.prefix) for _, _, r in attempts]
    assert sum(r is not None for r in stored_refresh) == 1
    consumed = store.get_code_by_prefix(c.prefix)
    assert consumed is not None and consumed.grant_id == attempts[winner][0].id


# -- tokens --------------------------------------------------------------------------------


def test_client_credentials_access_token_round_trip(store: Store) -> None:
    a = b.app()
    store.create_app(a)
    s = b.secret(a.id)
    store.create_secret(s)
    token = b.access(None, a.id, secret_id=s.id)
    store.create_access_token(token)
    assert_round_trip(store.get_access_token_by_prefix(token.prefix), token)
    assert store.get_access_token_by_prefix("missing") is None
    with pytest.raises(DuplicateKeyError):
        store.create_access_token(b.access(None, a.id, prefix=token.prefix))


def test_refresh_token_and_grant_are_read_together(store: Store, family: dict[str, Any]) -> None:
    token, grant = family["refresh"], family["grant"]
    got_token, got_grant, user_disabled = store.get_refresh_token_and_grant(token.prefix)
    assert got_token is not None and got_grant is not None
    assert_round_trip(got_token, token)
    assert_round_trip(got_grant, grant)
    assert user_disabled is False
    assert store.get_refresh_token_and_grant("no-such-prefix") == (None, None, False)
    # Whatever state they are in: the caller decides.
    assert store.revoke_grant(grant.id, b.at(5)) is True
    got_token, got_grant, _ = store.get_refresh_token_and_grant(token.prefix)
    assert got_token is not None and got_token.revoked_at == b.at(5)
    assert got_grant is not None and got_grant.revoked_at == b.at(5)


def test_refresh_token_read_says_whether_its_user_is_disabled(
    store: Store, family: dict[str, Any]
) -> None:
    store.update_user(dataclasses.replace(family["user"], disabled=True))
    got_token, got_grant, user_disabled = store.get_refresh_token_and_grant(
        family["refresh"].prefix
    )
    assert got_token is not None and got_grant is not None and got_grant.revoked_at is None
    assert user_disabled is True


def test_rotate_refresh_token_once(store: Store, family: dict[str, Any]) -> None:
    g, old = family["grant"], family["refresh"]
    a2, r2 = b.access(g, g.app_id), b.refresh(g)
    assert store.rotate_refresh_token(old.id, b.at(10), a2, r2) is True
    assert_round_trip(
        store.get_refresh_token_by_prefix(old.prefix),
        dataclasses.replace(old, consumed_at=b.at(10)),
    )
    assert_round_trip(store.get_access_token_by_prefix(a2.prefix), a2)
    assert_round_trip(store.get_refresh_token_by_prefix(r2.prefix), r2)

    a3, r3 = b.access(g, g.app_id), b.refresh(g)
    assert store.rotate_refresh_token(old.id, b.at(11), a3, r3) is False
    assert store.get_access_token_by_prefix(a3.prefix) is None
    assert store.get_refresh_token_by_prefix(r3.prefix) is None
    still = store.get_refresh_token_by_prefix(old.prefix)
    assert still is not None and still.consumed_at == b.at(10)


def test_rotate_revoked_refresh_token_is_refused(store: Store, family: dict[str, Any]) -> None:
    g, old = family["grant"], family["refresh"]
    assert store.revoke_grant(g.id, b.at(5)) is True
    a2, r2 = b.access(g, g.app_id), b.refresh(g)
    assert store.rotate_refresh_token(old.id, b.at(10), a2, r2) is False
    assert store.get_refresh_token_by_prefix(r2.prefix) is None
    assert store.get_access_token_by_prefix(a2.prefix) is None
    assert store.rotate_refresh_token("missing", b.at(10), a2, r2) is False


def test_concurrent_rotation_mints_one_pair(store: Store, family: dict[str, Any]) -> None:
    g, old = family["grant"], family["refresh"]
    pairs = [(b.access(g, g.app_id), b.refresh(g)) for _ in range(8)]

    results = run_together(8, lambda i: store.rotate_refresh_token(old.id, b.at(10), *pairs[i]))

    assert results.count(True) == 1
    winner = results.index(True)
    stored = [store.get_refresh_token_by_prefix(r.prefix) is not None for _, r in pairs]
    assert stored == [i == winner for i in range(8)]
    assert sum(store.get_access_token_by_prefix(x.prefix) is not None for x, _ in pairs) == 1


def test_issue_in_family(store: Store, family: dict[str, Any]) -> None:
    g = family["grant"]
    a2, r2 = b.access(g, g.app_id), b.refresh(g)
    assert store.issue_in_family(g.id, a2, r2) is True
    assert_round_trip(store.get_access_token_by_prefix(a2.prefix), a2)
    assert_round_trip(store.get_refresh_token_by_prefix(r2.prefix), r2)

    assert store.revoke_grant(g.id, b.at(20)) is True
    a3, r3 = b.access(g, g.app_id), b.refresh(g)
    assert store.issue_in_family(g.id, a3, r3) is False
    assert store.get_access_token_by_prefix(a3.prefix) is None
    assert store.get_refresh_token_by_prefix(r3.prefix) is None
    assert store.issue_in_family("no-such-grant", a3, r3) is False


def test_issue_in_family_an_access_token_alone(store: Store, family: dict[str, Any]) -> None:
    """A continued refresh adds an access token and leaves the family's refresh tokens alone."""
    g = family["grant"]
    a2 = b.access(g, g.app_id)
    assert store.issue_in_family(g.id, a2, None) is True
    assert_round_trip(store.get_access_token_by_prefix(a2.prefix), a2)
    assert store.revoke_grant(g.id, b.at(20)) is True
    a3 = b.access(g, g.app_id)
    assert store.issue_in_family(g.id, a3, None) is False
    assert store.get_access_token_by_prefix(a3.prefix) is None


def test_revoke_grant_revokes_the_whole_family(store: Store, family: dict[str, Any]) -> None:
    g, a = family["grant"], family["app"]
    a2, r2 = b.access(g, a.id), b.refresh(g)
    assert store.rotate_refresh_token(family["refresh"].id, b.at(5), a2, r2)
    bystander = b.grant(a.id, family["user"].id)
    other_code = b.code(a.id, family["user"].id)
    store.create_code(other_code)
    bystander_access = b.access(bystander, a.id)
    assert store.redeem_code(other_code.id, b.at(1), bystander, bystander_access, None)

    assert store.revoke_grant(g.id, b.at(30)) is True

    revoked = store.get_grant(g.id)
    assert revoked is not None and revoked.revoked_at == b.at(30)
    for token in (family["access"], a2):
        stored = store.get_access_token_by_prefix(token.prefix)
        assert stored is not None and stored.revoked_at == b.at(30)
    for rt in (family["refresh"], r2):
        stored_rt = store.get_refresh_token_by_prefix(rt.prefix)
        assert stored_rt is not None and stored_rt.revoked_at == b.at(30)
    untouched = store.get_access_token_by_prefix(bystander_access.prefix)
    assert untouched is not None and untouched.revoked_at is None
    assert_round_trip(store.get_grant(bystander.id), bystander)

    assert store.revoke_grant(g.id, b.at(40)) is False
    again = store.get_grant(g.id)
    assert again is not None and again.revoked_at == b.at(30)


def test_revoke_access_token(store: Store, family: dict[str, Any]) -> None:
    token = family["access"]
    assert store.revoke_access_token(token.id, b.at(3)) is True
    assert store.revoke_access_token(token.id, b.at(4)) is False
    stored = store.get_access_token_by_prefix(token.prefix)
    assert stored is not None and stored.revoked_at == b.at(3)
    grant = store.get_grant(family["grant"].id)
    assert grant is not None and grant.revoked_at is None
    assert store.revoke_access_token("missing", b.at(4)) is False


def test_a_revocation_appends_its_event_in_the_same_transaction(
    store: Store, family: dict[str, Any]
) -> None:
    token, grant = family["access"], family["grant"]
    revoked = b.event(action="token.revoked", target_type="access_token", target_id=token.id)
    assert store.revoke_access_token(token.id, b.at(3), revoked) is True
    # Nothing revoked, nothing recorded.
    assert store.revoke_access_token(token.id, b.at(4), b.event(action="token.revoked")) is False
    events, total = store.list_audit(AuditQuery(action="token.revoked"))
    assert total == 1
    assert_round_trip(events[0], revoked)

    # The event cannot be written (its id is taken): the revocation does not happen either.
    with pytest.raises(DuplicateKeyError):
        store.revoke_grant(grant.id, b.at(5), b.event(id=revoked.id))
    stored = store.get_grant(grant.id)
    assert stored is not None and stored.revoked_at is None
    family_event = b.event(action="token.revoked", target_type="grant", target_id=grant.id)
    assert store.revoke_grant(grant.id, b.at(6), family_event) is True
    assert store.revoke_grant(grant.id, b.at(7), b.event(action="token.revoked")) is False
    events, total = store.list_audit(AuditQuery(action="token.revoked"))
    assert total == 2
    assert {e.id for e in events} == {revoked.id, family_event.id}


def test_delete_secret_revokes_what_it_issued(store: Store, family: dict[str, Any]) -> None:
    a, u, s1 = family["app"], family["user"], family["secret"]
    s2 = b.secret(a.id)
    store.create_secret(s2)
    # A second family whose tokens came from the other secret.
    c2 = b.code(a.id, u.id)
    store.create_code(c2)
    g2 = b.grant(a.id, u.id)
    a2, r2 = b.access(g2, a.id, secret_id=s2.id), b.refresh(g2, secret_id=s2.id)
    assert store.redeem_code(c2.id, b.at(1), g2, a2, r2)
    # In the first family, a later pair minted with the other secret: the family still goes.
    a1b, r1b = b.access(family["grant"], a.id, secret_id=s2.id), b.refresh(family["grant"])
    assert store.issue_in_family(family["grant"].id, a1b, r1b)
    cc1 = b.access(None, a.id, secret_id=s1.id)  # client_credentials token of s1
    cc2 = b.access(None, a.id, secret_id=s2.id)
    store.create_access_token(cc1)
    store.create_access_token(cc2)

    assert store.delete_secret(s1.id, b.at(50)) is True

    assert store.get_secret_by_prefix(s1.prefix) is None
    g1 = store.get_grant(family["grant"].id)
    assert g1 is not None and g1.revoked_at == b.at(50)
    for token in (family["access"], a1b, cc1):
        stored = store.get_access_token_by_prefix(token.prefix)
        assert stored is not None and stored.revoked_at == b.at(50)
        assert stored.secret_id in (None, s2.id)
    stored_rt = store.get_refresh_token_by_prefix(family["refresh"].prefix)
    assert (
        stored_rt is not None and stored_rt.revoked_at == b.at(50) and stored_rt.secret_id is None
    )

    assert_round_trip(store.get_grant(g2.id), g2)
    assert_round_trip(store.get_access_token_by_prefix(a2.prefix), a2)
    assert_round_trip(store.get_refresh_token_by_prefix(r2.prefix), r2)
    assert_round_trip(store.get_access_token_by_prefix(cc2.prefix), cc2)
    assert [s.id for s in store.list_secrets(a.id)] == [s2.id]


def test_delete_app_cascades(store: Store, family: dict[str, Any]) -> None:
    a, u = family["app"], family["user"]
    other = b.app()
    store.create_app(other)
    other_code = b.code(other.id, u.id)
    store.create_code(other_code)
    og = b.grant(other.id, u.id)
    oa, orf = b.access(og, other.id), b.refresh(og)
    assert store.redeem_code(other_code.id, b.at(1), og, oa, orf)
    pending = b.code(a.id, u.id)
    store.create_code(pending)

    assert store.delete_app(a.id) is True
    assert store.delete_app(a.id) is False

    assert store.get_app(a.id) is None
    assert store.get_code_by_prefix(family["code"].prefix) is None
    assert store.get_code_by_prefix(pending.prefix) is None
    assert store.get_secret_by_prefix(family["secret"].prefix) is None
    assert list(store.list_secrets(a.id)) == []
    assert store.get_grant(family["grant"].id) is None
    assert store.get_access_token_by_prefix(family["access"].prefix) is None
    assert store.get_refresh_token_by_prefix(family["refresh"].prefix) is None
    # The other app and the user are untouched.
    assert_round_trip(store.get_app(other.id), other)
    assert_round_trip(store.get_grant(og.id), og)
    assert_round_trip(store.get_access_token_by_prefix(oa.prefix), oa)
    assert_round_trip(store.get_refresh_token_by_prefix(orf.prefix), orf)
    assert store.get_code_by_prefix(other_code.prefix) is not None
    assert store.get_user(u.id) is not None


def test_revoke_user_app(store: Store, family: dict[str, Any]) -> None:
    a, u = family["app"], family["user"]
    # A second grant for the same user and app, and a code not yet redeemed.
    c2 = b.code(a.id, u.id)
    store.create_code(c2)
    g2 = b.grant(a.id, u.id)
    a2 = b.access(g2, a.id)
    assert store.redeem_code(c2.id, b.at(1), g2, a2, b.refresh(g2))
    pending = b.code(a.id, u.id)
    store.create_code(pending)
    # Someone else's grant for the same app, and the user's grant for another app.
    other_user = b.user()
    store.create_user(other_user)
    c3 = b.code(a.id, other_user.id)
    store.create_code(c3)
    g3 = b.grant(a.id, other_user.id)
    assert store.redeem_code(c3.id, b.at(1), g3, b.access(g3, a.id), None)
    other_app = b.app()
    store.create_app(other_app)
    c4 = b.code(other_app.id, u.id)
    store.create_code(c4)
    g4 = b.grant(other_app.id, u.id)
    assert store.redeem_code(c4.id, b.at(1), g4, b.access(g4, other_app.id), None)

    assert store.revoke_user_app(u.id, a.id, b.at(60)) == 2

    for gid in (family["grant"].id, g2.id):
        stored = store.get_grant(gid)
        assert stored is not None and stored.revoked_at == b.at(60)
    for token in (family["access"], a2):
        at_ = store.get_access_token_by_prefix(token.prefix)
        assert at_ is not None and at_.revoked_at == b.at(60)
    rt = store.get_refresh_token_by_prefix(family["refresh"].prefix)
    assert rt is not None and rt.revoked_at == b.at(60)
    for c in (family["code"], c2, pending):
        assert store.get_code_by_prefix(c.prefix) is None
    assert_round_trip(store.get_grant(g3.id), g3)
    assert_round_trip(store.get_grant(g4.id), g4)
    assert store.get_code_by_prefix(c3.prefix) is not None
    assert store.get_code_by_prefix(c4.prefix) is not None
    assert store.revoke_user_app(u.id, a.id, b.at(61)) == 0


def _authorize(store: Store, app_id: str, user_id: str, **tokens: Any) -> Any:
    """A grant of user for app with one access and (optionally) one refresh token."""
    c = b.code(app_id, user_id)
    store.create_code(c)
    g = b.grant(app_id, user_id)
    refresh = b.refresh(g, **tokens["refresh"]) if "refresh" in tokens else None
    assert store.redeem_code(c.id, b.at(0), g, b.access(g, app_id, **tokens["access"]), refresh)
    return g


def test_list_apps_authorized_by(store: Store) -> None:
    u, other_user = b.user(), b.user()
    store.create_user(u)
    store.create_user(other_user)
    apps = {n: b.app(name=n, created_at=b.at(i)) for i, n in enumerate("ABCDEFG")}
    for a in apps.values():
        store.create_app(a)
    now = b.at(120)
    expired, live = {"expires_at": b.at(60)}, {"expires_at": b.at(600)}
    _authorize(store, apps["A"].id, u.id, access=expired, refresh=live)  # live refresh
    _authorize(store, apps["B"].id, u.id, access=live)  # live access only
    _authorize(store, apps["C"].id, u.id, access=expired, refresh=expired)  # all expired
    g = _authorize(store, apps["D"].id, u.id, access=live, refresh=live)
    store.revoke_grant(g.id, b.at(100))  # revoked family
    _authorize(store, apps["E"].id, other_user.id, access=live, refresh=live)  # someone else
    _authorize(store, apps["F"].id, u.id, access=expired, refresh={**live, "consumed_at": b.at(1)})
    _authorize(store, apps["G"].id, u.id, access={**live, "revoked_at": b.at(1)})

    found = store.list_apps_authorized_by(u.id, now)
    assert [a.name for a in found] == ["A", "B"]
    assert_round_trip(found[0], apps["A"])
    assert [a.name for a in store.list_apps_authorized_by(other_user.id, now)] == ["E"]
    assert list(store.list_apps_authorized_by(u.id, b.at(10_000))) == []


def test_list_live_grants(store: Store) -> None:
    u, other_user = b.user(), b.user()
    store.create_user(u)
    store.create_user(other_user)
    apps = {n: b.app(name=n) for n in "ABCDE"}
    for a in apps.values():
        store.create_app(a)
    now = b.at(120)
    expired, live = {"expires_at": b.at(60)}, {"expires_at": b.at(600)}
    first = _authorize(store, apps["A"].id, u.id, access=expired, refresh=live)
    newer = b.grant(apps["B"].id, u.id, created_at=b.at(5))
    code = b.code(apps["B"].id, u.id, redirect_uri="cursor://cb")
    store.create_code(code)
    assert store.redeem_code(code.id, b.at(5), newer, b.access(newer, apps["B"].id, **live), None)
    # A later access token of the same family: "last used" is the newest one.
    later = b.access(newer, apps["B"].id, created_at=b.at(90), expires_at=b.at(600))
    store.create_access_token(later)
    _authorize(store, apps["C"].id, u.id, access=expired, refresh=expired)  # nothing live
    revoked = _authorize(store, apps["D"].id, u.id, access=live, refresh=live)
    store.revoke_grant(revoked.id, b.at(100))
    _authorize(store, apps["E"].id, other_user.id, access=live)  # someone else's

    found = store.list_live_grants(u.id, now)
    assert [f.grant.id for f in found] == [newer.id, first.id]  # newest first
    assert_round_trip(found[0].grant, newer)
    assert found[0].redirect_uri == "cursor://cb"
    assert found[0].last_used_at == b.at(90)
    assert found[1].last_used_at is not None
    assert [f.grant.app_id for f in store.list_live_grants(other_user.id, now)] == [apps["E"].id]
    assert list(store.list_live_grants(u.id, b.at(10_000))) == []
    # Narrowed to one app, one resource, and the newest few.
    of_b = store.list_live_grants(u.id, now, app_id=apps["B"].id)
    assert [f.grant.id for f in of_b] == [newer.id]
    assert list(store.list_live_grants(u.id, now, app_id=apps["C"].id)) == []
    same = store.list_live_grants(u.id, now, resource=newer.resource)
    assert [f.grant.id for f in same] == [newer.id, first.id]
    assert list(store.list_live_grants(u.id, now, resource="https://elsewhere.test")) == []
    assert [f.grant.id for f in store.list_live_grants(u.id, now, limit=1)] == [newer.id]


# -- resources -----------------------------------------------------------------------------


def test_resource_round_trip_keeps_tuples(store: Store) -> None:
    r = b.resource()
    bare = b.resource(
        scopes=(),
        token_format="opaque",
        access_token_ttl=None,
        introspectors=(),
        created_at=b.at(1),
    )
    store.create_resource(r)
    store.create_resource(bare)
    assert_round_trip(store.get_resource(r.id), r)
    assert_round_trip(store.get_resource(bare.id), bare)
    assert_round_trip(store.get_resource_by_identifier(r.identifier), r)
    stored = store.get_resource(r.id)
    assert stored is not None
    assert all(type(scope) is ScopeInfo for scope in stored.scopes)
    assert store.get_resource("missing") is None
    assert store.get_resource_by_identifier("https://missing.example.test/") is None


def test_list_resources_oldest_first(store: Store) -> None:
    assert list(store.list_resources()) == []
    later, earlier = b.resource(created_at=b.at(5)), b.resource(created_at=b.at(1))
    store.create_resource(later)
    store.create_resource(earlier)
    found = store.list_resources()
    assert [r.id for r in found] == [earlier.id, later.id]
    assert_round_trip(found[1], later)


def test_duplicate_resource_identifier_or_id_is_refused(store: Store) -> None:
    r = b.resource()
    store.create_resource(r)
    with pytest.raises(DuplicateKeyError):
        store.create_resource(b.resource(identifier=r.identifier))
    with pytest.raises(DuplicateKeyError):
        store.create_resource(b.resource(id=r.id))
    other = b.resource()
    store.create_resource(other)
    with pytest.raises(DuplicateKeyError):
        store.update_resource(dataclasses.replace(other, identifier=r.identifier))
    assert_round_trip(store.get_resource(other.id), other)
    assert {x.id for x in store.list_resources()} == {r.id, other.id}


def test_update_resource_replaces_every_field(store: Store) -> None:
    r = b.resource()
    store.create_resource(r)
    changed = dataclasses.replace(
        r,
        identifier="https://renamed.example.test/mcp",
        name="Renamed",
        scopes=(ScopeInfo(name="admin", description="Everything"),),
        token_format="opaque",
        access_token_ttl=None,
        introspectors=("app_rs",),
        updated_at=b.at(30),
    )
    store.update_resource(changed)
    assert_round_trip(store.get_resource(r.id), changed)
    assert store.get_resource_by_identifier(r.identifier) is None
    assert_round_trip(store.get_resource_by_identifier(changed.identifier), changed)
    store.update_resource(b.resource())  # unknown id: nothing happens
    assert [x.id for x in store.list_resources()] == [r.id]


def test_delete_resource(store: Store) -> None:
    r, other = b.resource(), b.resource()
    store.create_resource(r)
    store.create_resource(other)
    assert store.delete_resource(r.id) is True
    assert store.delete_resource(r.id) is False
    assert store.get_resource(r.id) is None
    assert store.get_resource_by_identifier(r.identifier) is None
    assert_round_trip(store.get_resource(other.id), other)
    store.create_resource(b.resource(identifier=r.identifier))  # the identifier is free again


def test_deleting_an_app_leaves_introspectors_alone(store: Store) -> None:
    a = b.app()
    store.create_app(a)
    r = b.resource(introspectors=(a.id, "app_other"))
    store.create_resource(r)
    assert store.delete_app(a.id) is True
    assert_round_trip(store.get_resource(r.id), r)


# -- signing keys --------------------------------------------------------------------------


def test_signing_key_round_trip(store: Store) -> None:
    next_key = b.signing_key(created_at=b.at(2))
    rsa = b.signing_key(
        alg="RS256",
        public_jwk={"kty": "RSA", "n": "sXch" * 64, "e": "AQAB", "nested": {"a": [1, None]}},
        created_at=b.at(0),
        activated_at=b.at(1).astimezone(b.PLUS_TWO),
        retired_at=b.at(3),
        expires_at=b.at(63),
    )
    store.create_signing_key(next_key)
    store.create_signing_key(rsa)
    keys = store.list_signing_keys()
    assert [k.kid for k in keys] == [rsa.kid, next_key.kid]
    assert_round_trip(keys[0], rsa)
    assert_round_trip(keys[1], next_key)
    assert type(keys[1].public_jwk) is dict
    with pytest.raises(DuplicateKeyError):
        store.create_signing_key(b.signing_key(kid=next_key.kid))
    assert len(store.list_signing_keys()) == 2


def test_signing_keys_start_empty(store: Store) -> None:
    assert list(store.list_signing_keys()) == []
    assert store.delete_expired_signing_keys(b.at(0)) == 0
    assert store.activate_signing_key("missing", b.at(0), b.at(1)) is False


def _keys(store: Store) -> dict[str, Any]:
    return {k.kid: k for k in store.list_signing_keys()}


def test_activate_signing_key_rotates(store: Store) -> None:
    first = b.signing_key(created_at=b.at(0))
    store.create_signing_key(first)
    # The very first activation: there is nothing to retire.
    assert store.activate_signing_key(first.kid, b.at(1), b.at(100)) is True
    assert_round_trip(_keys(store)[first.kid], dataclasses.replace(first, activated_at=b.at(1)))

    second = b.signing_key(created_at=b.at(2))
    store.create_signing_key(second)
    now, until = b.at(10).astimezone(b.PLUS_TWO), b.at(70).astimezone(b.PLUS_TWO)
    assert store.activate_signing_key(second.kid, now, until) is True
    keys = _keys(store)
    assert_round_trip(keys[second.kid], dataclasses.replace(second, activated_at=b.at(10)))
    assert_round_trip(
        keys[first.kid],
        dataclasses.replace(first, activated_at=b.at(1), retired_at=b.at(10), expires_at=b.at(70)),
    )


def test_activate_retires_every_active_key_but_no_retiring_or_next_one(store: Store) -> None:
    active_a = b.signing_key(created_at=b.at(0), activated_at=b.at(0))
    active_b = b.signing_key(created_at=b.at(1), activated_at=b.at(1))
    retiring = b.signing_key(
        created_at=b.at(-10), activated_at=b.at(-9), retired_at=b.at(-1), expires_at=b.at(50)
    )
    target, other_next = b.signing_key(created_at=b.at(2)), b.signing_key(created_at=b.at(3))
    for key in (active_a, active_b, retiring, target, other_next):
        store.create_signing_key(key)

    assert store.activate_signing_key(target.kid, b.at(5), b.at(65)) is True

    keys = _keys(store)
    for key in (active_a, active_b):
        assert_round_trip(
            keys[key.kid], dataclasses.replace(key, retired_at=b.at(5), expires_at=b.at(65))
        )
    assert_round_trip(keys[retiring.kid], retiring)
    assert_round_trip(keys[other_next.kid], other_next)
    assert_round_trip(keys[target.kid], dataclasses.replace(target, activated_at=b.at(5)))


def test_activating_a_key_that_is_not_next_changes_nothing(store: Store) -> None:
    active = b.signing_key(created_at=b.at(0), activated_at=b.at(0))
    retiring = b.signing_key(
        created_at=b.at(-10), activated_at=b.at(-9), retired_at=b.at(-1), expires_at=b.at(50)
    )
    retired_unused = b.signing_key(created_at=b.at(-5), retired_at=b.at(-1), expires_at=b.at(9))
    waiting = b.signing_key(created_at=b.at(1))
    for key in (active, retiring, retired_unused, waiting):
        store.create_signing_key(key)
    before = _keys(store)

    for kid in (active.kid, retiring.kid, retired_unused.kid, "missing"):
        assert store.activate_signing_key(kid, b.at(5), b.at(65)) is False, kid

    after = _keys(store)
    assert after.keys() == before.keys()
    for kid, key in before.items():
        assert_round_trip(after[kid], key)


def test_concurrent_activation_of_one_key_wins_once(store: Store) -> None:
    active = b.signing_key(created_at=b.at(0), activated_at=b.at(0))
    target = b.signing_key(created_at=b.at(1))
    store.create_signing_key(active)
    store.create_signing_key(target)

    results = run_together(
        8, lambda i: store.activate_signing_key(target.kid, b.at(10 + i), b.at(100 + i))
    )

    assert results.count(True) == 1
    winner = results.index(True)
    keys = _keys(store)
    assert keys[target.kid].activated_at == b.at(10 + winner)
    assert keys[target.kid].retired_at is None
    assert keys[active.kid].retired_at == b.at(10 + winner)
    assert keys[active.kid].expires_at == b.at(100 + winner)


def test_concurrent_activation_of_different_keys_leaves_one_active(store: Store) -> None:
    """Rotations to different next keys run one after another: never two signing keys."""
    store.create_signing_key(b.signing_key(created_at=b.at(0), activated_at=b.at(0)))
    targets = [b.signing_key(created_at=b.at(1 + i)) for i in range(8)]
    for key in targets:
        store.create_signing_key(key)

    results = run_together(
        8, lambda i: store.activate_signing_key(targets[i].kid, b.at(10), b.at(100))
    )

    assert results == [True] * 8  # each was still next when its turn came
    keys = store.list_signing_keys()
    active = [k for k in keys if k.activated_at is not None and k.retired_at is None]
    assert len(active) == 1
    assert all(
        k.retired_at == b.at(10) and k.expires_at == b.at(100) for k in keys if k != active[0]
    )


def test_delete_next_signing_key_deletes_only_a_next_key(store: Store) -> None:
    active = b.signing_key(activated_at=b.at(2))
    retiring = b.signing_key(activated_at=b.at(0), retired_at=b.at(1), expires_at=b.at(21))
    waiting = b.signing_key()
    for key in (active, retiring, waiting):
        store.create_signing_key(key)
    assert store.delete_next_signing_key(active.kid) is False
    assert store.delete_next_signing_key(retiring.kid) is False
    assert store.delete_next_signing_key("no-such-kid") is False
    assert store.delete_next_signing_key(waiting.kid) is True
    assert store.delete_next_signing_key(waiting.kid) is False
    assert set(_keys(store)) == {active.kid, retiring.kid}


def test_delete_expired_signing_keys(store: Store) -> None:
    gone = b.signing_key(activated_at=b.at(0), retired_at=b.at(1), expires_at=b.at(10))
    boundary = b.signing_key(
        activated_at=b.at(0), retired_at=b.at(1), expires_at=b.at(20).astimezone(b.PLUS_TWO)
    )
    retiring = b.signing_key(activated_at=b.at(0), retired_at=b.at(1), expires_at=b.at(21))
    active = b.signing_key(activated_at=b.at(2))
    waiting = b.signing_key()
    for key in (gone, boundary, retiring, active, waiting):
        store.create_signing_key(key)

    assert store.delete_expired_signing_keys(b.at(20)) == 2

    assert set(_keys(store)) == {retiring.kid, active.kid, waiting.kid}
    assert_round_trip(_keys(store)[retiring.kid], retiring)
    assert store.delete_expired_signing_keys(b.at(20)) == 0
    assert store.delete_expired_signing_keys(b.at(10_000)) == 1
    assert set(_keys(store)) == {active.kid, waiting.kid}


# -- client assertion jtis (RFC 7523 §3) and rate limits -----------------------------------


def _stored_jtis(store: Store) -> set[tuple[str, str]]:
    """The (client_id, jti) pairs the store still holds (to see what a purge removed)."""
    if isinstance(store, InMemoryStore):
        return set(store.assertion_jtis)
    assert isinstance(store, SqlStore)
    with store.engine.connect() as conn:
        rows = conn.execute(select(client_assertion_jtis.c.client_id, client_assertion_jtis.c.jti))
        return {(row.client_id, row.jti) for row in rows}


def test_consume_assertion_jti_once_per_client(store: Store) -> None:
    assert store.consume_assertion_jti("c1", "j1", b.at(5), b.at(0)) is True
    assert store.consume_assertion_jti("c1", "j1", b.at(5), b.at(1)) is False
    assert store.consume_assertion_jti("c1", "j1", b.at(9), b.at(4.9)) is False
    assert store.consume_assertion_jti("c2", "j1", b.at(5), b.at(1)) is True  # another client
    assert store.consume_assertion_jti("c1", "j2", b.at(5), b.at(1)) is True  # another jti
    assert store.consume_assertion_jti("c2", "j1", b.at(5), b.at(1)) is False


def test_an_expired_jti_is_forgotten(store: Store) -> None:
    expires = b.at(5).astimezone(b.PLUS_TWO)
    assert store.consume_assertion_jti("c1", "j1", expires, b.at(0)) is True
    assert (
        store.consume_assertion_jti("c1", "j1", b.at(20), b.at(5) - timedelta(microseconds=1))
        is False
    )
    # At its expiry the entry is gone (the assertion itself is refused by then).
    assert store.consume_assertion_jti("c1", "j1", b.at(20), b.at(5)) is True
    assert store.consume_assertion_jti("c1", "j1", b.at(20), b.at(19)) is False


def test_consuming_a_jti_purges_the_expired_ones(store: Store) -> None:
    store.consume_assertion_jti("c1", "old", b.at(1), b.at(0))
    store.consume_assertion_jti("c2", "boundary", b.at(2), b.at(0))
    store.consume_assertion_jti("c3", "live", b.at(3).astimezone(b.PLUS_TWO), b.at(0))
    assert _stored_jtis(store) == {("c1", "old"), ("c2", "boundary"), ("c3", "live")}
    assert store.consume_assertion_jti("c4", "new", b.at(10), b.at(2)) is True
    assert _stored_jtis(store) == {("c3", "live"), ("c4", "new")}


def test_naive_datetimes_are_refused_by_the_jti_and_rate_limit_stores(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.consume_assertion_jti("c1", "j1", datetime(2026, 1, 1), b.at(0))
    with pytest.raises(ValueError, match="naive"):
        store.consume_assertion_jti("c1", "j1", b.at(1), datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        store.hit_rate_limit("k", datetime(2026, 1, 1), b.at(0))
    assert store.consume_assertion_jti("c1", "j1", b.at(1), b.at(0)) is True
    assert store.hit_rate_limit("k", b.at(0), b.at(0)) == 1


@pytest.mark.parametrize("expired_before", [False, True], ids=["new", "expired-entry"])
def test_concurrent_consumption_of_one_jti_wins_once(store: Store, expired_before: bool) -> None:
    if expired_before:  # the same jti, recorded before and expired: purged and re-recorded
        assert store.consume_assertion_jti("c1", "jti", b.at(1), b.at(0)) is True
    results = run_together(8, lambda i: store.consume_assertion_jti("c1", "jti", b.at(30), b.at(2)))
    assert results.count(True) == 1 and results.count(False) == 7
    assert store.consume_assertion_jti("c1", "jti", b.at(30), b.at(3)) is False


def test_hit_rate_limit_counts_per_key_and_window(store: Store) -> None:
    window, next_window = b.at(0), b.at(1)
    assert [store.hit_rate_limit("ip:192.0.2.1", window, b.at(0.1)) for _ in range(3)] == [1, 2, 3]
    # The same instant written in another zone is the same window.
    assert store.hit_rate_limit("ip:192.0.2.1", window.astimezone(b.PLUS_TWO), b.at(0.2)) == 4
    assert store.hit_rate_limit("ip:192.0.2.2", window, b.at(0.3)) == 1
    assert store.hit_rate_limit("ip:192.0.2.1", next_window, b.at(1.1)) == 1
    assert store.hit_rate_limit("ip:192.0.2.1", window, b.at(1.2)) == 5  # a late hit still counts


def test_a_new_window_purges_the_counters_of_old_windows(store: Store) -> None:
    day = 24 * 60
    now = b.at(2 * day)
    store.hit_rate_limit("a", b.at(0), b.at(0))
    store.hit_rate_limit("a", b.at(0), b.at(0))
    store.hit_rate_limit("b", b.at(day + 1), b.at(day + 1))  # less than a day before `now`
    store.hit_rate_limit("b", b.at(day + 1), b.at(day + 1))

    assert store.hit_rate_limit("c", now, now) == 1  # the first hit of a window purges

    assert store.hit_rate_limit("b", b.at(day + 1), now) == 3
    assert store.hit_rate_limit("a", b.at(0), now) == 1  # its counter was gone


def test_concurrent_hits_are_all_counted(store: Store) -> None:
    window = b.at(0)

    def hit_ten_times(i: int) -> list[int]:
        return [store.hit_rate_limit("token:c1", window, b.at(0.5)) for _ in range(10)]

    results = run_together(8, hit_ten_times)

    counts = sorted(count for thread in results for count in thread)
    assert counts == list(range(1, 81))
    assert all(thread == sorted(thread) for thread in results)
    assert store.hit_rate_limit("token:c1", window, b.at(0.6)) == 81


# -- audit log and settings ----------------------------------------------------------------


def test_audit_round_trip(store: Store) -> None:
    e = b.event()
    bare = b.event(
        actor_type="anonymous",
        actor_id=None,
        target_type=None,
        target_id=None,
        ip=None,
        user_agent=None,
        request_id=None,
        details={},
        at=b.at(1).astimezone(b.PLUS_TWO),
    )
    store.append_audit(e)
    store.append_audit(bare)
    events, total = store.list_audit(AuditQuery())
    assert total == 2
    assert_round_trip(events[0], bare)
    assert_round_trip(events[1], e)
    with pytest.raises(DuplicateKeyError):
        store.append_audit(b.event(id=e.id))


def test_audit_filters_order_and_paging(store: Store) -> None:
    events = [
        b.event(
            at=b.at(i),
            action="app.created" if i % 2 else "user.login",
            actor_id=f"u{i % 3}",
            target_id=f"t{i % 4}",
        )
        for i in range(10)
    ]
    for e in reversed(events):  # insertion order must not matter
        store.append_audit(e)

    page, total = store.list_audit(AuditQuery(limit=3))
    assert total == 10
    assert [e.id for e in page] == [events[9].id, events[8].id, events[7].id]
    page, total = store.list_audit(AuditQuery(limit=4, offset=8))
    assert total == 10 and [e.id for e in page] == [events[1].id, events[0].id]

    page, total = store.list_audit(AuditQuery(action="app.created"))
    assert total == 5 and [e.id for e in page] == [events[i].id for i in (9, 7, 5, 3, 1)]
    page, total = store.list_audit(AuditQuery(actor_id="u1", target_id="t1"))
    assert [e.id for e in page] == [events[1].id] and total == 1
    page, total = store.list_audit(AuditQuery(since=b.at(3), until=b.at(6)))
    assert total == 3 and [e.id for e in page] == [events[5].id, events[4].id, events[3].id]
    page, total = store.list_audit(AuditQuery(action="user.login", since=b.at(3), limit=1))
    assert total == 3 and [e.id for e in page] == [events[8].id]
    assert store.list_audit(AuditQuery(action="nothing")) == ([], 0)


def test_settings_get_set_overwrite(store: Store) -> None:
    assert store.get_setting("registration") is None
    store.set_setting("registration", {"enabled": True, "allowed": ["https://a.test"]})
    store.set_setting("ttl", 300)
    assert store.get_setting("registration") == {"enabled": True, "allowed": ["https://a.test"]}
    store.set_setting("registration", {"enabled": False})
    assert store.get_setting("registration") == {"enabled": False}
    assert store.get_setting("ttl") == 300
    store.set_setting("ttl", "five minutes")
    assert store.get_setting("ttl") == "five minutes"


def _pending_and_redeemed(store: Store, app_id: str, user_id: str, scope: str) -> tuple[Any, Any]:
    """An unredeemed code and a live grant (with a refresh token) of ``scope``."""
    pending = b.code(app_id, user_id, scope=scope)
    store.create_code(pending)
    c = b.code(app_id, user_id, scope=scope)
    store.create_code(c)
    g = b.grant(app_id, user_id, scope=scope)
    assert store.redeem_code(c.id, b.at(1), g, b.access(g, app_id, scope=scope), b.refresh(g))
    return pending, g


def test_revoke_user_grants_ends_every_grant_and_code_of_the_user(
    store: Store, family: dict[str, Any]
) -> None:
    a, u = family["app"], family["user"]
    pending, g2 = _pending_and_redeemed(store, a.id, u.id, "read")
    other_app = b.app()
    store.create_app(other_app)
    pending2, g3 = _pending_and_redeemed(store, other_app.id, u.id, "admin")
    someone = b.user()
    store.create_user(someone)
    theirs_code, theirs = _pending_and_redeemed(store, a.id, someone.id, "read")

    assert store.revoke_user_grants(u.id, b.at(60)) == (3, 2)

    for gid in (family["grant"].id, g2.id, g3.id):
        stored = store.get_grant(gid)
        assert stored is not None and stored.revoked_at == b.at(60)
    for token in (family["access"], family["refresh"]):
        got = (
            store.get_access_token_by_prefix(token.prefix)
            if token is family["access"]
            else store.get_refresh_token_by_prefix(token.prefix)
        )
        assert got is not None and got.revoked_at == b.at(60)
    for c in (pending, pending2):
        assert store.get_code_by_prefix(c.prefix) is None
    # A redeemed code stays (it names its grant; a replay is still recognised).
    assert store.get_code_by_prefix(family["code"].prefix) is not None
    assert_round_trip(store.get_grant(theirs.id), theirs)
    assert store.get_code_by_prefix(theirs_code.prefix) is not None
    assert store.revoke_user_grants(u.id, b.at(61)) == (0, 0)


def test_revoke_user_grants_of_one_scope(store: Store, family: dict[str, Any]) -> None:
    a, u = family["app"], family["user"]
    pending_admin, admin_grant = _pending_and_redeemed(store, a.id, u.id, "read admin")
    pending_lookalike, lookalike = _pending_and_redeemed(store, a.id, u.id, "administer admin_")
    pending_read, read = _pending_and_redeemed(store, a.id, u.id, "read")

    assert store.revoke_user_grants(u.id, b.at(60), scope="admin") == (1, 1)

    revoked = store.get_grant(admin_grant.id)
    assert revoked is not None and revoked.revoked_at == b.at(60)
    assert store.get_code_by_prefix(pending_admin.prefix) is None
    for kept in (lookalike, read, family["grant"]):
        stored = store.get_grant(kept.id)
        assert stored is not None and stored.revoked_at is None
    for code in (pending_lookalike, pending_read):
        assert store.get_code_by_prefix(code.prefix) is not None
    # LIKE wildcards in the scope are matched literally.
    assert store.revoke_user_grants(u.id, b.at(61), scope="adm%") == (0, 0)
    assert store.revoke_user_grants(u.id, b.at(61), scope="admi_") == (0, 0)


def test_delete_user_takes_everything_of_theirs(store: Store, family: dict[str, Any]) -> None:
    a, u = family["app"], family["user"]
    pending, g2 = _pending_and_redeemed(store, a.id, u.id, "read")
    store.create_session(b.session(u.id))
    someone = b.user()
    store.create_user(someone)
    _, theirs = _pending_and_redeemed(store, a.id, someone.id, "read")

    assert store.delete_user(u.id, b.at(60)) is True

    assert store.get_user(u.id) is None
    for gid in (family["grant"].id, g2.id):
        assert store.get_grant(gid) is None
    assert store.get_access_token_by_prefix(family["access"].prefix) is None
    assert store.get_refresh_token_by_prefix(family["refresh"].prefix) is None
    assert store.get_code_by_prefix(pending.prefix) is None
    assert store.get_code_by_prefix(family["code"].prefix) is None
    assert_round_trip(store.get_grant(theirs.id), theirs)
    assert store.get_user(someone.id) is not None
    assert store.delete_user(u.id, b.at(61)) is False
