"""Schema migrations, run programmatically through Alembic (no alembic.ini for users).

``upgrade`` brings a database to the newest revision, ``downgrade`` takes it back to a given
one, ``schema_status`` compares what a database has with what this code expects.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, exc

from authgate.core.ports import StoreUnavailableError
from authgate.storage.sql.engine import make_engine, parse_url, sqlite_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

T = TypeVar("T")

SchemaState = Literal["up_to_date", "uninitialised", "behind", "ahead"]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    current: str | None
    head: str
    state: SchemaState


# Alembic's ``context`` is a module global: two runs in one process must take turns. Runs in
# different processes are serialised by the database (see migrations/env.py).
_ALEMBIC_RUN = threading.Lock()


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations directory has no revision"
    return head


def upgrade(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision (creating a SQLite file's folder)."""
    path = sqlite_file(parse_url(url))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    _with_engine(url, upgrade_engine)


def upgrade_engine(engine: Engine) -> None:
    """Migrate through an existing engine (the only way into an in-memory database)."""
    with _ALEMBIC_RUN:
        command.upgrade(alembic_config(engine), "head")


def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (``"base"`` drops every table)."""

    def run(engine: Engine) -> None:
        with _ALEMBIC_RUN:
            command.downgrade(alembic_config(engine), revision)

    _with_engine(url, run)


def schema_status(url: str) -> SchemaStatus:
    """Where the database stands against this code's migrations; never creates anything."""
    head = head_revision()
    path = sqlite_file(parse_url(url))
    if path is not None and not path.exists():
        return SchemaStatus(current=None, head=head, state="uninitialised")
    current = _with_engine(url, _current_revision)
    return SchemaStatus(current=current, head=head, state=_state(current, head))


def _state(current: str | None, head: str) -> SchemaState:
    if current is None:
        return "uninitialised"
    if current == head:
        return "up_to_date"
    scripts = ScriptDirectory.from_config(alembic_config())
    known = {script.revision for script in scripts.walk_revisions()}
    # A revision we do not know was written by newer code: this code must not touch it.
    return "behind" if current in known else "ahead"


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _with_engine(url: str, run: Callable[[Engine], T]) -> T:
    engine = make_engine(url)
    try:
        with _unavailable():
            return run(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Database errors leave storage as StoreUnavailableError (core.ports), never raw."""
    try:
        yield
    except exc.SQLAlchemyError as error:
        raise StoreUnavailableError(str(getattr(error, "orig", None) or error)) from error
