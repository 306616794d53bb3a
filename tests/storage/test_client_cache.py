"""The clients kept in memory for client authentication (client_cache.py), and the triggers of
migration 0005 that make every process forget them when they change."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from authgate.core.models import App, AppSecret
from authgate.storage import open_store, upgrade
from authgate.storage.sql import client_cache
from authgate.storage.sql.client_cache import ChangeListener, ClientCache, Entry
from authgate.storage.sql.store import SqlStore
from authgate.storage.sql.tables import app_secrets, apps
from tests.storage import store_builders as b
from tests.storage.conftest import SQL_BACKENDS


class Loads:
    """A ``load`` for ``ClientCache.lookup`` that counts its calls."""

    def __init__(self, entry: Entry, during: Callable[[], None] | None = None) -> None:
        self.entry = entry
        self.calls = 0
        self.during = during

    def __call__(self) -> Entry:
        self.calls += 1
        if self.during is not None:
            self.during()
        return self.entry


def client(**overrides: Any) -> tuple[App, AppSecret]:
    app = b.app(**overrides)
    return app, b.secret(app.id)


# -- the cache itself ------------------------------------------------------------------------


def test_a_lookup_is_loaded_once_until_the_counter_changes() -> None:
    counter = [7]
    cache = ClientCache(lambda: counter[0])
    app, secret = client()
    load = Loads((app, secret))
    assert cache.lookup((app.id, secret.prefix), load) == (app, secret)
    assert cache.lookup((app.id, secret.prefix), load) == (app, secret)
    assert load.calls == 1
    counter[0] = 8  # another process changed some client
    assert cache.lookup((app.id, secret.prefix), load) == (app, secret)
    assert load.calls == 2
    assert cache.lookup((app.id, secret.prefix), load) == (app, secret)
    assert load.calls == 2


def test_without_its_counter_row_the_cache_is_not_used() -> None:
    cache = ClientCache(lambda: None)
    app, secret = client()
    load = Loads((app, secret))
    for _ in range(3):
        assert cache.lookup((app.id, secret.prefix), load) == (app, secret)
    assert load.calls == 3


@pytest.mark.parametrize("which", ["unknown app", "no such secret", "another app's secret"])
def test_what_does_not_authenticate_is_read_each_time(which: str) -> None:
    cache = ClientCache(lambda: 1)
    app, secret = client()
    entry: Entry = {
        "unknown app": (None, None),
        "no such secret": (app, None),
        "another app's secret": (app, b.secret(b.uid("app"))),
    }[which]
    load = Loads(entry)
    for _ in range(3):
        assert cache.lookup((app.id, secret.prefix), load) == entry
    assert load.calls == 3


def test_an_app_alone_is_kept_and_an_unknown_one_is_not() -> None:
    cache = ClientCache(lambda: 1)
    app = b.app()
    known, unknown = Loads((app, None)), Loads((None, None))
    for _ in range(3):
        assert cache.lookup((app.id, None), known) == (app, None)
        assert cache.lookup(("app_missing", None), unknown) == (None, None)
    assert (known.calls, unknown.calls) == (1, 3)


def test_a_read_that_a_change_overtakes_is_not_kept() -> None:
    cache = ClientCache(lambda: 1)
    app, secret = client()
    key = (app.id, secret.prefix)
    raced = Loads((app, secret), during=lambda: cache.changed(app.id))
    assert cache.lookup(key, raced) == (app, secret)  # returned, but maybe already stale
    load = Loads((app, secret))
    cache.lookup(key, load)
    assert load.calls == 1


def test_a_change_forgets_that_app_only_and_none_forgets_all() -> None:
    cache = ClientCache(lambda: 1)
    (a, sa), (c, sc) = client(), client()
    loads = {a.id: Loads((a, sa)), c.id: Loads((c, sc))}
    keys = {a.id: (a.id, sa.prefix), c.id: (c.id, sc.prefix)}
    for app_id in loads:
        cache.lookup(keys[app_id], loads[app_id])
    cache.changed(a.id)
    for app_id in loads:
        cache.lookup(keys[app_id], loads[app_id])
    assert (loads[a.id].calls, loads[c.id].calls) == (2, 1)
    cache.changed(None)
    for app_id in loads:
        cache.lookup(keys[app_id], loads[app_id])
    assert (loads[a.id].calls, loads[c.id].calls) == (3, 2)


def test_touches_update_the_kept_copies_in_place() -> None:
    cache = ClientCache(lambda: 1)
    app, secret = client()
    other_app, other_secret = client()
    key, other = (app.id, secret.prefix), (other_app.id, other_secret.prefix)
    load, other_load = Loads((app, secret)), Loads((other_app, other_secret))
    cache.lookup(key, load)
    cache.lookup((app.id, None), Loads((app, None)))
    cache.lookup(other, other_load)
    cache.touched_secret(secret.id, b.at(30))
    cache.touched_app(app.id, b.at(40))
    got_app, got_secret = cache.lookup(key, load)
    assert got_secret == replace(secret, last_used_at=b.at(30))
    assert got_app == replace(app, last_used_at=b.at(40))
    assert cache.lookup((app.id, None), Loads((None, None)))[0] == got_app
    assert cache.lookup(other, other_load) == (other_app, other_secret)  # untouched
    assert (load.calls, other_load.calls) == (1, 1)


def test_the_oldest_entry_goes_when_the_cache_is_full() -> None:
    cache = ClientCache(lambda: 1, capacity=2)
    clients = [client() for _ in range(3)]
    loads = [Loads(entry) for entry in clients]
    for (app, secret), load in zip(clients, loads, strict=True):
        cache.lookup((app.id, secret.prefix), load)
    for index in (1, 2, 0):
        (app, secret), load = clients[index], loads[index]
        cache.lookup((app.id, secret.prefix), load)
    # The third evicted the first; the second and third were still there.
    assert [load.calls for load in loads] == [2, 1, 1]


def test_a_reader_gets_a_jwk_set_of_its_own() -> None:
    cache = ClientCache(lambda: 1)
    app = b.app()
    assert app.jwks is not None
    load = Loads((app, None))
    first = cache.lookup((app.id, None), load)[0]
    assert first is not None and first.jwks is not None
    first.jwks["keys"].clear()
    second = cache.lookup((app.id, None), load)[0]
    assert second is not None and second.jwks == app.jwks and second.jwks["keys"]
    assert load.calls == 1


def test_a_listener_cache_is_used_only_while_its_lease_lasts() -> None:
    now = [100.0]
    cache = ClientCache(None, clock=lambda: now[0])
    app, secret = client()
    key = (app.id, secret.prefix)
    load = Loads((app, secret))
    cache.lookup(key, load)
    cache.lookup(key, load)
    assert load.calls == 2  # not listening yet
    cache.renew()
    cache.lookup(key, load)
    cache.lookup(key, load)
    assert load.calls == 3
    now[0] += client_cache.LEASE_SECONDS - 0.01
    cache.lookup(key, load)
    assert load.calls == 3
    now[0] += 0.02  # the listener has not proved itself for LEASE_SECONDS
    cache.lookup(key, load)
    cache.lookup(key, load)
    assert load.calls == 5
    cache.renew()
    cache.lookup(key, load)
    assert load.calls == 5  # the entry kept before is good again: no change was missed
    cache.lapse()  # the connection was lost: changes may have been missed
    cache.renew()
    cache.lookup(key, load)
    assert load.calls == 6


class PoolerConnection:
    """A listening connection as ``ChangeListener`` uses it. ``echo``: whether a notification
    sent on it comes back (not through a pooler that drops them)."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.incoming: queue.SimpleQueue[SimpleNamespace] = queue.SimpleQueue()
        self.sent: list[str] = []

    def execute(self, sql: str, params: tuple[str, ...] = ()) -> None:
        if sql.startswith("SELECT pg_notify"):
            self.sent.append(params[1])
            if self.echo:
                self.incoming.put(SimpleNamespace(payload=params[1]))

    def notifies(self, *, timeout: float) -> Iterator[SimpleNamespace]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                yield self.incoming.get(timeout=left)
            except queue.Empty:
                return

    def close(self) -> None:
        pass


@pytest.mark.parametrize("echo", [True, False], ids=["heard", "swallowed"])
def test_the_cache_is_used_only_while_the_listener_hears_its_own_heartbeat(
    echo: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_cache, "HEARTBEAT_SECONDS", 0.02)
    conn = PoolerConnection(echo)
    cache = ClientCache(None)
    listener = ChangeListener(cache, lambda: conn)
    (a, sa), (c, sc) = client(), client()
    loads = [Loads((a, sa)), Loads((c, sc))]
    listener.ensure_started()
    try:
        if not echo:
            _eventually(lambda: len(conn.sent) >= 5)  # five beats, none came back
            assert cache._usable() is None
            cache.lookup((a.id, sa.prefix), loads[0])
            cache.lookup((a.id, sa.prefix), loads[0])
            assert loads[0].calls == 2
            return
        _eventually(lambda: cache._usable() is not None)
        for _ in range(2):
            cache.lookup((a.id, sa.prefix), loads[0])
            cache.lookup((c.id, sc.prefix), loads[1])
        # Another process's heartbeat changes nothing; a change to an app forgets that app.
        conn.incoming.put(SimpleNamespace(payload=f"{client_cache.HEARTBEAT} 1 2 3"))
        conn.incoming.put(SimpleNamespace(payload=a.id))
        _eventually(lambda: (a.id, sa.prefix) not in cache._entries)
        assert (c.id, sc.prefix) in cache._entries
        assert [load.calls for load in loads] == [1, 1]
    finally:
        listener.close()
    assert all(beat.startswith(client_cache.HEARTBEAT) for beat in conn.sent)
    assert len(set(conn.sent)) == len(conn.sent)  # each beat is told apart from the last


class BusyConnection(PoolerConnection):
    """A listening connection whose statements take a while, and which tells whether it was
    closed while one ran: psycopg frees what a running statement uses, and the process
    crashes."""

    def __init__(self) -> None:
        super().__init__(echo=True)
        self.running = threading.Event()
        self.closed = threading.Event()
        self.closed_while_running = False

    def execute(self, sql: str, params: tuple[str, ...] = ()) -> None:
        self.running.set()
        time.sleep(0.2)
        self.running.clear()
        super().execute(sql, params)

    def close(self) -> None:
        self.closed_while_running |= self.running.is_set()
        self.closed.set()


def test_closing_never_closes_the_connection_under_a_running_statement() -> None:
    conn = BusyConnection()
    listener = ChangeListener(ClientCache(None), lambda: conn)
    listener.ensure_started()
    assert conn.running.wait(2)  # LISTEN is running
    listener.close()
    assert not conn.closed.is_set()  # left to the thread, which closes it as it ends
    assert conn.closed.wait(client_cache.HEARTBEAT_SECONDS + 2)
    assert not conn.closed_while_running
    assert listener._thread is not None
    listener._thread.join(2)
    assert not listener._thread.is_alive()


def test_closing_an_idle_listener_closes_its_connection_at_once() -> None:
    conn = PoolerConnection(echo=False)
    closed = threading.Event()
    conn.close = closed.set  # type: ignore[method-assign]
    listener = ChangeListener(ClientCache(None), lambda: conn)
    listener._conn = conn  # as if between two statements, the thread not running one
    listener.close()
    assert closed.is_set()


# -- the triggers ----------------------------------------------------------------------------


@pytest.fixture(params=SQL_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'authgate.db'}"
    else:
        url = str(request.getfixturevalue("fresh_postgres_url"))
    upgrade(url)
    return url


@pytest.fixture
def nodes(database_url: str) -> Iterator[tuple[SqlStore, SqlStore]]:
    """Two stores on one database: two processes, or two nodes."""
    one, two = open_store(database_url), open_store(database_url)
    assert isinstance(one, SqlStore) and isinstance(two, SqlStore)
    yield one, two
    one.close()
    two.close()


def test_the_triggers_watch_every_column_but_last_used_at(database_url: str) -> None:
    """A column added to apps or app_secrets must be added to their UPDATE triggers too."""
    for table in (apps, app_secrets):
        assert _watched_columns(database_url, table.name) == (
            set(table.columns.keys()) - {"last_used_at"}
        )


def _watched_columns(url: str, table: str) -> set[str]:
    """The columns whose UPDATE the table's trigger reports, from the database's own copy of
    the trigger's definition."""
    if _is_postgres(url):
        with psycopg.connect(_libpq(url)) as conn:
            row = conn.execute(
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = %s",
                (f"{table}_changed",),
            ).fetchone()
        conn.close()
    else:
        database = make_url(url).database
        assert database is not None
        with sqlite3.connect(database) as lite:
            row = lite.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                (f"{table}_updated",),
            ).fetchone()
        lite.close()
    assert row is not None, f"no UPDATE trigger on {table}"
    definition = " ".join(str(row[0]).split())
    listed = definition.split(" UPDATE OF ", 1)[1].split(" ON ", 1)[0]
    return {column.strip() for column in listed.split(",")}


def _is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _raw_sql(url: str, statement: str, params: tuple[Any, ...]) -> None:
    """A change made outside authgate (a database shell)."""
    if _is_postgres(url):
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute(statement.replace("?", "%s"), params)
        return
    database = make_url(url).database
    assert database is not None
    with sqlite3.connect(database) as lite:
        lite.execute(statement, params)
    lite.close()


def _eventually(check: Callable[[], bool], seconds: float = 3.0) -> None:
    """On PostgreSQL a change reaches the other node as a notification: within milliseconds,
    but not at once."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the change never reached the other node"
        time.sleep(0.01)


def _registered(store: SqlStore) -> tuple[App, AppSecret]:
    """A new client, stored through ``store`` and then served from its memory."""
    app, secret = client()
    store.create_app(app)
    store.create_secret(secret)
    _cached(store, app, secret)
    return app, secret


def _cached(store: SqlStore, app: App, secret: AppSecret) -> None:
    """Read the client until the store serves it from memory (on PostgreSQL, once its listener
    listens), proved by a read of the database that now fails the test if it happens."""

    def served_from_memory() -> bool:
        assert store.get_app_and_secret(app.id, secret.prefix) == (app, secret)
        return store._clients._usable() is not None and (app.id, secret.prefix) in (
            store._clients._entries
        )

    _eventually(served_from_memory)


def test_a_client_is_read_once_and_then_served_from_memory(
    nodes: tuple[SqlStore, SqlStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = nodes
    app, secret = _registered(one)

    def no_reads(*args: object) -> None:
        raise AssertionError("read the database")

    monkeypatch.setattr(one, "_read_app_and_secret", no_reads)
    for _ in range(3):
        assert one.get_app_and_secret(app.id, secret.prefix) == (app, secret)


def test_changes_by_another_node_are_seen(nodes: tuple[SqlStore, SqlStore]) -> None:
    one, two = nodes
    app, secret = _registered(one)
    # The app changes elsewhere.
    changed = replace(app, scope="files:read", redirect_uris=("https://new.example/cb",))
    two.update_app(changed)
    _eventually(lambda: one.get_app_and_secret(app.id, secret.prefix) == (changed, secret))
    assert one.get_app(app.id) == changed
    # Its secret is deleted elsewhere: it no longer authenticates here.
    _cached(one, changed, secret)
    assert two.delete_secret(secret.id, b.at(1))
    _eventually(lambda: one.get_app_and_secret(app.id, secret.prefix) == (changed, None))
    # A new secret, then the app deleted elsewhere.
    fresh = b.secret(app.id)
    two.create_secret(fresh)
    _eventually(lambda: one.get_app_and_secret(app.id, fresh.prefix) == (changed, fresh))
    _cached(one, changed, fresh)
    assert two.delete_app(app.id)
    _eventually(lambda: one.get_app_and_secret(app.id, fresh.prefix) == (None, None))
    assert one.get_app(app.id) is None


def test_changes_made_outside_authgate_are_seen(
    database_url: str, nodes: tuple[SqlStore, SqlStore]
) -> None:
    one, _ = nodes
    app, secret = _registered(one)
    _raw_sql(database_url, "UPDATE apps SET name = ? WHERE id = ?", ("Renamed", app.id))
    _eventually(
        lambda: one.get_app_and_secret(app.id, secret.prefix)[0] == replace(app, name="Renamed")
    )
    _cached(one, replace(app, name="Renamed"), secret)
    _raw_sql(database_url, "UPDATE app_secrets SET secret_hash = ? WHERE id = ?", ("x", secret.id))
    _eventually(
        lambda: one.get_app_and_secret(app.id, secret.prefix)[1] == replace(secret, secret_hash="x")
    )


def test_a_change_by_this_node_is_seen_by_its_next_lookup(nodes: tuple[SqlStore, SqlStore]) -> None:
    """No waiting for the notification: the writer forgets what it changed at once."""
    one, _ = nodes
    app, secret = _registered(one)
    assert one.delete_secret(secret.id, b.at(1))
    assert one.get_app_and_secret(app.id, secret.prefix) == (app, None)
    changed = replace(app, name="Now")
    one.update_app(changed)
    assert one.get_app(app.id) == changed


def test_touches_are_not_reported_as_changes(
    database_url: str, nodes: tuple[SqlStore, SqlStore]
) -> None:
    one, two = nodes
    app, secret = _registered(one)
    _cached(two, app, secret)

    def touch() -> None:
        two.touch_secret(secret.id, b.at(9))
        two.touch_app(app.id, b.at(9))

    assert _reported(database_url, touch) == []
    # The touching node's own copy is updated; the other node's stays as it was read.
    assert two.get_app_and_secret(app.id, secret.prefix) == (
        replace(app, last_used_at=b.at(9)),
        replace(secret, last_used_at=b.at(9)),
    )
    time.sleep(0.1)
    assert one.get_app_and_secret(app.id, secret.prefix) == (app, secret)
    renamed = _reported(database_url, lambda: two.update_app(replace(app, name="Other")))
    assert renamed == ([app.id] if _is_postgres(database_url) else [""])


def _reported(url: str, change: Callable[[], object]) -> list[str]:
    """What the triggers report for ``change``: on PostgreSQL the notifications' payloads (app
    ids; the listeners' heartbeats left out), on SQLite one empty string per increment of the
    counter (which names no app)."""
    if _is_postgres(url):
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute(f"LISTEN {client_cache.CHANNEL}")
            change()
            heard = [n.payload for n in conn.notifies(timeout=0.5)]
            return [payload for payload in heard if not payload.startswith(client_cache.HEARTBEAT)]
    database = make_url(url).database
    assert database is not None

    def generation() -> int:
        with sqlite3.connect(database) as conn:
            value = conn.execute("SELECT generation FROM client_changes").fetchone()[0]
        conn.close()
        return int(value)

    before = generation()
    change()
    return [""] * (generation() - before)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_lost_listener_connection_misses_no_change(
    database_url: str, nodes: tuple[SqlStore, SqlStore]
) -> None:
    """While the listener is gone, lookups read the database; once it listens again, it
    forgets what it kept (a change may have gone unheard) and serves from memory again."""
    one, two = nodes
    app, secret = _registered(one)
    listener = one._client_listener
    assert listener is not None
    lost = listener._conn.info.backend_pid
    with psycopg.connect(_libpq(database_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (lost,))
        # The change is made before the listener can have come back: nobody hears of it.
        changed = replace(app, name="Changed while not listening")
        two.update_app(changed)
        _eventually(lambda: one.get_app_and_secret(app.id, secret.prefix) == (changed, secret))
        _cached(one, changed, secret)  # listening again
        assert listener._conn.info.backend_pid != lost


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_closing_the_store_closes_the_listener_connection(database_url: str) -> None:
    store = open_store(database_url)
    assert isinstance(store, SqlStore)
    _registered(store)
    listener = store._client_listener
    assert listener is not None
    pid = listener._conn.info.backend_pid
    store.close()
    with psycopg.connect(_libpq(database_url), autocommit=True) as admin:

        def gone() -> bool:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            found = row.fetchone()
            return found is not None and found[0] == 0

        _eventually(gone)
    # A closed store reads the database (and fails like any closed store would) rather than
    # answering from memory.
    assert store._clients._usable() is None
