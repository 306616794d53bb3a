"""The disk fills up under SQLite.

Two ways to run out of space: the database file on a 2 MiB tmpfs that a filler file then fills
(the real thing: SQLite's WAL append fails with SQLITE_FULL), and `PRAGMA max_page_count`
pinned at the database's current size on every connection (SQLite refuses to grow the file,
the same SQLITE_FULL). Where mounting is not allowed, the tmpfs case falls back to the pragma.

When a write fails for want of space, the token request answers 503 `temporarily_unavailable`
(RFC 6749 §5.2 JSON, no-store, `Retry-After`) and the log names the cause ("database or disk
is full"); the failed request wrote nothing (its transaction rolled back); the database passes
`PRAGMA integrity_check`; tokens issued before still introspect as active; and once there is
space again the service issues tokens without a restart.
"""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from authgate.app import Services
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client, issued, make_client
from tests.flows import assert_oauth_error, assert_token_response, token_request

MAX_REQUESTS = 400  # a 2 MiB disk holds far fewer tokens than this


@dataclass
class Disk:
    directory: Path
    mounted: bool
    services: Services | None = None

    def fill(self) -> None:
        if self.mounted:
            self._fill_tmpfs()
        else:
            self._pin_size()

    def free(self) -> None:
        if self.mounted:
            (self.directory / "filler").unlink()
        else:
            assert self.services is not None
            engine = self.services.store.engine
            event.remove(engine, "connect", _pin)
            engine.dispose()

    def _fill_tmpfs(self) -> None:
        chunk = b"\0" * 4096
        with (self.directory / "filler").open("wb", buffering=0) as filler:
            for _ in range(1024):  # 4 MiB at most: more than the disk holds
                try:
                    filler.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    return
        pytest.fail("the 2 MiB tmpfs never filled")

    def _pin_size(self) -> None:
        assert self.services is not None
        engine = self.services.store.engine
        event.listen(engine, "connect", _pin)
        engine.dispose()  # every later connection is a new one, pinned


def _pin(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {int(pages)}")
    finally:
        cursor.close()


@pytest.fixture(params=["tmpfs", "max_page_count"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    directory = tmp_path / "disk"
    directory.mkdir()
    if request.param == "max_page_count":
        yield Disk(directory, mounted=False)
        return
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    try:
        yield Disk(directory, mounted=mount.returncode == 0)
    finally:
        if mount.returncode == 0:
            subprocess.run(["umount", "-l", str(directory)], check=True, timeout=30)


@pytest.fixture
def database_url(disk: Disk, sqlite_template: Path) -> str:
    target = disk.directory / "authgate.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


def integrity(database_url: str) -> str:
    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def introspect(client: TestClient, caller: Client, value: str) -> dict[str, Any]:
    assert caller.secret is not None
    resp = client.post("/oauth2/introspect", data={"token": value}, auth=(caller.id, caller.secret))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_disk_full_answers_503_corrupts_nothing_and_recovers(
    client: TestClient,
    services: Services,
    disk: Disk,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    clock: MovableClock,
) -> None:
    disk.services = services
    service = make_client(
        services,
        name="Service",
        grant_types=["client_credentials"],
        service_access={ISSUER: []},
    )
    assert service.secret is not None
    creds = (service.id, service.secret)
    data = {"grant_type": "client_credentials"}
    received = [assert_token_response(token_request(client, data, basic=creds))["access_token"]]

    disk.fill()
    refused = None
    with caplog.at_level(logging.WARNING, logger="authgate.errors"):
        for _ in range(MAX_REQUESTS):
            resp = token_request(client, data, basic=creds)
            if resp.status_code != 200:
                refused = resp
                break
            received.append(assert_token_response(resp)["access_token"])
    assert refused is not None, f"{MAX_REQUESTS} tokens fitted on a full disk"
    assert_oauth_error(refused, 503, "temporarily_unavailable")
    assert int(refused.headers["retry-after"]) > 0
    causes = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert causes and "database or disk is full" in causes[0], causes
    assert integrity(database_url) == "ok"
    # The refused request left no row: the database holds exactly the tokens handed out.
    assert issued(services, service.id).access == len(received)
    # Readiness says so: the node still reads, but cannot write (test_readiness.py).
    clock.advance(seconds=2)
    ready = client.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["failed"] == ["writable"]
    assert ready.json()["checks"]["database"] == "ok"

    disk.free()
    clock.advance(seconds=6)  # past the 5 s a request's database failure keeps it unready
    assert client.get("/readyz").json() == {"status": "ok"}
    after = assert_token_response(token_request(client, data, basic=creds))["access_token"]
    received.append(after)
    for value in received:
        assert introspect(client, service, value)["active"] is True
    assert issued(services, service.id).access == len(received)
    assert integrity(database_url) == "ok"
