"""Fault injection for in-process tests, at the database driver: a database that fails one
chosen statement (or the COMMIT), or everything while it is "down".

The pool's connections are wrapped as the driver hands them out (SQLAlchemy's ``do_connect``
event): the sqlite3 or psycopg connection, and each cursor it opens, check every statement
against the rule before the driver runs it, and raise the driver's own ``OperationalError``
when it matches. So the store's hot paths, which run on the DBAPI connection
(``SqlBase._raw_transaction``, the group commit of ``writer_lock.py``, PostgreSQL's
one-statement redemption and rotation), meet the failure exactly where a real outage meets
them, and go through their own error handling; SQLAlchemy's ``Connection`` meets it in the
same place (its ``cursor.execute``). Nothing listens to SQLAlchemy's cursor events, which
would send the hot paths to their ordinary form (the ``outage`` fixture checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from authgate.app import Services
from authgate.config import Settings

#: What a statement raises while the database is down, per driver.
DOWN = "could not connect to server: Connection refused"


@dataclass
class Outage:
    """Makes ``engine``'s driver fail. ``fail_on("INSERT INTO grants")``: the next statement
    starting so (or the ``nth``) raises, after the statements before it in its transaction
    ran; ``fail_on("COMMIT")``: the next ``connection.commit()`` raises, nothing committed;
    ``down = True``: every statement, commit and new connection raises, as when the server
    is gone."""

    engine: sa.Engine
    down: bool = False
    target: str | None = None
    #: How many statements matching ``target`` still run before the one that fails.
    skip: int = 0
    fired: list[str] = field(default_factory=list)
    #: The message of the injected error (SQLite's own words for an I/O failure by default).
    message: str = "disk I/O error"
    #: Runs instead of raising when the target statement comes, with the DBAPI connection
    #: (e.g. kill the backend for real, so that the driver itself fails the statement).
    on_fire: Callable[[Any], None] | None = None
    #: Reads what the database holds, from a connection of its own: called just before the
    #: target statement fails, into ``at_failure``. A failed request must leave the database
    #: as it was then: its open transaction rolled back, nothing after it run.
    read_committed: Callable[[], Any] | None = None
    at_failure: Any = None
    #: Every statement the driver was asked to run (normalized), for the tests' own checks.
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        event.listen(self.engine, "do_connect", self._connect)
        self.engine.dispose()  # the pooled connections were not wrapped

    def remove(self) -> None:
        event.remove(self.engine, "do_connect", self._connect)
        self.engine.dispose()

    def fail_on(self, statement: str, *, nth: int = 1) -> None:
        self.target, self.skip, self.fired = statement, nth - 1, []

    def heal(self) -> None:
        self.down, self.target = False, None

    def error(self, message: str) -> Exception:
        error: Exception = self.engine.dialect.loaded_dbapi.OperationalError(message)
        return error

    def check(self, statement: str, raw: Any) -> None:
        """Raise the driver's error if ``statement`` is to fail (called by the wrappers)."""
        if self.down:
            raise self.error(DOWN)
        normalized = " ".join(statement.split())
        self.seen.append(normalized)
        target = self.target
        if target is None or not normalized.upper().startswith(target.upper()):
            return
        if self.skip:
            self.skip -= 1
            return
        self.fired.append(target)
        self.target = None
        if self.read_committed is not None:
            self.at_failure = self.read_committed()
        if self.on_fire is not None:
            self.on_fire(raw)
            return
        raise self.error(self.message)

    def _connect(
        self, dialect: sa.Dialect, record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> FaultyConnection:
        if self.down:
            raise self.error(DOWN)
        return FaultyConnection(dialect.connect(*cargs, **cparams), self)


class FaultyConnection:
    """A DBAPI connection whose statements and COMMIT pass ``Outage.check`` first."""

    __slots__ = ("_outage", "_raw")

    def __init__(self, raw: Any, outage: Outage) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_outage", outage)

    def cursor(self, *args: Any, **kwargs: Any) -> FaultyCursor:
        return FaultyCursor(self._raw.cursor(*args, **kwargs), self)

    def execute(self, statement: str, *args: Any, **kwargs: Any) -> Any:
        self._outage.check(statement, self._raw)
        return self._raw.execute(statement, *args, **kwargs)

    def commit(self) -> None:
        self._outage.check("COMMIT", self._raw)
        self._raw.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._raw, name, value)


class FaultyCursor:
    """A DBAPI cursor whose statements pass ``Outage.check`` first."""

    __slots__ = ("_conn", "_raw")
    _conn: FaultyConnection

    def __init__(self, raw: Any, conn: FaultyConnection) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_conn", conn)

    def execute(self, statement: str, *args: Any, **kwargs: Any) -> FaultyCursor:
        self._conn._outage.check(statement, self._conn._raw)
        self._raw.execute(statement, *args, **kwargs)
        return self

    def executemany(self, statement: str, *args: Any, **kwargs: Any) -> Any:
        self._conn._outage.check(statement, self._conn._raw)
        return self._raw.executemany(statement, *args, **kwargs)

    @property
    def connection(self) -> FaultyConnection:
        return self._conn

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._raw, name, value)


#: The tables the token, revocation and consent paths write.
TABLES = (
    "apps",
    "app_secrets",
    "authorization_codes",
    "grants",
    "access_tokens",
    "refresh_tokens",
    "audit_log",
    "rate_limits",
)

Committed = Callable[[], dict[str, list[str]]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Without the flow timeline: its writer's batches run on a thread of their own, at a time
    of their own, so their statements would land anywhere in a request's list and take its
    injected failure. The writer meets faults in ``test_flow_writer_faults.py``."""
    return settings.model_copy(update={"flows_enabled": False})


@pytest.fixture
def committed(database_url: str) -> Iterator[Committed]:
    """Every row of ``TABLES``, as another connection sees them (committed rows only)."""
    engine = sa.create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://"), poolclass=sa.NullPool
    )

    def read() -> dict[str, list[str]]:
        with engine.connect() as conn:
            return {
                table: sorted(
                    repr(tuple(row)) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
                )
                for table in TABLES
            }

    yield read
    engine.dispose()


@pytest.fixture
def outage(services: Services, committed: Committed) -> Iterator[Outage]:
    engine = services.store.engine
    dispatch = engine.dispatch
    assert not (dispatch.before_cursor_execute or dispatch.after_cursor_execute), (
        "a cursor event listener sends the hot paths to their ordinary form"
    )
    injected = Outage(engine, read_committed=committed)
    yield injected
    injected.remove()


@pytest.fixture
def real_kill(database_url: str, outage: Outage) -> Iterator[None]:
    """On PostgreSQL, the failing statement meets a backend that was really terminated."""
    if not database_url.startswith("postgresql"):
        yield
        return
    admin = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))

    def terminate(raw: Any) -> None:
        pid = raw.info.backend_pid
        with admin.connect() as other:
            killed = other.execute(sa.text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
            assert killed.scalar_one() is True

    outage.on_fire = terminate
    yield
    admin.dispose()
