"""Database URLs and engines: which driver, which pool, which per-connection settings.

SQLite runs in WAL mode with foreign keys on and, unless the operator relaxes it, with
``synchronous=FULL`` (every commit reaches the disk before the answer leaves); write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of
failing with "database is locked" when a deferred reader tries to upgrade its lock.
PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pydantic_core
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy import exc as exc_module
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import StaticPool

#: Execution option that marks a connection's next transaction as a writer.
WRITE_OPTION = "authgate_write"

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)

#: How SQLite syncs a commit (``PRAGMA synchronous``). In WAL mode ``NORMAL`` skips the fsync
#: at commit: an answered redemption or rotation survives a process crash but can roll back
#: after a power loss, making a spent code redeemable again. ``FULL`` syncs the WAL at every
#: commit, so what was answered stays written.
SqliteSynchronous = Literal["full", "normal"]


def parse_url(url: str) -> URL:
    """Map the URLs users write to the drivers authgate ships with."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.get_driver_name() in ("", "pysqlite"):
        return parsed.set(drivername="sqlite+pysqlite")
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername!r}")


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def sqlite_file(url: URL) -> Path | None:
    """The database file of a file-backed SQLite URL, else None."""
    if url.get_backend_name() != "sqlite" or is_memory_sqlite(url):
        return None
    return Path(str(url.database))


def json_text(value: Any) -> str:
    """The text of a JSON column's value: pydantic's serializer (in Rust, installed with
    pydantic), not ``json.dumps``, which took five times as long on the flow timeline's step
    details, one per token request. Compact, UTF-8 rather than ``\\u`` escapes, keys that are
    not strings turned into strings as ``json.dumps`` does; any JSON reader reads both."""
    return pydantic_core.to_json(value).decode()


def make_engine(url: str | URL, *, sqlite_synchronous: SqliteSynchronous = "full") -> Engine:
    parsed = parse_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(parsed, pool_size=10, max_overflow=20, json_serializer=json_text)
        event.listen(engine, "checkin", _on_checkin)
        event.listen(engine, "checkout", _on_checkout)
        return engine
    return _sqlite_engine(parsed, sqlite_synchronous)


#: A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0


def _on_checkin(dbapi_connection: Any, connection_record: Any) -> None:
    connection_record.info["idle_since"] = time.monotonic()


def _on_checkout(dbapi_connection: Any, connection_record: Any, proxy: Any) -> None:
    """Ping a connection that sat idle (the server may have restarted meanwhile), not every
    one: a ping on each checkout is a round trip per transaction on the hot paths. A dead
    connection is replaced by the pool (``DisconnectionError``); one that dies while busy fails
    its request with a 503 and the pool starts afresh."""
    idle_since = connection_record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
        return
    try:
        _ping(dbapi_connection)
    except Exception as exc:
        raise exc_module.DisconnectionError("idle connection is gone") from exc


def _ping(dbapi_connection: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT 1")
    finally:
        cursor.close()
    dbapi_connection.rollback()


def _sqlite_engine(url: URL, synchronous: SqliteSynchronous) -> Engine:
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False},
        "json_serializer": json_text,
    }
    if is_memory_sqlite(url):
        # One shared connection, or every checkout would see a different empty database.
        kwargs["poolclass"] = StaticPool
    else:
        kwargs["connect_args"]["timeout"] = 5.0
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", partial(_on_sqlite_connect, synchronous))
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(
    synchronous: SqliteSynchronous, dbapi_connection: Any, connection_record: Any
) -> None:
    # Hand transaction control to SQLAlchemy's "begin" event (pysqlite's own is broken).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")
