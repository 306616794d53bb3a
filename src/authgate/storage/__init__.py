"""Persistence for authgate: ``open_store(url)`` returns the ``Store`` core asks for.

URLs: ``sqlite:///path/to/file.db`` (the embedded default), ``sqlite://`` (in memory, migrated
on open, for tests and demos) and ``postgresql://…`` (production; served by psycopg 3).
Database exceptions never leave this package except as ``DuplicateKeyError`` and
``StoreUnavailableError`` from ``authgate.core.ports``.
"""

from __future__ import annotations

from authgate.storage.sql.engine import (
    SqliteSynchronous,
    is_memory_sqlite,
    make_engine,
    parse_url,
)
from authgate.storage.sql.migrate import (
    SchemaState,
    SchemaStatus,
    downgrade,
    schema_status,
    upgrade,
    upgrade_engine,
)
from authgate.storage.sql.store import SqlStore

__all__ = [
    "SchemaState",
    "SchemaStatus",
    "SqlStore",
    "downgrade",
    "open_store",
    "schema_status",
    "upgrade",
]


def open_store(url: str, *, sqlite_synchronous: SqliteSynchronous = "full") -> SqlStore:
    """Connect to the database at ``url``; does not migrate it (call ``upgrade`` first).

    The exception is an in-memory SQLite database, which exists only inside this store and so
    is migrated here.
    """
    parsed = parse_url(url)
    memory = is_memory_sqlite(parsed)
    store = SqlStore(make_engine(parsed, sqlite_synchronous=sqlite_synchronous), serialize=memory)
    if memory:
        upgrade_engine(store.engine)
    return store
