"""`authgate serve` killed with SIGKILL in the middle of a write burst, on SQLite (a file
database) and on PostgreSQL.

The burst mixes every kind of token issuance at once: client credentials, code exchanges and
refresh rotations, 12 at a time; the process is killed after a third of them were answered,
so requests are in flight inside token issuance when it dies. After a restart on the same
database:

- every token a client received is valid (introspection says active): an answer is only sent
  after its transaction committed;
- no code was redeemed twice: each consumed code made exactly one grant, and a code whose
  answer was lost either redeems once now or is already used (`invalid_grant`), never twice;
- a refresh whose answer was lost either rotates now or is refused, never a 5xx;
- on SQLite, `PRAGMA integrity_check` says ok, after the kill and after the restarted node.

On PostgreSQL a second test kills the node at a known point: inside the redemption's
transaction, after the code was consumed and before the refresh token was written.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.flows import generate_pkce
from tests.procs import (
    PG_URL,
    REDIRECT_URI,
    Deployment,
    Node,
    Processes,
    fresh_pg_database,
    introspect,
    provision,
    sign_in,
    sign_in_and_allow,
    token,
)

pytestmark = pytest.mark.slow

CODES, REFRESHES, SERVICE_CALLS = 12, 8, 40
KILL_AFTER = 20
WORKERS = 12


@dataclass
class Burst:
    """What the clients saw: tokens received, and requests whose answer was lost."""

    received: list[tuple[tuple[str, str], str]] = field(default_factory=list)
    codes_answered: list[str] = field(default_factory=list)
    codes_lost: list[tuple[str, str]] = field(default_factory=list)
    refreshes_lost: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authgate.db'}"
        return
    with fresh_pg_database(PG_URL, "authgate_kill") as url:
        yield url


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    processes = Processes()
    try:
        yield provision(
            database_url,
            tmp_path,
            processes,
            AUTHGATE_REFRESH_REUSE_GRACE_SECONDS="0",
            AUTHGATE_TOKEN_RATE_PER_CLIENT="0",
        )
    finally:
        processes.stop_all()


def integrity(database_url: str) -> str:
    path = database_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def codes_for(node: Node, deployment: Deployment, count: int) -> list[tuple[str, str]]:
    """`count` authorization codes with their PKCE verifiers (one signed-in browser)."""
    found = []
    with httpx.Client(base_url=node.url, follow_redirects=False, timeout=30) as browser:
        sign_in(browser)
        for _ in range(count):
            pkce = generate_pkce()
            code = sign_in_and_allow(
                node, deployment.issuer, deployment.web[0], pkce.challenge, browser=browser
            )
            found.append((code, pkce.verifier))
    return found


def exchange(node: Node, deployment: Deployment, code: str, verifier: str) -> httpx.Response:
    return token(
        node,
        deployment.web,
        grant_type="authorization_code",
        code=code,
        code_verifier=verifier,
        redirect_uri=REDIRECT_URI,
    )


def burst_calls(
    node: Node,
    deployment: Deployment,
    codes: list[tuple[str, str]],
    refresh_tokens: list[str],
    seen: Burst,
) -> list[Callable[[], None]]:
    def record(resp: httpx.Response, creds: tuple[str, str]) -> None:
        with seen.lock:
            seen.answered += 1
            if resp.status_code == 200:
                body = resp.json()
                seen.received.append((creds, body["access_token"]))
                if "refresh_token" in body:
                    seen.received.append((creds, body["refresh_token"]))
            else:
                seen.refused.append(f"{resp.status_code} {resp.text}")

    def service() -> None:
        try:
            resp = token(node, deployment.service, grant_type="client_credentials")
        except httpx.TransportError:
            return
        record(resp, deployment.service)

    def redeem(code: str, verifier: str) -> None:
        try:
            resp = exchange(node, deployment, code, verifier)
        except httpx.TransportError:
            with seen.lock:
                seen.codes_lost.append((code, verifier))
            return
        record(resp, deployment.web)
        with seen.lock:
            seen.codes_answered.append(code)

    def rotate(value: str) -> None:
        try:
            resp = token(node, deployment.web, grant_type="refresh_token", refresh_token=value)
        except httpx.TransportError:
            with seen.lock:
                seen.refreshes_lost.append(value)
            return
        record(resp, deployment.web)

    calls: list[Callable[[], None]] = [service] * SERVICE_CALLS
    # Spread the code exchanges and refreshes through the burst.
    for i, (code, verifier) in enumerate(codes):
        calls.insert(i * 5, partial(redeem, code, verifier))
    for i, value in enumerate(refresh_tokens):
        calls.insert(i * 9 + 2, partial(rotate, value))
    return calls


def test_sigkill_mid_burst_loses_no_token_and_redeems_no_code_twice(
    deployment: Deployment, database_url: str
) -> None:
    node = deployment.start("before")
    codes = codes_for(node, deployment, CODES + REFRESHES)
    seen = Burst()
    refresh_tokens = []
    for code, verifier in codes[CODES:]:
        resp = exchange(node, deployment, code, verifier)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen.received += [(deployment.web, body["access_token"])]
        refresh_tokens.append(body["refresh_token"])
    calls = burst_calls(node, deployment, codes[:CODES], refresh_tokens, seen)

    done = threading.Semaphore(0)

    def run(call: Callable[[], None]) -> None:
        try:
            call()
        finally:
            done.release()

    with ThreadPoolExecutor(WORKERS) as pool:
        for call in calls:
            pool.submit(run, call)
        for _ in range(KILL_AFTER):
            assert done.acquire(timeout=60)
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait(timeout=10)
    assert node.proc.returncode == -signal.SIGKILL
    # Killed mid-burst: answers were lost, and nothing answered was an error.
    assert seen.refused == []
    assert KILL_AFTER <= seen.answered < len(calls), "the burst ended before the kill"
    if database_url.startswith("sqlite"):
        assert integrity(database_url) == "ok"

    node = deployment.start("after")
    with ThreadPoolExecutor(WORKERS) as pool:
        answers = list(pool.map(lambda r: introspect(node, r[0], r[1]), seen.received))
    inactive = [a for a in answers if a.get("active") is not True]
    assert not inactive, f"{len(inactive)} of {len(answers)} tokens received are not active"
    assert_each_consumed_code_made_one_grant(database_url, deployment.web[0])

    for code, verifier in seen.codes_lost:
        first = exchange(node, deployment, code, verifier)
        assert first.status_code in (200, 400), first.text
        if first.status_code == 400:
            assert first.json()["error"] == "invalid_grant", first.text
        again = exchange(node, deployment, code, verifier)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
    for value in seen.refreshes_lost:
        retry = token(node, deployment.web, grant_type="refresh_token", refresh_token=value)
        assert retry.status_code in (200, 400), retry.text
        if retry.status_code == 400:
            assert retry.json()["error"] == "invalid_grant", retry.text
    assert_each_consumed_code_made_one_grant(database_url, deployment.web[0])

    after = token(node, deployment.service, grant_type="client_credentials")
    assert after.status_code == 200, after.text
    assert introspect(node, deployment.service, after.json()["access_token"])["active"] is True
    deployment.processes.stop_all()
    for name in ("before", "after"):
        assert "unexpected error" not in deployment.log(name), deployment.log(name)
    if database_url.startswith("sqlite"):
        assert integrity(database_url) == "ok"


def assert_each_consumed_code_made_one_grant(database_url: str, app_id: str) -> None:
    """Single use, in the database: every consumed code points at its own grant, and the app
    has no grant that no code made."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            consumed = conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT grant_id) FROM authorization_codes "
                    "WHERE app_id = :a AND consumed_at IS NOT NULL"
                ),
                {"a": app_id},
            ).one()
            grants = conn.execute(
                sa.text("SELECT count(*) FROM grants WHERE app_id = :a"), {"a": app_id}
            ).scalar_one()
    finally:
        engine.dispose()
    assert consumed[0] == consumed[1] == grants, (tuple(consumed), grants)


# The redemption, one statement on PostgreSQL (store_tokens._REDEEM_CODE), waiting for a lock.
BLOCKED_REDEMPTION = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND query LIKE 'WITH claimed AS%UPDATE authorization_codes%' AND wait_event_type = 'Lock'"
)


def web_counts(engine: sa.Engine, app_id: str) -> tuple[int, int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM grants WHERE app_id = :a), "
                "(SELECT count(*) FROM access_tokens WHERE app_id = :a), "
                "(SELECT count(*) FROM authorization_codes "
                "WHERE app_id = :a AND consumed_at IS NOT NULL)"
            ),
            {"a": app_id},
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def wait_for(engine: sa.Engine, query: str, expected: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as conn:
            if int(conn.execute(sa.text(query)).scalar_one()) == expected:
                return
        assert time.monotonic() < deadline, f"{query!r} never reached {expected}"
        time.sleep(0.05)


@pytest.mark.postgres
def test_sigkill_inside_the_redemption_transaction_rolls_it_back(tmp_path: Path) -> None:
    """Killed for certain in the middle of issuance: the test holds the client's row `FOR
    UPDATE`, so the node's redemption (one statement in a transaction) has consumed the code and
    written the grant and both tokens, and waits for the share lock of their foreign-key checks
    on that row (checked at the statement's end), when the node is killed. The transaction dies
    with the node's connection: nothing of it stays, and after a restart the code redeems
    exactly once."""
    processes = Processes()
    with fresh_pg_database(PG_URL, "authgate_kill") as url:
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            deployment = provision(url, tmp_path, processes)
            node = deployment.start("before")
            [(code, verifier)] = codes_for(node, deployment, 1)
            before = web_counts(engine, deployment.web[0])
            with engine.connect() as locker, ThreadPoolExecutor(1) as pool:
                held = locker.begin()
                client_row = "SELECT id FROM apps WHERE id = :id FOR UPDATE"
                locker.execute(sa.text(client_row), {"id": deployment.web[0]})
                pending = pool.submit(exchange, node, deployment, code, verifier)
                wait_for(engine, BLOCKED_REDEMPTION, 1)
                os.kill(node.proc.pid, signal.SIGKILL)
                node.proc.wait(timeout=10)
                with pytest.raises(httpx.TransportError):
                    pending.result(timeout=30)
                held.rollback()
            # The orphaned backend finds its client gone once it may go on, and rolls back.
            wait_for(engine, BLOCKED_REDEMPTION, 0)
            wait_for(
                engine,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'WITH claimed AS%UPDATE authorization_codes%' "
                "AND state <> 'idle'",
                0,
            )
            assert web_counts(engine, deployment.web[0]) == before

            node = deployment.start("after")
            redeemed = exchange(node, deployment, code, verifier)
            assert redeemed.status_code == 200, redeemed.text
            body = redeemed.json()
            assert introspect(node, deployment.web, body["access_token"])["active"] is True
            assert introspect(node, deployment.web, body["refresh_token"])["active"] is True
            replay = exchange(node, deployment, code, verifier)
            assert replay.status_code == 400, replay.text
            assert replay.json()["error"] == "invalid_grant"
        finally:
            processes.stop_all()
            engine.dispose()
