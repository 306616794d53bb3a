"""What only the SQL store has: URLs, connection settings, in-memory mode, failure mapping."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from authgate.core.flows import FlowQuery
from authgate.core.ports import StoreUnavailableError
from authgate.storage import SqlStore, open_store, schema_status, upgrade
from authgate.storage.sql.engine import make_engine, parse_url
from tests.storage import store_builders as b

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/authgate"


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:p@db.internal:5432/authgate", "postgresql+psycopg"),
        ("postgres://u@db/authgate", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/authgate", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@db/authgate", "postgresql+psycopg"),
        ("sqlite:///var/lib/authgate/authgate.db", "sqlite+pysqlite"),
        ("sqlite://", "sqlite+pysqlite"),
    ],
)
def test_urls_map_to_the_shipped_drivers(url: str, driver: str) -> None:
    parsed = parse_url(url)
    assert parsed.drivername == driver
    assert parsed.database == parse_url(url).database


@pytest.mark.parametrize("url", ["mysql://u@db/authgate", "sqlite+aiosqlite:///x.db"])
def test_other_databases_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        open_store(url)


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'authgate.db'}"
    upgrade(url)
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            pragmas = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        store.close()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 5000,
        # FULL (2) by default: a committed grant survives a power cut.
        "synchronous": 2,
    }


def test_sqlite_stores_utc(tmp_path: Path) -> None:
    """Whatever zone the caller used, the column holds the UTC wall time."""
    url = f"sqlite:///{tmp_path / 'authgate.db'}"
    upgrade(url)
    store = open_store(url)
    try:
        store.create_user(b.user(id="u1", created_at=b.at(0).astimezone(b.PLUS_TWO)))
        with store.engine.connect() as conn:
            raw = conn.execute(text("SELECT created_at FROM users WHERE id = 'u1'")).scalar_one()
    finally:
        store.close()
    assert raw == "2026-03-04 05:06:07.123456"


def test_in_memory_store_is_migrated_and_shared_between_threads() -> None:
    store = open_store("sqlite://")
    try:
        u, a = b.user(), b.app()
        store.create_user(u)
        store.create_app(a)
        c = b.code(a.id, u.id)
        store.create_code(c)
        grants = [b.grant(a.id, u.id) for _ in range(8)]
        results: list[bool] = []
        barrier = threading.Barrier(8)

        def redeem(i: int) -> None:
            barrier.wait()
            results.append(
                store.redeem_code(c.id, b.at(1), grants[i], b.access(grants[i], a.id), None)
            )

        threads = [threading.Thread(target=redeem, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results) == [False] * 7 + [True]
        assert sum(store.get_grant(g.id) is not None for g in grants) == 1
    finally:
        store.close()


def test_unreachable_database_is_unavailable() -> None:
    store = open_store(UNREACHABLE)
    try:
        assert store.ping() is False
        with pytest.raises(StoreUnavailableError):
            store.get_user("u1")
        with pytest.raises(StoreUnavailableError):
            store.create_user(b.user())
    finally:
        store.close()
    with pytest.raises(StoreUnavailableError):
        schema_status(UNREACHABLE)
    with pytest.raises(StoreUnavailableError):
        upgrade(UNREACHABLE)


def test_store_without_schema_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert store.ping() is True
        with pytest.raises(StoreUnavailableError):
            store.count_users()
    finally:
        store.close()


@pytest.mark.postgres
def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL restarted (or a proxy cut idle connections): the pool pings a connection that
    sat idle before handing it out, and replaces it, so no request sees the dead one."""
    from authgate.storage.sql import engine as engine_module

    store = open_store(migrated_postgres_url)
    try:
        assert store.count_users() == 0
        with store.engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        admin = make_engine(migrated_postgres_url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        admin.dispose()
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
        assert store.count_users() == 0  # served by a new connection, no error
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid
    finally:
        store.close()


@pytest.mark.postgres
def test_only_idle_connections_are_pinged(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections in steady use go out without a ping (no extra round trip per transaction)."""
    from authgate.storage.sql import engine as engine_module

    pings: list[object] = []
    real_ping = engine_module._ping

    def counting_ping(dbapi_connection: object) -> None:
        pings.append(dbapi_connection)
        real_ping(dbapi_connection)

    monkeypatch.setattr(engine_module, "_ping", counting_ping)
    store = open_store(migrated_postgres_url)
    try:
        for _ in range(5):
            store.count_users()
        assert pings == []
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
        store.count_users()
        assert len(pings) == 1
    finally:
        store.close()


def _plans(store_url: str, run: Callable[[SqlStore], object]) -> list[str]:
    """SQLite's plan of every query (``SELECT``, ``DELETE``) ``run(store)`` runs."""
    store = open_store(store_url)
    statements: list[tuple[str, Sequence[Any]]] = []

    def capture(
        conn: object, cursor: object, sql: str, params: Sequence[Any], *rest: object
    ) -> None:
        if sql.lstrip().upper().startswith(("SELECT", "DELETE")):
            statements.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        run(store)
        with store.engine.connect() as conn:
            return [
                " | ".join(
                    str(row[-1])
                    for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
                )
                for sql, params in statements
            ]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("search", "indexes"),
    [
        (FlowQuery(reference="abcd1234"), ["ix_flow_steps_reference"]),
        (FlowQuery(reason="code_expired"), ["ix_flow_steps_reason"]),
        (FlowQuery(user_id="u1"), ["ix_flows_user_id", "ix_flow_steps_alone_user"]),
        (FlowQuery(client_id="c1"), ["ix_flows_client_id", "ix_flow_steps_alone_client"]),
    ],
)
def test_flow_searches_use_their_partial_indexes(
    tmp_path: Path, search: FlowQuery, indexes: list[str]
) -> None:
    """The indexes of reasons, references and users hold only the rows that have one (migration
    0010), those of the flows of one step only those steps (0012): a search must carry the
    conditions that let SQLite use them, or it reads a whole table. Each statement (the page,
    and the count of each kind of flow) uses one of them, and none is left unused."""
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    plans = _plans(url, lambda store: store.list_flows(search))
    assert len(plans) == 3, plans
    assert all(any(index in plan for index in indexes) for plan in plans), plans
    assert all(any(index in plan for plan in plans) for index in indexes), plans
    assert not any(re.search(r"\bSCAN (flows|flow_steps)\b", plan) for plan in plans), plans


def test_the_steps_of_a_flow_are_found_by_index(tmp_path: Path) -> None:
    """The index of steps by flow holds only the steps of longer flows (migration 0013): a
    flow's timeline reads it for those and the primary key for a flow of one step, and the
    cleanup of flows left without steps reads it too. Neither reads ``flow_steps`` whole."""
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    [timeline] = _plans(url, lambda store: store.list_flow_steps("f1"))
    assert "SEARCH flow_steps USING INDEX ix_flow_steps_flow_id (flow_id=?)" in timeline
    assert "SEARCH flow_steps USING INDEX sqlite_autoindex_flow_steps_1 (id=?)" in timeline
    cutoff = datetime(2026, 1, 1, tzinfo=UTC)
    [cleanup] = _plans(url, lambda store: store.purge_flows(cutoff, 100))
    assert "SEARCH flow_steps USING INDEX ix_flow_steps_flow_id (flow_id=?)" in cleanup
    for plan in (timeline, cleanup):
        assert not re.search(r"\bSCAN flow_steps\b", plan), plan
