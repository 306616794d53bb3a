"""The transaction boundary of the SQL store, where database exceptions are translated.

Every ``Store`` method runs inside exactly one ``_transaction()``. Whatever the driver raises
leaves it as one of the two exceptions core knows (``authgate.core.ports``), or as
``ValueError`` when the caller broke an invariant (a naive datetime, a row that references a
missing parent).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, delete, exc, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from authgate.core.ports import DuplicateKeyError, StoreUnavailableError
from authgate.storage.sql.engine import WRITE_OPTION

_PG_UNIQUE_VIOLATION = "23505"
_SQLITE_UNIQUE_CODES = {
    sqlite3.SQLITE_CONSTRAINT_UNIQUE,
    sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY,
}


def values_of(model: Any) -> dict[str, Any]:
    """A model as a column → value dict; columns are named after the dataclass fields."""
    return {f.name: getattr(model, f.name) for f in fields(model)}


def upsert_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that takes ``ON CONFLICT`` clauses, in the dialect of ``conn``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def purge(conn: Connection, table: Table, which: ColumnElement[bool]) -> int:
    """Delete the rows matching ``which``, skipping rows another transaction holds.

    Housekeeping that many writers run at once: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` keeps
    one purge from waiting on (or deadlocking with) another; what it skips, a later purge
    takes. SQLite has no row locks (its write transactions run one at a time) and ignores it.
    """
    key = list(table.primary_key.columns)
    doomed = select(*key).where(which).with_for_update(skip_locked=True)
    return conn.execute(delete(table).where(tuple_(*key).in_(doomed))).rowcount


class SqlBase:
    """Owns the engine; subclasses add the queries of one aggregate each."""

    def __init__(self, engine: Engine, *, serialize: bool = False) -> None:
        self._engine = engine
        # An in-memory SQLite database is a single shared connection: one user at a time.
        self._serial: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if serialize else contextlib.nullcontext()
        )
        # SQLite runs one write transaction at a time. Writers of this process queue on a lock
        # instead of in SQLite's busy handler, which polls with growing sleeps; other processes
        # on the same file still wait on the busy timeout.
        self._writer: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def ping(self) -> bool:
        """True if the database answers a trivial query (for /readyz)."""
        try:
            with self._transaction() as conn:
                conn.execute(text("SELECT 1"))
        except StoreUnavailableError:
            return False
        return True

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


def _translate(error: exc.SQLAlchemyError) -> Exception:
    if isinstance(error, exc.IntegrityError):
        if _is_unique_violation(error.orig):
            return DuplicateKeyError(_first_line(error.orig))
        return ValueError(f"integrity constraint refused the write: {_first_line(error.orig)}")
    if isinstance(error, exc.StatementError) and isinstance(error.orig, ValueError):
        return error.orig  # raised by our own bind processing, e.g. a naive datetime
    return StoreUnavailableError(_first_line(getattr(error, "orig", None) or error))


def _is_unique_violation(orig: BaseException | None) -> bool:
    if isinstance(orig, sqlite3.IntegrityError):
        return getattr(orig, "sqlite_errorcode", None) in _SQLITE_UNIQUE_CODES
    return getattr(orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
