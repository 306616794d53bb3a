"""The transaction boundary of the SQL store, where database exceptions are translated.

Every ``Store`` method runs inside exactly one ``_transaction()``, or, on the hot paths of the
token endpoint, one ``_raw_transaction()``: the same transaction on the DBAPI connection,
without SQLAlchemy's per-statement execution overhead (see ``prepared.py``). Whatever the
driver raises leaves either as one of the two exceptions core knows (``authgate.core.ports``),
or as ``ValueError`` when the caller broke an invariant (a naive datetime, a row that
references a missing parent).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Engine,
    Integer,
    Table,
    delete,
    exc,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPICursor, DBAPIModule
from sqlalchemy.pool import PoolProxiedConnection

from authgate.core.ports import DuplicateKeyError, StoreUnavailableError
from authgate.storage.sql.client_cache import ChangeListener, ClientCache, Entry, Key
from authgate.storage.sql.engine import WRITE_OPTION, sqlite_file
from authgate.storage.sql.prepared import Result, Runner, Statements
from authgate.storage.sql.tables import client_changes
from authgate.storage.sql.writer_lock import WriterLock

_PG_UNIQUE_VIOLATION = "23505"
_SQLITE_UNIQUE_CODES = {
    sqlite3.SQLITE_CONSTRAINT_UNIQUE,
    sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY,
}


def values_of(model: Any) -> dict[str, Any]:
    """A model as a column → value dict; columns are named after the dataclass fields."""
    return {f.name: getattr(model, f.name) for f in fields(model)}


def split_joined(row: dict[str, Any], *tables: Table) -> list[dict[str, Any]]:
    """A row of ``select(*tables)`` (all columns of each, in that order, labelled so that no
    two keys clash) as one column → value dict per table, keyed by the tables' own names."""
    values = iter(row.values())
    parts = [dict(zip(_column_keys(table), values, strict=False)) for table in tables]
    if next(values, _END) is not _END or any(
        len(part) != len(table.columns) for part, table in zip(parts, tables, strict=True)
    ):
        raise ValueError("the row does not hold exactly the columns of these tables")
    return parts


_END = object()


@functools.cache
def _column_keys(table: Table) -> tuple[str, ...]:
    return tuple(table.columns.keys())


def upsert_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that takes ``ON CONFLICT`` clauses, in the dialect of ``conn``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def purge_statement(table: Table, which: ColumnElement[bool]) -> Delete:
    """Delete the rows matching ``which``, skipping rows another transaction holds.

    Housekeeping that many writers run at once: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` keeps
    one purge from waiting on (or deadlocking with) another; what it skips, a later purge
    takes. SQLite has no row locks (its write transactions run one at a time) and ignores it.
    """
    key = list(table.primary_key.columns)
    doomed = select(*key).where(which).with_for_update(skip_locked=True)
    return delete(table).where(tuple_(*key).in_(doomed))


def purge(conn: Connection, table: Table, which: ColumnElement[bool]) -> int:
    """Run ``purge_statement(table, which)``; the number of rows deleted."""
    return conn.execute(purge_statement(table, which)).rowcount


_SELECT_ONE = select(literal_column("1", Integer))
_CLIENT_CHANGES = select(client_changes.c.generation)

#: libpq settings of the connection that listens for client changes: a dead peer is noticed
#: within seconds, not after the system's two hours of TCP keepalive.
_LISTENER_SETTINGS = {
    "autocommit": True,
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


class Intent(enum.StrEnum):
    """What the body of a ``_raw_transaction()`` does, which decides how it runs.

    The caller names it; a body that does more than its intent allows is a bug (a second
    statement after ``READ_ONE`` or ``WRITE_ONE`` would run outside any transaction on
    PostgreSQL).
    """

    #: One SELECT, atomic by itself: it runs in autocommit mode, without BEGIN and COMMIT (on
    #: PostgreSQL two round trips fewer; SQLite's connections are in autocommit mode anyway).
    READ_ONE = "read_one"
    #: Several SELECTs that must see one snapshot: BEGIN (``DEFERRED`` on SQLite), the
    #: statements, COMMIT.
    READ = "read"
    #: One INSERT, UPDATE or upsert, atomic by itself too: on PostgreSQL it runs in autocommit
    #: mode; on SQLite it is a ``WRITE`` like any other (the writer's turn, the group commit).
    #: Not for a statement that may wait for a lock while the client waits for its answer: a
    #: node killed meanwhile would leave it committed and the answer lost.
    WRITE_ONE = "write_one"
    #: A write transaction of any number of statements: BEGIN (``BEGIN IMMEDIATE`` on SQLite),
    #: the statements, COMMIT; on a SQLite file it joins a group commit (``_grouped_write``).
    WRITE = "write"


class SqlBase:
    """Owns the engine; subclasses add the queries of one aggregate each."""

    def __init__(self, engine: Engine, *, serialize: bool = False) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._statements = Statements(engine.dialect)
        # An in-memory SQLite database is a single shared connection: one user at a time.
        self._serial: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if serialize else contextlib.nullcontext()
        )
        # SQLite runs one write transaction at a time. Writers queue on a lock instead of in
        # SQLite's busy handler, which polls with growing sleeps: the threads of this process,
        # and for a database file the other processes too (writer_lock.py).
        database = sqlite_file(engine.url)
        self._writer: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if database is not None:
            self._writer = WriterLock(database)
        elif self._sqlite:
            self._writer = threading.RLock()
        # The clients that authenticated, until the database reports a change (client_cache.py).
        self._clients = ClientCache(self._client_changes if self._sqlite else None)
        self._client_listener = (
            None if self._sqlite else ChangeListener(self._clients, self._listener_connection)
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        if self._client_listener is not None:
            self._client_listener.close()
        self._engine.dispose()
        if isinstance(self._writer, WriterLock):
            self._writer.close()

    def ping(self) -> bool:
        """True if the database answers a trivial query (for /readyz)."""
        try:
            with self._raw_transaction(Intent.READ_ONE) as db:
                db.first(_SELECT_ONE, {})
        except StoreUnavailableError:
            return False
        return True

    def _cached_client(self, key: Key, load: Callable[[], Entry]) -> Entry:
        """``load()``, or what it returned before if no client has changed since."""
        if self._client_listener is not None:
            self._client_listener.ensure_started()
        return self._clients.lookup(key, load)

    def _client_changes(self) -> int | None:
        """SQLite's count of client changes (migration 0005); None if it is missing."""
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_CLIENT_CHANGES, {})
        return None if row is None else int(row["generation"])

    def _listener_connection(self) -> Any:
        """A new PostgreSQL connection outside the pool, for ``ChangeListener``."""
        dialect = self._engine.dialect
        args, settings = dialect.create_connect_args(self._engine.url)
        return dialect.connect(*args, **{**settings, **_LISTENER_SETTINGS})

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; commits on normal exit, rolls back on any exception."""
        writer = self._writer if write else contextlib.nullcontext()
        try:
            with self._serial, writer, self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    yield conn
        except exc.SQLAlchemyError as error:
            raise _translate(error) from error

    @contextlib.contextmanager
    def _raw_transaction(self, intent: Intent) -> Iterator[Runner]:
        """``_transaction()`` on the DBAPI connection, for the hot paths (see ``prepared.py``).

        The same locks, the same pool (so its connect and checkout events run), the same BEGIN,
        COMMIT or ROLLBACK and the same exceptions; how it runs is the ``intent``'s (``Intent``).
        Any driver error rolls the transaction back (or discards a connection that is gone)
        and leaves as ``StoreUnavailableError``, an integrity error as ``DuplicateKeyError`` or
        ``ValueError``.

        While anything listens to SQLAlchemy's cursor events (a tracer), the statements run
        through ``_transaction()`` and ``exec_driver_sql`` instead, so that the listeners see
        every one of them. Fault injection therefore works at the driver (tests/faults).
        """
        write = intent in (Intent.WRITE_ONE, Intent.WRITE)
        single = intent in (Intent.READ_ONE, Intent.WRITE_ONE)
        events = self._engine.dispatch
        if events.before_cursor_execute or events.after_cursor_execute:
            with self._transaction(write=write) as conn:
                yield Runner(conn.exec_driver_sql, self._statements, conn.exec_driver_sql)
            return
        if write and isinstance(self._writer, WriterLock):
            with self._grouped_write(self._writer) as runner:
                yield runner
            return
        dbapi = self._engine.dialect.loaded_dbapi
        writer = self._writer if write else contextlib.nullcontext()
        with self._serial, writer:
            proxy = self._checkout()
            dbapi_conn = proxy.dbapi_connection
            assert dbapi_conn is not None
            # SQLite's connections are in autocommit mode already (engine.py).
            autocommit = single and not self._sqlite
            cursor: DBAPICursor | None = None
            try:
                if autocommit:
                    dbapi_conn.autocommit = True
                cursor = dbapi_conn.cursor()
                if self._sqlite and intent is not Intent.READ_ONE:
                    # As engine._on_sqlite_begin: a writer takes the write lock up front.
                    cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
                yield Runner(_executor(cursor), self._statements, cursor.executemany)
                if not (intent is Intent.READ_ONE or autocommit):
                    dbapi_conn.commit()
            except dbapi.Error as error:
                self._recover(proxy, error)
                if isinstance(error, dbapi.IntegrityError):
                    raise _refused(error) from error
                raise StoreUnavailableError(_first_line(error)) from error
            except BaseException:
                self._recover(proxy, None)
                raise
            finally:
                self._release(proxy, cursor, autocommit)

    @contextlib.contextmanager
    def _grouped_write(self, writer: WriterLock) -> Iterator[Runner]:
        """A write transaction on a SQLite file, committed together with those of other threads
        that queue behind it (``writer_lock.py``): the first member begins the transaction, each
        later one runs under a savepoint, so that its failure undoes only its own statements."""
        dbapi = self._engine.dialect.loaded_dbapi
        with writer.member(self._begin_group, self._finish_group) as group:
            proxy, cursor = group.handle
            joined = group.size > 1
            try:
                if joined:
                    cursor.execute("SAVEPOINT member")
                yield Runner(_executor(cursor), self._statements, cursor.executemany)
                if joined:
                    cursor.execute("RELEASE member")
            except BaseException as error:
                undone = joined and not isinstance(error, dbapi.OperationalError)
                if not (undone and _undo_member(proxy, cursor, dbapi)):
                    group.broken = True  # the whole group is rolled back
                if isinstance(error, dbapi.IntegrityError):
                    raise _refused(error) from error
                if isinstance(error, dbapi.Error):
                    raise StoreUnavailableError(_first_line(error)) from error
                raise

    def _begin_group(self) -> tuple[PoolProxiedConnection, DBAPICursor]:
        proxy = self._checkout()
        dbapi_conn = proxy.dbapi_connection
        assert dbapi_conn is not None
        cursor: DBAPICursor | None = None
        try:
            cursor = dbapi_conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
        except self._engine.dialect.loaded_dbapi.Error as error:
            self._recover(proxy, error)
            self._release(proxy, cursor, False)
            raise StoreUnavailableError(_first_line(error)) from error
        return proxy, cursor

    def _finish_group(
        self, handle: tuple[PoolProxiedConnection, DBAPICursor], commit: bool
    ) -> None:
        proxy, cursor = handle
        try:
            if not commit:
                self._recover(proxy, None)
                return
            dbapi_conn = proxy.dbapi_connection
            assert dbapi_conn is not None
            try:
                dbapi_conn.commit()
            except self._engine.dialect.loaded_dbapi.Error as error:
                self._recover(proxy, error)
                raise StoreUnavailableError(_first_line(error)) from error
        finally:
            self._release(proxy, cursor, False)

    def _checkout(self) -> PoolProxiedConnection:
        """A pooled DBAPI connection; failing to get one is ``StoreUnavailableError``."""
        try:
            return self._engine.raw_connection()
        except exc.SQLAlchemyError as error:
            raise _translate(error) from error
        except self._engine.dialect.loaded_dbapi.Error as error:
            raise StoreUnavailableError(_first_line(error)) from error

    def _recover(self, proxy: PoolProxiedConnection, error: DBAPIModule.Error | None) -> None:
        """Roll back after a failure, or discard the connection if it is gone (as SQLAlchemy's
        ``Connection`` does: a lost server connection invalidates the whole pool, whose other
        connections are likely gone too) or if it cannot roll back."""
        conn = proxy.dbapi_connection
        if conn is None:
            return
        if error is not None and self._engine.dialect.is_disconnect(error, conn, None):
            self._engine.pool._invalidate(proxy, error)
            return
        try:
            conn.rollback()
        except self._engine.dialect.loaded_dbapi.Error as failed:
            proxy.invalidate(failed)

    def _release(
        self, proxy: PoolProxiedConnection, cursor: DBAPICursor | None, autocommit: bool
    ) -> None:
        """Return the connection to the pool in the state it was checked out in."""
        conn = proxy.dbapi_connection
        if conn is None:
            return  # invalidated: the pool already has its record back
        try:
            if cursor is not None:
                cursor.close()
            if autocommit:
                conn.autocommit = False
        except self._engine.dialect.loaded_dbapi.Error as error:
            proxy.invalidate(error)
            return
        proxy.close()


def _undo_member(proxy: PoolProxiedConnection, cursor: DBAPICursor, dbapi: Any) -> bool:
    """Roll a group member back to its savepoint; False if the transaction did not survive."""
    try:
        cursor.execute("ROLLBACK TO member")
        cursor.execute("RELEASE member")
    except dbapi.Error:
        return False
    conn = proxy.dbapi_connection
    return conn is not None and bool(conn.in_transaction)


def _executor(cursor: DBAPICursor) -> Callable[[str, Any], Result]:
    def execute(sql: str, params: Any) -> Result:
        cursor.execute(sql, params)
        return cursor

    return execute


def _translate(error: exc.SQLAlchemyError) -> Exception:
    if isinstance(error, exc.IntegrityError):
        return _refused(error.orig)
    if isinstance(error, exc.StatementError) and isinstance(error.orig, ValueError):
        return error.orig  # raised by our own bind processing, e.g. a naive datetime
    return StoreUnavailableError(_first_line(getattr(error, "orig", None) or error))


def _refused(orig: BaseException | None) -> Exception:
    """What an integrity error of the driver becomes."""
    if _is_unique_violation(orig):
        return DuplicateKeyError(_first_line(orig))
    return ValueError(f"integrity constraint refused the write: {_first_line(orig)}")


def _is_unique_violation(orig: BaseException | None) -> bool:
    if isinstance(orig, sqlite3.IntegrityError):
        return getattr(orig, "sqlite_errorcode", None) in _SQLITE_UNIQUE_CODES
    return getattr(orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
