"""A source refused in a loop is slowed while others are served (web/fairness.py).

Against a real `authgate serve` (SQLite) that allows one client registration per address per
hour: sixteen workers at 127.0.0.20, another address of this host as an attacker's would be,
register in a loop and are refused (429). Alone on the server, they get their refusals at
once, hundreds a second; once a service at 127.0.0.1 asks for tokens beside them, each
refusal comes after the delay (1 s) and the source has four turns, so the loop gets a handful
of answers a second while every token request of the service is answered, none of them held
for a delay. The refusals are the same answer either way, and nothing was registered.
Bounded: 16 workers, 2 phases of a few seconds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import Deployment, sqlite_node

pytestmark = pytest.mark.slow

ATTACKER = "127.0.0.20"
WORKERS = 16
DELAY = 1.0
PER_SOURCE = 4
PHASE = 3.0
REGISTRATION = {"redirect_uris": ["http://127.0.0.1:9876/callback"], "client_name": "Looping"}


@pytest.fixture
def node(tmp_path: Path, sqlite_template: Path) -> Iterator[Deployment]:
    yield from sqlite_node(
        sqlite_template,
        tmp_path,
        "delay",
        AUTHGATE_REGISTRATION_RATE_PER_IP="1",
        AUTHGATE_TOKEN_RATE_PER_CLIENT="0",  # the service asks as fast as it is answered
        AUTHGATE_HTTP_REFUSAL_DELAY_SECONDS=str(DELAY),
        AUTHGATE_HTTP_IN_FLIGHT_PER_SOURCE=str(PER_SOURCE),
    )


def loop(deployment: Deployment, seconds: float) -> list[tuple[float, httpx.Response]]:
    """``WORKERS`` threads at ``ATTACKER`` register for ``seconds``: (latency, answer) each."""
    answers: list[tuple[float, httpx.Response]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        transport = httpx.HTTPTransport(local_address=ATTACKER)
        with httpx.Client(base_url=deployment.issuer, transport=transport, timeout=60) as client:
            while time.monotonic() < deadline:
                started = time.monotonic()
                resp = client.post("/oauth2/register", json=REGISTRATION)
                with lock:
                    answers.append((time.monotonic() - started, resp))

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def assert_refused(resp: httpx.Response) -> None:
    assert resp.status_code == 429, resp.text
    body = resp.json()
    assert body["error"] == "temporarily_unavailable"
    assert body["error_description"].startswith("Too many client registrations from this address")
    assert int(resp.headers["retry-after"]) > 0


def apps(deployment: Deployment) -> int:
    database = deployment.env["AUTHGATE_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT count(*) FROM apps").fetchone()[0])


def test_a_source_refused_in_a_loop_is_slowed_while_another_is_served(
    node: Deployment,
) -> None:
    transport = httpx.HTTPTransport(local_address=ATTACKER)
    with httpx.Client(base_url=node.issuer, transport=transport, timeout=30) as client:
        assert client.post("/oauth2/register", json=REGISTRATION).status_code == 201
    registered = apps(node)
    time.sleep(1.2)  # the readiness checks at 127.0.0.1 are over a second old

    # Alone: every refusal at once.
    alone = loop(node, 1.0)
    for _, resp in alone:
        assert_refused(resp)
    assert len(alone) >= 60, len(alone)
    assert max(latency for latency, _ in alone) < DELAY

    # With a service asking for tokens at another address.
    stop = threading.Event()
    served: list[tuple[float, httpx.Response]] = []

    def service() -> None:
        with httpx.Client(base_url=node.issuer, auth=node.service, timeout=60) as client:
            while not stop.is_set():
                started = time.monotonic()
                resp = client.post("/oauth2/tokens", data={"grant_type": "client_credentials"})
                served.append((time.monotonic() - started, resp))

    time.sleep(1.2)  # the loop's last requests are over a second old: nothing left of them
    thread = threading.Thread(target=service)
    thread.start()
    try:
        while not served:
            time.sleep(0.05)
        crowded = loop(node, PHASE)
    finally:
        stop.set()
        thread.join(timeout=60)

    for _, resp in crowded:
        assert_refused(resp)
    # Four turns, each answered no sooner than the delay: a few answers a second, not hundreds
    # (and the one each worker had under way when the phase ended).
    assert len(crowded) <= PER_SOURCE * (PHASE / DELAY + 1) + WORKERS, len(crowded)
    assert min(latency for latency, _ in crowded) >= DELAY * 0.9
    assert len(alone) >= 3 * len(crowded)
    # The service was answered throughout, and never waited for a delay.
    assert served and all(r.status_code == 200 and "access_token" in r.json() for _, r in served), {
        r.status_code: r.text for _, r in served if r.status_code != 200
    }
    assert max(latency for latency, _ in served) < DELAY, max(latency for latency, _ in served)

    assert apps(node) == registered  # nothing registered by the loop
    metrics = httpx.get(f"{node.issuer}/metrics", timeout=30).text
    delayed = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("authgate_refusals_delayed_total ")
    )
    assert delayed >= len(crowded)
