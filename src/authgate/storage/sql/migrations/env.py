"""Alembic environment for authgate, driven from ``authgate.storage.sql.migrate``.

There is no alembic.ini: ``migrate.py`` builds the Config and hands over a live Engine in
``config.attributes["engine"]``. On PostgreSQL a session-level advisory lock is held around
the run, so several nodes starting at once migrate one after another; the second finds the
schema at head and does nothing. On SQLite, BEGIN IMMEDIATE does the same job.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from authgate.storage.sql.engine import WRITE_OPTION
from authgate.storage.sql.tables import metadata

# Any constant 64-bit key will do, as long as nothing else in the database uses it.
MIGRATION_LOCK_KEY = 0x61757468_67617465  # "authgate"


def _migrate(conn: Connection) -> None:
    # One transaction for the whole run (both backends have transactional DDL); on SQLite it
    # starts with BEGIN IMMEDIATE, which serialises concurrent upgrades like the PG lock does.
    conn.execution_options(**{WRITE_OPTION: True})
    context.configure(
        connection=conn, target_metadata=metadata, compare_type=True, transactional_ddl=True
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(engine: Engine) -> None:
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            _migrate(conn)
            return
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.commit()  # the lock is session-level: it outlives this transaction
        try:
            _migrate(conn)
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()


if context.is_offline_mode():
    raise RuntimeError("authgate migrations run online only (authgate db upgrade)")
_run(context.config.attributes["engine"])
