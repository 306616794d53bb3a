"""Password hashing cannot starve the server (issue 18, item 3).

In process, with a hasher double that blocks: at most ``concurrency`` checks run and ``queue``
wait; one more is refused at once; an operator's new password waits instead of being refused;
checks run on threads of their own at the lowest CPU priority; by default one fewer check
runs at once than the process has cores, so hashing never has them all.

Against a real `authgate serve` process (SQLite, production Argon2id parameters with a pause
added to each check by ``slow_hasher_serve.py``, bounds of 2 running and 8 waiting): 64
threads of wrong sign-ins, more than the server's request threads. The sign-in page, the
metadata and a known client's token request keep answering well within a bound; the
overflow is 429 with ``Retry-After`` at once and leaves no audit event (no password was
checked); every check that ran is audited as a failed sign-in; the refusals are counted in the
metrics; the right password still signs in. Bounded: at most 1500 requests, ~8 s.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services, build_services
from authgate.config import Settings
from authgate.core.models import AuditQuery
from authgate.crypto import passwords
from tests.availability.attack import ThreadClients, running, timed
from tests.conftest import Account
from tests.procs import (
    ROOT,
    Deployment,
    Node,
    Processes,
    provision,
    sign_in,
    token,
    wait_ready,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# Generous: with the checks on the request threads, /login waited ~10 s here (40 threads
# queued behind checks of 0.5 s, two at a time).
WELL_BEHAVED_BOUND = 3.0
AT_ONCE = 2.0
ATTACKERS = 64
MAX_REQUESTS = 1500
ATTACK_SECONDS = 6.0
BUSY_TEXT = "Too many sign-ins are being checked right now"


class BlockingHasher:
    """An Argon2 double whose checks and hashes block until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.lock = threading.Lock()

    def _block(self) -> None:
        with self.lock:
            self.running += 1
        self.release.wait(timeout=10)
        with self.lock:
            self.running -= 1

    def verify(self, password_hash: str, password: str) -> bool:
        self._block()
        return False

    def hash(self, password: str) -> str:
        self._block()
        return "$argon2id$double"


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition(), what


def test_the_queue_refuses_at_once_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = BlockingHasher()
    monkeypatch.setattr(passwords, "_HASHER", hasher)
    monkeypatch.setattr(passwords, "_GATE", passwords._Gate(2, 3))
    before = passwords.refusals
    outcomes: list[object] = []

    def check() -> None:
        try:
            outcomes.append(passwords.verify_password("$argon2id$stored", "wrong"))
        except passwords.HashingBusyError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=check) for _ in range(5)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: hasher.running == 2 and passwords._GATE.admitted == 5, "2 run, 3 wait")
        started = time.monotonic()
        with pytest.raises(passwords.HashingBusyError):
            passwords.verify_password("$argon2id$stored", "wrong")
        assert time.monotonic() - started < AT_ONCE
        assert passwords.refusals == before + 1
        # Setting a password (an operator's act) waits its turn rather than being refused.
        setter = threading.Thread(target=passwords.hash_password, args=("new password",))
        setter.start()
        wait_for(lambda: passwords._GATE.admitted == 6, "the new password waits")
    finally:
        hasher.release.set()
        for thread in threads:
            thread.join(timeout=10)
    setter.join(timeout=10)
    assert outcomes == [False] * 5  # every admitted check ran, and failed as wrong
    assert passwords._GATE.admitted == 0


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_password_checks_run_at_the_lowest_cpu_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check takes only the CPU time the rest of the server leaves (and Argon2's own lane
    threads inherit the priority); the caller's thread keeps its own."""
    seen: list[tuple[int, str]] = []

    class Recorder:
        def verify(self, password_hash: str, password: str) -> bool:
            me = threading.current_thread()
            seen.append((os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), me.name))
            return False

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    monkeypatch.setattr(passwords, "_HASHER", Recorder())
    monkeypatch.setattr(passwords, "_GATE", passwords._Gate(1, 0))
    assert passwords.verify_password("$argon2id$stored", "wrong") is False
    assert seen == [(passwords.NICE, "authgate-hash_0")]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


@pytest.fixture
def node(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[Deployment, Node]]:
    database = tmp_path / "authgate.db"
    database.write_bytes(sqlite_template.read_bytes())
    processes = Processes()
    try:
        deployment = provision(
            f"sqlite:///{database}",
            tmp_path,
            processes,
            # The per-address and per-username limits would refuse the attack first (429):
            # off, so that the hashing queue's own bound is what is tested.
            AUTHGATE_SIGN_IN_RATE_PER_IP="0",
            AUTHGATE_SIGN_IN_ATTEMPTS_PER_USER="0",
            AUTHGATE_PASSWORD_HASH_CONCURRENCY="2",
        )
        # The real server, with each password check slowed (slow_hasher_serve.py): a few
        # dozen sign-ins then outlast the request threads on any machine.
        env = {
            **deployment.env,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "SLOW_HASH_SECONDS": "0.5",
        }
        args = [sys.executable, "-m", "tests.availability.slow_hasher_serve", "serve"]
        args += ["--host", "127.0.0.1", "--port", str(deployment.port)]
        server = Node(deployment.issuer, processes.start(args, env, tmp_path, "hashing"))
        wait_ready(server, "hashing")
        yield deployment, server
    finally:
        processes.stop_all()


def failed_sign_ins(deployment: Deployment) -> int:
    engine = sa.create_engine(deployment.env["AUTHGATE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM audit_log WHERE action = 'user.login_failed'"
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.slow
def test_wrong_sign_ins_saturating_the_queue_delay_nothing_else(
    node: tuple[Deployment, Node],
) -> None:
    deployment, server = node
    audited_before = failed_sign_ins(deployment)
    with httpx.Client(base_url=server.url, timeout=60) as form_page:
        page = form_page.get("/login")
        match = CSRF.search(page.text)
        assert match is not None
        csrf_cookie = dict(form_page.cookies)
    csrf = match.group(1)

    attacker = ThreadClients(base_url=server.url, timeout=60, cookies=csrf_cookie)

    def wrong_sign_in(n: int) -> httpx.Response:
        form = {"username": "admin", "password": f"wrong guess {n}", "csrf_token": csrf}
        return attacker.get().post("/login", data=form)

    well_behaved: list[tuple[str, float]] = []
    with (
        attacker,
        httpx.Client(base_url=server.url, timeout=60) as browser,
        running(wrong_sign_in, workers=ATTACKERS, max_requests=MAX_REQUESTS) as attack,
    ):
        time.sleep(0.5)  # the attack has filled the queue
        ends = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < ends:
            seconds, page = timed(lambda: browser.get("/login"))
            assert page.status_code == 200, page.text
            assert 'name="password"' in page.text
            well_behaved.append(("login", seconds))
            seconds, answer = timed(
                lambda: token(server, deployment.service, grant_type="client_credentials")
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["token_type"] == "Bearer"
            well_behaved.append(("token", seconds))
            seconds, meta = timed(lambda: browser.get("/.well-known/oauth-authorization-server"))
            assert meta.status_code == 200
            well_behaved.append(("metadata", seconds))
            time.sleep(0.2)

    assert not attack.errors, attack.errors[:3]
    answers = attack.answers
    assert len(well_behaved) >= 9
    slowest = max(seconds for _, seconds in well_behaved)
    assert slowest < WELL_BEHAVED_BOUND, sorted(well_behaved, key=lambda w: -w[1])[:5]

    refused = [a for a in answers if a.status == 429]
    checked = [a for a in answers if a.status == 401]
    assert len(refused) + len(checked) == len(answers), {a.status for a in answers}
    assert refused and checked, (len(refused), len(checked))
    for busy in refused:
        assert busy.headers["retry-after"] == "1"
        assert BUSY_TEXT in busy.text
        assert "authgate_session" not in " ".join(busy.headers.get_list("set-cookie"))
    assert max(a.seconds for a in refused) < AT_ONCE
    assert all("Incorrect username or password." in a.text for a in checked)
    # Every check that ran is audited; a refused one checked nothing and left nothing.
    assert failed_sign_ins(deployment) - audited_before == len(checked)

    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    found = re.search(r"^authgate_password_checks_refused_total ([0-9.e+]+)$", metrics, re.M)
    assert found is not None and float(found.group(1)) == len(refused)

    with httpx.Client(base_url=server.url, timeout=60, follow_redirects=False) as user:
        sign_in(user)  # the right password still signs in (303 and a session)
        assert "authgate_session" in user.cookies


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_by_default_hashing_leaves_a_core_to_the_other_requests(cpus: int, expected: int) -> None:
    """One fewer check at once than the cores the process may run on, at least one: on two
    cores a flood of sign-ins hashes on one and the token endpoint and pages keep the other."""
    assert passwords.default_concurrency(cpus) == expected


def test_the_server_takes_the_default_from_its_cores(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setattr(passwords, "_GATE", passwords._Gate(7, 7))
    assert settings.password_hash_concurrency == 0  # the default: chosen at start
    build_services(settings).store.close()
    cores = len(os.sched_getaffinity(0))
    assert passwords._GATE.concurrency == max(1, cores - 1) < max(2, cores)
    assert passwords._GATE.queue == passwords.DEFAULT_QUEUE


def test_a_sign_in_refused_as_busy_counts_and_looks_up_nothing(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, services: Services, alice: Account
) -> None:
    """With every place taken, a sign-in is refused before anything else: it is not counted
    against its source or username (no rate-limit row is written), the account is not looked
    up and nothing is audited; the refusal is counted in the metrics. Once a place is free,
    the next attempt is counted and checked as usual."""
    hasher = BlockingHasher()
    monkeypatch.setattr(passwords, "_HASHER", hasher)
    monkeypatch.setattr(passwords, "_GATE", passwords._Gate(1, 0))
    lookups: list[str] = []
    real_lookup = services.store.get_user_by_username

    def counted_lookup(name: str) -> object:
        lookups.append(name)
        return real_lookup(name)

    monkeypatch.setattr(services.store, "get_user_by_username", counted_lookup)
    page = client.get("/login")
    csrf = CSRF.search(page.text)
    assert csrf is not None
    form = {"username": alice.user.username, "password": "wrong", "csrf_token": csrf.group(1)}
    holder = threading.Thread(target=passwords.verify_password, args=("$argon2id$x", "pw"))
    holder.start()
    try:
        wait_for(lambda: hasher.running == 1, "the one place is taken")
        before = passwords.refusals
        resp = client.post("/login", data=form, follow_redirects=False)
        assert resp.status_code == 429, resp.text
        assert resp.headers["retry-after"] == "1"
        assert BUSY_TEXT in resp.text
        assert passwords.refusals == before + 1
        assert lookups == []
        assert rate_limit_rows(services) == {}
        assert audited(services, "user.login_failed") == 0
        fresh = CSRF.search(resp.text)  # the page shown again carries a fresh form token
        assert fresh is not None
        form["csrf_token"] = fresh.group(1)
    finally:
        hasher.release.set()
        holder.join(timeout=10)
    resp = client.post("/login", data=form, follow_redirects=False)
    assert resp.status_code == 401, resp.text
    assert lookups == [alice.user.username]
    counted = rate_limit_rows(services)  # per source, per source and username, …
    assert counted and max(counted.values()) == 1, counted
    assert audited(services, "user.login_failed") == 1


def rate_limit_rows(services: Services) -> dict[str, int]:
    with services.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT key, count FROM rate_limits WHERE key LIKE 'sign_in:%'")
        )
        return {key: int(count) for key, count in rows}


def audited(services: Services, action: str) -> int:
    events, _ = services.store.list_audit(AuditQuery(action=action, limit=100))
    return len(events)
