"""Fault injection for in-process tests: a database that fails one chosen statement, or every
statement while it is "down", through SQLAlchemy's own event hook. The failure is the
driver's own exception class, so SQLAlchemy and the store handle it as a real one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from authgate.app import Services


@dataclass
class Outage:
    """Makes ``engine`` fail. ``fail_on("INSERT INTO grants")``: the next statement starting so
    (or the ``nth``) raises, after the statements before it in its transaction ran;
    ``down = True``: every statement raises, as when the server is gone."""

    engine: sa.Engine
    down: bool = False
    target: str | None = None
    #: How many statements matching ``target`` still run before the one that fails.
    skip: int = 0
    fired: list[str] = field(default_factory=list)
    #: Runs instead of raising when the target statement comes (e.g. kill the backend for real).
    on_fire: Callable[[sa.Connection], None] | None = None

    def __post_init__(self) -> None:
        event.listen(self.engine, "before_cursor_execute", self._before)

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)

    def fail_on(self, statement: str, *, nth: int = 1) -> None:
        self.target, self.skip, self.fired = statement, nth - 1, []

    def heal(self) -> None:
        self.down, self.target = False, None

    def _before(
        self,
        conn: sa.Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if self.down:
            raise _driver_error(conn, "could not connect to server: Connection refused")
        target = self.target
        if target is None or not " ".join(statement.split()).upper().startswith(target.upper()):
            return
        if self.skip:
            self.skip -= 1
            return
        self.fired.append(target)
        self.target = None
        if self.on_fire is not None:
            self.on_fire(conn)
            return
        raise _driver_error(conn, "disk I/O error")


def _driver_error(conn: sa.Connection, message: str) -> Exception:
    error: Exception = conn.dialect.loaded_dbapi.OperationalError(message)
    return error


@pytest.fixture
def outage(services: Services) -> Iterator[Outage]:
    injected = Outage(services.store.engine)
    yield injected
    injected.remove()
