"""The hot store methods on the DBAPI connection (``prepared.py``, ``SqlBase._raw_transaction``).

They must be indistinguishable from the SQLAlchemy path: what one writes the other reads back
the same (the same stored text, aware UTC datetimes with their microseconds, NULLs), and they
refuse, roll back and fail exactly as ``_transaction()`` does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import Table, bindparam, event, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.engine import Dialect

from authgate.core.models import AccessToken, AuditQuery, Grant
from authgate.core.ports import DuplicateKeyError, StoreUnavailableError
from authgate.storage import SqlStore
from authgate.storage.sql import base as base_module
from authgate.storage.sql import engine as engine_module
from authgate.storage.sql.base import Intent, split_joined, values_of
from authgate.storage.sql.prepared import Prepared
from authgate.storage.sql.store_apps import _APP_BY_ID
from authgate.storage.sql.tables import (
    access_tokens,
    app_secrets,
    apps,
    authorization_codes,
    grants,
    refresh_tokens,
    users,
)
from tests.storage import store_builders as b
from tests.storage.conftest import SQL_BACKENDS
from tests.storage.test_store_contract import assert_round_trip, run_together

sql_backends = pytest.mark.parametrize("store", SQL_BACKENDS, indirect=True)

_GRANTS_OF_APP = select(grants).where(grants.c.app_id == bindparam("app_id")).order_by(grants.c.id)


@contextlib.contextmanager
def fast_path_only(store: SqlStore) -> Iterator[None]:
    """Fail the test if anything inside runs through SQLAlchemy's ``_transaction()``."""

    def refused(**_: Any) -> Any:
        raise AssertionError("went through _transaction()")

    with mock.patch.object(store, "_transaction", refused):
        yield


def read_back(store: SqlStore, table: Table, row_id: str) -> dict[str, Any]:
    """The row as SQLAlchemy reads it."""
    with store.engine.connect() as conn:
        return dict(conn.execute(select(table).where(table.c.id == row_id)).one()._mapping)


def stored_text(store: SqlStore, table: Table, row_id: str) -> tuple[Any, ...]:
    """Every column as the database holds it, cast to text."""
    columns = ", ".join(f"CAST({c.name} AS TEXT)" for c in table.columns if c.name != "id")
    with store.engine.connect() as conn:
        query = text(f"SELECT {columns} FROM {table.name} WHERE id = :id")
        return tuple(conn.execute(query, {"id": row_id}).one())


def parents(store: SqlStore) -> tuple[str, str]:
    u, a = b.user(), b.app()
    store.create_user(u)
    store.create_app(a)
    return u.id, a.id


def read_twice(store: SqlStore, app_id: str) -> None:
    """Two reads in one read transaction (BEGIN, SELECT, SELECT, COMMIT)."""
    with store._raw_transaction(Intent.READ) as db:
        assert db.first(_APP_BY_ID, {"id": app_id}) is not None
        assert db.first(_APP_BY_ID, {"id": app_id}) is not None


def machine_token(app_id: str, **access: Any) -> AccessToken:
    """A client_credentials token: no grant, no user (NULLs in the row)."""
    return b.access(None, app_id, **access)


def redeemable(store: SqlStore, user_id: str, app_id: str) -> tuple[str, Grant]:
    """A stored code and the grant its redemption would create: ``redeem_code`` is the
    write of several statements (the code's UPDATE, then the grant's and the tokens' INSERTs)."""
    code = b.code(app_id, user_id)
    store.create_code(code)
    return code.id, b.grant(app_id, user_id)


@sql_backends
def test_fast_writes_read_back_through_sqlalchemy(store: SqlStore) -> None:
    user_id, app_id = parents(store)
    access = machine_token(app_id, created_at=b.at(0).astimezone(b.PLUS_TWO))
    code = b.code(app_id, user_id)
    store.create_code(code)
    g2 = b.grant(app_id, user_id, auth_time=None)
    a2, r2 = b.access(g2, app_id), b.refresh(g2)
    with fast_path_only(store):
        store.create_access_token(access)
        assert store.redeem_code(code.id, b.at(0.5).astimezone(b.PLUS_TWO), g2, a2, r2) is True
        assert store.revoke_access_token(a2.id, b.at(2)) is True

    for table, model in ((access_tokens, access), (grants, g2), (refresh_tokens, r2)):
        assert_round_trip(type(model)(**read_back(store, table, model.id)), model)
    revoked = read_back(store, access_tokens, a2.id)
    assert revoked["revoked_at"] == b.at(2) and revoked["revoked_at"].tzinfo is not None
    consumed = read_back(store, authorization_codes, code.id)
    assert (consumed["consumed_at"], consumed["grant_id"]) == (b.at(0.5), g2.id)
    machine = read_back(store, access_tokens, access.id)
    assert (machine["grant_id"], machine["user_id"]) == (None, None)
    assert read_back(store, grants, g2.id)["auth_time"] is None


@sql_backends
def test_sqlalchemy_writes_read_back_through_the_fast_path(store: SqlStore) -> None:
    user_id, app_id = parents(store)
    g = b.grant(app_id, user_id, revoked_at=b.at(3).astimezone(b.PLUS_TWO))
    access = b.access(g, app_id, revoked_at=b.at(4))
    refresh = b.refresh(g, consumed_at=b.at(5).astimezone(b.PLUS_TWO))
    code = b.code(app_id, user_id, code_challenge=None, code_challenge_method=None)
    with store.engine.begin() as conn:
        for table, model in (
            (grants, g),
            (access_tokens, access),
            (refresh_tokens, refresh),
            (authorization_codes, code),
        ):
            conn.execute(insert(table), values_of(model))
    user = store.get_user_by_username(read_back(store, users, user_id)["username"])
    [app] = store.list_apps()
    with fast_path_only(store):
        assert_round_trip(store.get_grant(g.id), g)
        assert_round_trip(store.get_access_token_by_prefix(access.prefix), access)
        assert_round_trip(store.get_refresh_token_by_prefix(refresh.prefix), refresh)
        assert_round_trip(store.get_code_by_prefix(code.prefix), code)
        assert_round_trip(store.get_user(user_id), user)
        assert_round_trip(store.get_app(app_id), app)
        assert store.get_grant("missing") is None
        assert store.get_app("missing") is None


@sql_backends
def test_fast_writes_store_what_sqlalchemy_stores(store: SqlStore) -> None:
    """Byte for byte: SQLite keeps datetimes as text, and that text must not change."""
    _, app_id = parents(store)
    values = values_of(b.access(None, app_id, expires_at=b.at(60).astimezone(b.PLUS_TWO)))
    with store.engine.begin() as conn:
        conn.execute(insert(access_tokens), values | {"id": "by-sqlalchemy", "prefix": "p1"})
    with fast_path_only(store):
        store.create_access_token(AccessToken(**values | {"id": "fast", "prefix": "p2"}))
    by_sqlalchemy = stored_text(store, access_tokens, "by-sqlalchemy")
    fast = stored_text(store, access_tokens, "fast")
    assert fast[1:] == by_sqlalchemy[1:] and (fast[0], by_sqlalchemy[0]) == ("p2", "p1")
    if store.engine.dialect.name == "sqlite":
        assert fast[-3:-1] == ("2026-03-04 05:06:07.123456", "2026-03-04 06:06:07.123456")


@sql_backends
def test_a_naive_datetime_is_refused_and_writes_nothing(store: SqlStore) -> None:
    user_id, app_id = parents(store)
    naive = machine_token(app_id, expires_at=b.at(60).replace(tzinfo=None))
    with fast_path_only(store), pytest.raises(ValueError, match="naive"):
        store.create_access_token(naive)
    code_id, g = redeemable(store, user_id, app_id)
    late = b.refresh(g, expires_at=b.at(60).replace(tzinfo=None))
    with fast_path_only(store), pytest.raises(ValueError, match="naive"):
        # The code's UPDATE and the grant's and access token's INSERTs ran before this failed.
        store.redeem_code(code_id, b.at(1), g, b.access(g, app_id), late)
    code2_id, g2 = redeemable(store, user_id, app_id)
    with fast_path_only(store), pytest.raises(ValueError, match="naive"):
        store.redeem_code(
            code2_id, b.at(1), g2, b.access(g2, app_id, created_at=b.T0.replace(tzinfo=None)), None
        )
    with fast_path_only(store):
        assert store.get_access_token_by_prefix(naive.prefix) is None
        assert store.get_grant(g.id) is None and store.get_grant(g2.id) is None
        for unspent in (code_id, code2_id):
            assert read_back(store, authorization_codes, unspent)["consumed_at"] is None


@sql_backends
def test_a_duplicate_key_rolls_the_whole_transaction_back(store: SqlStore) -> None:
    user_id, app_id = parents(store)
    access = machine_token(app_id)
    code_id, g2 = redeemable(store, user_id, app_id)
    taken = b.access(g2, app_id, prefix=access.prefix)
    with fast_path_only(store):
        store.create_access_token(access)
        with pytest.raises(DuplicateKeyError):
            store.redeem_code(code_id, b.at(1), g2, taken, b.refresh(g2))
        assert store.get_grant(g2.id) is None
        assert read_back(store, authorization_codes, code_id)["consumed_at"] is None
        # The connection went back to the pool usable (on PostgreSQL: not in a failed
        # transaction), and the next write on it commits.
        g3 = b.grant(app_id, user_id)
        assert store.redeem_code(code_id, b.at(2), g3, b.access(g3, app_id), None) is True
        assert_round_trip(store.get_grant(g3.id), g3)


@sql_backends
def test_a_missing_parent_is_a_value_error(store: SqlStore) -> None:
    with fast_path_only(store), pytest.raises(ValueError, match="integrity constraint refused"):
        store.create_access_token(b.access(None, "no-such-app"))
    with fast_path_only(store):
        assert store.get_access_token_by_prefix("no-such-app") is None


def break_connections(store: SqlStore, admin_url: str | None) -> None:
    """Kill the store's pooled connections under it."""
    if admin_url is not None:  # PostgreSQL: the server ends them, as in tests/faults
        with store.engine.connect() as conn:
            database = conn.exec_driver_sql("SELECT current_database()").scalar_one()
        killer = engine_module.make_engine(admin_url)
        try:
            with killer.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                        "WHERE datname = :d AND pid <> pg_backend_pid()"
                    ),
                    {"d": database},
                )
        finally:
            killer.dispose()
        return

    def close_it(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        dbapi_connection.close()  # SQLite: the next checkout gets a closed connection

    event.listen(store.engine, "checkout", close_it, once=True)


@sql_backends
@pytest.mark.parametrize("call", ["read", "transaction", "write"])
def test_a_broken_connection_is_unavailable_and_the_next_call_reconnects(
    store: SqlStore, call: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 3600.0)  # no rescue by the ping
    postgres = store.engine.dialect.name == "postgresql"
    admin_url = request.getfixturevalue("postgres_admin_url") if postgres else None
    _, app_id = parents(store)
    access = machine_token(app_id)
    calls: dict[str, Callable[[], Any]] = {
        "read": lambda: store.get_app(app_id),
        "transaction": lambda: read_twice(store, app_id),
        "write": lambda: store.create_access_token(access),
    }
    store.get_app(app_id)  # a pooled connection to break
    break_connections(store, admin_url)
    with fast_path_only(store), pytest.raises(StoreUnavailableError):
        calls[call]()
    with fast_path_only(store):
        assert store.get_access_token_by_prefix(access.prefix) is None
        calls[call]()
        assert store.get_app(app_id) is not None


@pytest.mark.postgres
@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_postgres_connections_go_back_to_the_pool_as_sqlalchemy_leaves_them(
    store: SqlStore,
) -> None:
    """Single reads run in autocommit mode; the pool gets its connections back out of it."""
    _, app_id = parents(store)
    with fast_path_only(store):
        store.get_app(app_id)
        store.get_app_and_secret(app_id, "pfx")
        store.create_access_token(machine_token(app_id, prefix="same"))
        with pytest.raises(DuplicateKeyError):
            store.create_access_token(machine_token(app_id, prefix="same"))
    proxy = store.engine.raw_connection()
    try:
        conn = proxy.dbapi_connection
        assert conn is not None
        assert conn.autocommit is False
        assert conn.info.transaction_status == conn.info.transaction_status.IDLE
    finally:
        proxy.close()


@pytest.mark.postgres
@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_postgres_single_writes_run_in_autocommit_mode_and_multi_statement_ones_do_not(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One INSERT or UPDATE is atomic by itself: no BEGIN and COMMIT round trips for it. A
    redemption or a rotation is one statement too, but in a transaction: its COMMIT is sent only
    after its answer (a node that dies meanwhile leaves nothing behind)."""
    user_id, app_id = parents(store)
    seen: list[tuple[str, bool]] = []
    executor = base_module._executor

    def recording(cursor: Any) -> Callable[[str, Any], Any]:
        execute = executor(cursor)

        def run(sql: str, params: Any) -> Any:
            seen.append((sql.split()[0], cursor.connection.autocommit))
            return execute(sql, params)

        return run

    monkeypatch.setattr(base_module, "_executor", recording)
    token = machine_token(app_id)
    secret = b.secret(app_id)
    store.create_secret(secret)
    redeem_id, grant = redeemable(store, user_id, app_id)
    with fast_path_only(store):
        store.create_access_token(token)
        store.touch_secret(secret.id, b.at(1))
        store.append_audit(b.event())
        with pytest.raises(DuplicateKeyError):
            store.create_access_token(machine_token(app_id, prefix=token.prefix))
        # A revocation and its event: one statement (a data-modifying WITH).
        event = b.event(action="token.revoked")
        assert store.revoke_access_token(token.id, b.at(2), event)
        assert not store.revoke_access_token(token.id, b.at(3), b.event(action="token.revoked"))
        # Without an event it is the UPDATE alone.
        assert not store.revoke_access_token(token.id, b.at(4))
        # A code's redemption: one statement (claim, grant, tokens), in a transaction.
        first_access, first = b.access(grant, app_id), b.refresh(grant)
        assert store.redeem_code(redeem_id, b.at(5), grant, first_access, first)
        assert not store.redeem_code(redeem_id, b.at(5), grant, b.access(grant, app_id), None)
        # A rotation: one statement (the grant's lock, the claim, the tokens), in a transaction.
        rotated = b.access(grant, app_id), b.refresh(grant)
        assert store.rotate_refresh_token(first.id, b.at(6), *rotated)
        assert not store.rotate_refresh_token(first.id, b.at(6), *rotated)
    assert seen == [
        ("INSERT", True),
        ("UPDATE", True),
        ("INSERT", True),
        ("INSERT", True),
        ("WITH", True),
        ("WITH", True),
        ("UPDATE", False),
        ("WITH", False),
        ("WITH", False),
        ("WITH", False),
        ("WITH", False),
    ]
    # Every column of every row the statements wrote, bound by their prefixed parameters.
    assert_round_trip(store.get_grant(grant.id), grant)
    assert_round_trip(store.get_access_token_by_prefix(first_access.prefix), first_access)
    consumed = store.get_refresh_token_by_prefix(first.prefix)
    assert_round_trip(consumed, replace(first, consumed_at=b.at(6)))
    with store.engine.connect() as conn:
        query = select(authorization_codes).where(authorization_codes.c.id == redeem_id)
        code = conn.execute(query).one()
    assert (code.consumed_at, code.grant_id) == (b.at(5), grant.id)
    for stored_token in (
        store.get_access_token_by_prefix(rotated[0].prefix),
        store.get_refresh_token_by_prefix(rotated[1].prefix),
    ):
        assert stored_token is not None and stored_token.grant_id == grant.id
    stored = store.get_access_token_by_prefix(token.prefix)
    assert stored is not None and stored.revoked_at == b.at(2)
    assert store.list_secrets(app_id)[0].last_used_at == b.at(1)
    revoked_events, total = store.list_audit(AuditQuery(action="token.revoked"))
    assert total == 1
    assert_round_trip(revoked_events[0], event)  # every column, bound by the WITH statement


@pytest.mark.postgres
@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_an_idle_connection_the_server_dropped_is_replaced_on_the_fast_path_too(
    store: SqlStore, postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, app_id = parents(store)
    store.get_app(app_id)
    break_connections(store, postgres_admin_url)
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
    with fast_path_only(store):
        assert store.get_app(app_id) is not None  # the checkout ping replaced it, unseen


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_sqlite_writers_of_the_fast_path_queue_on_the_write_lock(store: SqlStore) -> None:
    user_id, app_id = parents(store)
    code = b.code(app_id, user_id)
    store.create_code(code)
    g = b.grant(app_id, user_id)
    done = threading.Event()

    def redeem() -> None:
        store.redeem_code(code.id, b.at(1), g, b.access(g, app_id), None)
        done.set()

    with store._writer:
        writer = threading.Thread(target=redeem)
        writer.start()
        assert not done.wait(0.2), "a fast-path write did not wait for the write lock"
        with fast_path_only(store):
            assert store.get_grant(g.id) is None  # readers do not queue
    writer.join(timeout=10)
    assert done.is_set()
    assert_round_trip(store.get_grant(g.id), g)


@sql_backends
def test_racing_redemptions_of_one_code_have_one_winner(store: SqlStore) -> None:
    user_id, app_id = parents(store)

    def race(code_id: str, attempts: list[Grant]) -> list[bool]:
        return run_together(
            2,
            lambda i: store.redeem_code(
                code_id, b.at(1), attempts[i], b.access(attempts[i], app_id), None
            ),
        )

    for _ in range(10):
        code = b.code(app_id, user_id)
        store.create_code(code)
        attempts = [b.grant(app_id, user_id) for _ in range(2)]
        with fast_path_only(store):
            won = race(code.id, attempts)
            assert sorted(won) == [False, True]
            assert [store.get_grant(g.id) is not None for g in attempts] == won


@sql_backends
def test_cursor_event_listeners_see_every_hot_statement(store: SqlStore) -> None:
    """A tracer hooks SQLAlchemy's cursor events: the hot paths then run where it sees them."""
    user_id, app_id = parents(store)
    code_id, g = redeemable(store, user_id, app_id)
    access = b.access(g, app_id)
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert store.redeem_code(code_id, b.at(1), g, access, None) is True
        assert_round_trip(store.get_grant(g.id), g)
        assert_round_trip(store.get_access_token_by_prefix(access.prefix), access)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    hot = [s.split(" (")[0] for s in seen if not s.startswith(("BEGIN", "SELECT apps"))]
    if store.engine.dialect.name == "sqlite":
        assert hot[0].startswith("UPDATE authorization_codes")
        assert hot[1:3] == ["INSERT INTO grants", "INSERT INTO access_tokens"]
    else:  # one statement: the claim, then the grant and the token inserted from it
        redemption = [s for s in seen if s.startswith("WITH claimed AS")]
        assert len(redemption) == 1
        assert redemption[0].startswith("WITH claimed AS (UPDATE authorization_codes")
        assert "INSERT INTO grants" in redemption[0]
        assert "INSERT INTO access_tokens" in redemption[0]
    assert [s for s in seen if s.startswith("SELECT grants.id")]
    assert [s for s in seen if s.startswith("SELECT access_tokens.id")]


@sql_backends
def test_runner_all_matches_sqlalchemy(store: SqlStore) -> None:
    user_id, app_id = parents(store)
    for _ in range(3):
        code_id, g = redeemable(store, user_id, app_id)
        assert store.redeem_code(code_id, b.at(1), g, b.access(g, app_id), None) is True
    with store._raw_transaction(Intent.READ) as db:
        fast = db.all(_GRANTS_OF_APP, {"app_id": app_id})
    with store.engine.connect() as conn:
        slow = [dict(r._mapping) for r in conn.execute(_GRANTS_OF_APP, {"app_id": app_id})]
    assert fast == slow and len(fast) == 3


@sql_backends
def test_a_batch_stores_what_sqlalchemy_stores_and_processes_each_time_once(
    store: SqlStore,
) -> None:
    """``execute_each`` (one ``executemany``, a datetime processed once per batch): the rows
    are byte for byte those of ``Connection.execute``, equal instants in other zones alike."""
    _, app_id = parents(store)
    first = values_of(b.access(None, app_id, expires_at=b.at(60)))
    same_instant = values_of(b.access(None, app_id, expires_at=b.at(60).astimezone(b.PLUS_TWO)))
    later = values_of(b.access(None, app_id, expires_at=b.at(61)))
    rows = [first | {"id": "f1", "prefix": "p1"}, same_instant | {"id": "f2", "prefix": "p2"}]
    rows.append(later | {"id": "f3", "prefix": "p3"})
    with fast_path_only(store), store._raw_transaction(Intent.WRITE) as db:
        db.execute_each(insert(access_tokens), rows)
    with store.engine.begin() as conn:
        for row in rows:
            copy = {"id": "s" + row["id"], "prefix": "s" + row["prefix"]}
            conn.execute(insert(access_tokens), row | copy | {"token_hash": row["id"] + "-copy"})
    for row in rows:
        fast, slow = (
            stored_text(store, access_tokens, row["id"]),
            stored_text(store, access_tokens, "s" + row["id"]),
        )
        assert fast[2:] == slow[2:]  # all but the prefix and the hash, which are unique
        assert read_back(store, access_tokens, row["id"])["expires_at"] == row["expires_at"]
    expiries = [stored_text(store, access_tokens, f"f{n}")[-2] for n in (1, 2, 3)]
    assert expiries[0] == expiries[1] != expiries[2]
    naive = later | {"id": "f4", "prefix": "p4", "expires_at": b.at(62).replace(tzinfo=None)}
    with pytest.raises(ValueError, match="naive"), store._raw_transaction(Intent.WRITE) as db:
        db.execute_each(insert(access_tokens), [later | {"id": "f5", "prefix": "p5"}, naive])
    with store.engine.connect() as conn:
        left = conn.execute(select(access_tokens.c.id).where(access_tokens.c.id.in_(["f4", "f5"])))
        assert left.all() == []  # the batch before the naive row rolled back with it


@pytest.mark.parametrize(
    "dialect",
    [sqlite.dialect(), psycopg.dialect()],  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
    ids=["sqlite", "pg"],
)
def test_statements_must_take_their_values_as_bind_parameters(dialect: Dialect) -> None:
    with pytest.raises(ValueError, match="bindparam"):
        Prepared(select(apps).where(apps.c.id == "x"), dialect)
    with pytest.raises(ValueError, match="execution time"):
        Prepared(select(apps).where(apps.c.id.in_(bindparam("ids", expanding=True))), dialect)
    by_id = Prepared(select(apps.c.id).where(apps.c.id == bindparam("id")), dialect)
    assert "apps.id" in by_id.sql
    assert by_id.parameters({"id": "a1"}) in (("a1",), {"id": "a1"})


def test_a_joined_row_splits_into_its_tables() -> None:
    apps_keys = [f"apps_{c.key}" for c in apps.columns]
    secret_keys = [f"app_secrets_{c.key}" for c in app_secrets.columns]
    row = dict(zip(apps_keys + secret_keys, range(len(apps_keys) + len(secret_keys)), strict=True))
    app, secret = split_joined(row, apps, app_secrets)
    assert list(app) == [c.key for c in apps.columns] and app["id"] == 0
    assert list(secret) == [c.key for c in app_secrets.columns]
    assert secret["id"] == len(apps_keys)
    with pytest.raises(ValueError, match="exactly the columns"):
        split_joined(row, apps)  # columns left over
    with pytest.raises(ValueError, match="exactly the columns"):
        split_joined(dict(list(row.items())[:-1]), apps, app_secrets)  # one missing
