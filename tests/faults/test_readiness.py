"""Readiness tells the truth: a node that cannot write is not ready.

A read-only database (SQLite's ``query_only``; PostgreSQL's ``default_transaction_read_only``,
as on a standby a node was wrongly pointed at) still answers every read, so the database check
passes, but every token the node would issue fails. ``/readyz`` answers 503 with the
``writable`` check failed until writes work again, without a restart. The probe is a real
committed write, at most once a second per process however often ``/readyz`` is called.
(The full disk is in test_disk_full.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from starlette.testclient import TestClient

from authgate.app import Services
from tests.clock import MovableClock
from tests.conftest import ISSUER, PG_URL, make_client
from tests.flows import assert_oauth_error, assert_token_response, token_request

NOT_WRITABLE = {
    "status": "unavailable",
    "failed": ["writable"],
    "checks": {"database": "ok", "writable": "failed", "schema": "ok", "signing_key": "ok"},
}


def _query_only(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


class ReadOnly:
    """Makes the test's database refuse writes on every new connection, and lifts it."""

    def __init__(self, services: Services, database_url: str) -> None:
        self.engine = services.store.engine
        self.database_url = database_url
        self.name = sa.make_url(database_url).database

    def _pg(self, statement: str) -> None:
        assert PG_URL is not None
        admin = sa.create_engine(
            PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(statement.format(name=self.name)))
        finally:
            admin.dispose()

    def on(self) -> None:
        if self.database_url.startswith("postgresql"):
            self._pg('ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        else:
            event.listen(self.engine, "connect", _query_only)
        self.engine.dispose()  # every later connection is a new one, read-only

    def off(self) -> None:
        if self.database_url.startswith("postgresql"):
            self._pg('ALTER DATABASE "{name}" RESET default_transaction_read_only')
        else:
            event.remove(self.engine, "connect", _query_only)
        self.engine.dispose()


@pytest.fixture
def read_only(services: Services, database_url: str) -> Iterator[ReadOnly]:
    switch = ReadOnly(services, database_url)
    yield switch
    if switch.database_url.startswith("postgresql"):
        switch._pg('ALTER DATABASE "{name}" RESET default_transaction_read_only')


def probes(services: Services) -> int:
    with services.store.engine.connect() as conn:
        sql = "SELECT coalesce(sum(count), 0) FROM rate_limits WHERE key LIKE 'readiness:%'"
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_read_only_database_is_not_ready_until_writes_work(
    client: TestClient, services: Services, clock: MovableClock, read_only: ReadOnly
) -> None:
    service = make_client(services, grant_types=["client_credentials"], service_access={ISSUER: []})
    creds = (service.id, service.secret or "")
    data = {"grant_type": "client_credentials"}
    assert client.get("/readyz").json() == {"status": "ok"}

    read_only.on()
    clock.advance(seconds=2)
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.json() == NOT_WRITABLE
    assert resp.headers["cache-control"] == "no-store"
    # What readiness warns of: reads answer, the token endpoint cannot issue.
    assert client.get("/.well-known/oauth-authorization-server").status_code == 200
    assert_oauth_error(token_request(client, data, basic=creds), 503, "temporarily_unavailable")
    assert client.get("/healthz").status_code == 200  # alive: do not restart it

    read_only.off()
    clock.advance(seconds=2)  # the probe writes again, but a request failed 2 s ago
    assert client.get("/readyz").json() == NOT_WRITABLE
    clock.advance(seconds=4)  # past the 5 s that a request's database failure counts
    assert client.get("/readyz").json() == {"status": "ok"}
    assert_token_response(token_request(client, data, basic=creds))


def test_the_write_probe_runs_at_most_once_a_second(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    before = probes(services)
    for _ in range(50):
        assert client.get("/readyz").status_code == 200
    assert probes(services) == before + 1
    clock.advance(seconds=2)
    for _ in range(10):
        assert client.get("/readyz").status_code == 200
    assert probes(services) == before + 2


def test_a_failed_write_probe_is_cached_too(
    client: TestClient, services: Services, clock: MovableClock, read_only: ReadOnly
) -> None:
    read_only.on()
    clock.advance(seconds=2)
    for _ in range(20):
        resp = client.get("/readyz")
        assert resp.status_code == 503 and resp.json() == NOT_WRITABLE
    read_only.off()
    assert client.get("/readyz").status_code == 503  # the same second: the last outcome
    clock.advance(seconds=2)
    assert client.get("/readyz").status_code == 200
