"""Fetching client documents cannot starve the server (issue 18, item 2).

Against a real `authgate serve` process (SQLite): token or authorization requests name fresh
metadata-document URLs (a fresh URL each, so no failure is remembered) on a local server that
accepts connections and never answers. While dozens of them run, the known service's token
request, a cached metadata-document client's token request and the sign-in page answer well
within the fetch deadline (they would wait behind the fetches if those ran on the request
threads), the saturating requests that are not fetched get ``invalid_client`` "could not be
fetched now" at once, the few that are fetched end at the deadline, and the refusals are
counted in the metrics.

Bounded: 32 attacking threads, a pause after each answer, at most 1500 requests, ~8 s each.
"""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.availability.attack import Answer, ThreadClients, running, timed
from tests.fetch.server import DocumentServer, Route, serve
from tests.procs import REDIRECT_URI, Deployment, Node, Processes, provision, token

pytestmark = pytest.mark.slow

FETCH_DEADLINE = 5.0  # AUTHGATE_FETCH_TIMEOUT_SECONDS (the default)
# Generous, but below the fetch deadline: an answer within it waited behind no fetch.
WELL_BEHAVED_BOUND = 3.0
AT_ONCE = 2.5
BUSY = "could not be fetched now"
TIMED_OUT = "did not answer in time"
ATTACKERS = 32
MAX_REQUESTS = 1500
ATTACK_SECONDS = FETCH_DEADLINE + 3


@contextmanager
def stall_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()


@pytest.fixture
def stall() -> Iterator[int]:
    with stall_server() as port:
        yield port


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[DocumentServer]:
    (tmp_path / "tls").mkdir()
    yield from serve(tmp_path / "tls")


@pytest.fixture
def node(
    tmp_path: Path, sqlite_template: Path, docs: DocumentServer
) -> Iterator[tuple[Deployment, Node]]:
    database = tmp_path / "authgate.db"
    database.write_bytes(sqlite_template.read_bytes())
    processes = Processes()
    try:
        deployment = provision(
            f"sqlite:///{database}",
            tmp_path,
            processes,
            AUTHGATE_FETCH_ALLOW_HOSTS="127.0.0.1",
            AUTHGATE_FETCH_CA_BUNDLE=str(tmp_path / "tls" / "ca.pem"),
            AUTHGATE_FETCH_TIMEOUT_SECONDS=str(FETCH_DEADLINE),
            # The handshake counts as connecting: a host that never answers holds a fetch for
            # the whole deadline only when connecting may take that long.
            AUTHGATE_FETCH_CONNECT_TIMEOUT_SECONDS=str(FETCH_DEADLINE),
            # The per-source hourly limit on first loads would refuse the attack first (429):
            # off, so that the fetch pool's own bounds are what is tested.
            AUTHGATE_REGISTRATION_RATE_PER_IP="0",
            AUTHGATE_REGISTRATION_RATE_GLOBAL="0",
            AUTHGATE_TOKEN_RATE_PER_CLIENT="0",
        )
        yield deployment, deployment.start("fetches")
    finally:
        processes.stop_all()


def publish_client(docs: DocumentServer) -> str:
    """A metadata-document client, cached for an hour once loaded."""
    url = docs.url("/known/client.json")
    document = {
        "client_id": url,
        "client_name": "Known document client",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
    }
    docs.routes["/known/client.json"] = Route.json(document, cache_control="max-age=3600")
    return url


def redeem_made_up_code(node: Node, client_id: str) -> httpx.Response:
    """A token request of a public client: ``invalid_grant`` proves the client was known."""
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "code": "made-up",
        "redirect_uri": REDIRECT_URI,
        "code_verifier": "v" * 43,
    }
    return httpx.post(f"{node.url}/oauth2/tokens", data=form, timeout=60)


def description(answer: Answer) -> str:
    return html.unescape(answer.text)


def refused_metric(node: Node) -> dict[str, float]:
    text = httpx.get(f"{node.url}/metrics", timeout=30).text
    found = re.findall(r'^authgate_fetches_refused_total\{limit="(\w+)"\} ([0-9.e+]+)$', text, re.M)
    return {limit: float(value) for limit, value in found}


@pytest.mark.parametrize("endpoint", ["token", "authorize"])
def test_fresh_document_urls_on_a_stalled_host_do_not_slow_a_known_client(
    node: tuple[Deployment, Node], stall: int, docs: DocumentServer, endpoint: str
) -> None:
    deployment, server = node
    document_client = publish_client(docs)
    loaded = redeem_made_up_code(server, document_client)  # fetched and stored now
    assert loaded.status_code == 400 and loaded.json()["error"] == "invalid_grant", loaded.text
    fetched_before = docs.requests_to("/known/client.json")
    alone, answer = timed(
        lambda: token(server, deployment.service, grant_type="client_credentials")
    )
    assert answer.status_code == 200, answer.text

    attacker = ThreadClients(base_url=server.url, timeout=60, follow_redirects=False)

    def attack(n: int) -> httpx.Response:
        client_id = f"https://127.0.0.1:{stall}/clients/{n}.json"
        if endpoint == "token":
            form = {
                "grant_type": "authorization_code",
                "client_id": client_id,
                "code": "made-up",
                "redirect_uri": REDIRECT_URI,
                "code_verifier": "v" * 43,
            }
            return attacker.get().post("/oauth2/tokens", data=form)
        query = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "state": "s",
            "code_challenge": "c" * 43,
            "code_challenge_method": "S256",
        }
        return attacker.get().get("/oauth2/authorize", params=query)

    well_behaved: list[tuple[str, float, int]] = []
    with (
        attacker,
        httpx.Client(base_url=server.url, timeout=60) as browser,
        running(attack, workers=ATTACKERS, max_requests=MAX_REQUESTS, pause=0.1) as attack_run,
    ):
        time.sleep(0.5)  # the attack has filled whatever it can
        ends = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < ends:
            seconds, answer = timed(
                lambda: token(server, deployment.service, grant_type="client_credentials")
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["token_type"] == "Bearer"
            well_behaved.append(("token", seconds, answer.status_code))
            seconds, answer = timed(lambda: redeem_made_up_code(server, document_client))
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"] == "invalid_grant"
            well_behaved.append(("document client", seconds, answer.status_code))
            seconds, page = timed(lambda: browser.get("/login"))
            assert page.status_code == 200, page.text
            assert 'name="csrf_token"' in page.text
            well_behaved.append(("login", seconds, page.status_code))
            time.sleep(0.25)

    assert not attack_run.errors, attack_run.errors[:3]
    assert (
        docs.requests_to("/known/client.json") == fetched_before == 1
    )  # the cached document was never fetched again
    answers = attack_run.answers
    assert len(answers) >= 2 * ATTACKERS, len(answers)
    # The service's token request and the sign-in page answered while the attack ran, each
    # well within the fetch deadline: none of them waited behind a fetch.
    assert len(well_behaved) >= 10
    slowest = max(seconds for _, seconds, _ in well_behaved)
    assert slowest < WELL_BEHAVED_BOUND, (alone, sorted(well_behaved, key=lambda w: -w[1])[:5])

    # Every attacking request got the clear error: most at once (the pool was full), the
    # few admitted at the fetch deadline. None hung.
    expected_status = 401 if endpoint == "token" else 400
    busy = [a for a in answers if BUSY in description(a)]
    fetched = [a for a in answers if TIMED_OUT in description(a)]
    assert len(busy) + len(fetched) == len(answers), {a.text for a in answers} - {
        a.text for a in busy + fetched
    }
    assert all(a.status == expected_status for a in answers)
    if endpoint == "token":
        assert all(a.headers["content-type"] == "application/json" for a in answers)
        assert all(a.headers["cache-control"] == "no-store" for a in answers)
        assert {a.text.split('"error":')[1].split(",")[0] for a in answers} == {'"invalid_client"'}
    else:
        assert all("location" not in a.headers for a in answers)  # a page, never a redirect
    assert len(busy) > len(fetched) > 0
    assert max(a.seconds for a in busy) < AT_ONCE
    assert max(a.seconds for a in fetched) < FETCH_DEADLINE + AT_ONCE
    # At most per-host (2) fetches of the stalled host ran at a time: over the attack, about
    # two per deadline, however many requests named it.
    assert len(fetched) <= 2 * (ATTACK_SECONDS / FETCH_DEADLINE + 2)
    refused = refused_metric(server)
    assert sum(refused.values()) >= len(busy), refused
    assert refused.get("host", 0) > 0, refused
