"""Backends for the storage contract suite: the in-memory fake, SQLite and PostgreSQL.

PostgreSQL runs only when ``AUTHGATE_TEST_POSTGRES_URL`` names a superuser on a throwaway
cluster (``scripts/pg.sh start``); each test module gets its own database, dropped afterwards.
Without the URL the postgres cases are skipped, unless ``AUTHGATE_REQUIRE_POSTGRES=1`` (CI),
in which case they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from authgate.storage import open_store, upgrade
from authgate.storage.sql.tables import metadata
from tests.fakes import InMemoryStore

BACKENDS = ["fake", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.environ.get("AUTHGATE_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("AUTHGATE_REQUIRE_POSTGRES") == "1":
        pytest.fail("AUTHGATE_REQUIRE_POSTGRES=1 but AUTHGATE_TEST_POSTGRES_URL is not set")
    pytest.skip("AUTHGATE_TEST_POSTGRES_URL is not set (scripts/pg.sh start DIR PORT)")


class PostgresDatabases:
    """Creates uniquely named databases on the test cluster and drops them."""

    def __init__(self, admin_url: str) -> None:
        self._admin_url = make_url(admin_url).set(drivername="postgresql+psycopg")
        self._engine = create_engine(self._admin_url, isolation_level="AUTOCOMMIT")

    def create(self) -> str:
        name = f"authgate_test_{uuid.uuid4().hex[:16]}"
        with self._engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return self._admin_url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self._engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self._engine.dispose()


@pytest.fixture(scope="session")
def postgres_databases(postgres_admin_url: str) -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(postgres_admin_url)
    yield databases
    databases.close()


@pytest.fixture
def fresh_postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """An empty database of its own for one test."""
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


@pytest.fixture(scope="module")
def migrated_postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """One migrated database per test module; ``store`` empties it before each test."""
    url = postgres_databases.create()
    upgrade(url)
    yield url
    postgres_databases.drop(url)


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of the parametrised SQL backend (``sqlite`` or ``postgres``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'authgate.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "fake":
        yield InMemoryStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'authgate.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("migrated_postgres_url")
    sql_store = open_store(url)
    if request.param == "postgres":
        names = ", ".join(table.name for table in metadata.sorted_tables)
        with sql_store.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} CASCADE"))
    yield sql_store
    sql_store.close()
