"""Requests naming a metadata document not served yet run apart from the known clients'.

A token or authorization request that names an https ``client_id`` this node has not served
a client from may wait for a fetch or be refused by the document limits; a stranger can send
thousands, a fresh URL each. They run on threads of their own (``web/threads.run_apart``:
one per fetch thread and a quarter of the protocol pool), so they queue behind each other,
never in front of a known client: over HTTP against the app (real SQLite/PostgreSQL, a real
document server), with every such request held on the server, a registered client's token
request is answered while they wait. Structural: the held requests are released only after
it was answered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.config import Settings
from authgate.web import threads
from authgate.web.protocol import token as token_endpoint
from tests.conftest import ISSUER, Client, make_client
from tests.fetch.server import DocumentServer, Route, serve
from tests.flows import assert_oauth_error, generate_pkce, token_request
from tests.http_types import Response

PATH = "/client.json"
HELD = 12  # more than the protocol pool's 8 threads, and the 4 + 2 run apart


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[DocumentServer]:
    (tmp_path / "tls").mkdir()
    yield from serve(tmp_path / "tls")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1",
        fetch_ca_bundle=str(tmp_path / "tls" / "ca.pem"),
        fetch_timeout_seconds=5,
    )


def publish(docs: DocumentServer) -> str:
    url = docs.url(PATH)
    document = {
        "client_id": url,
        "client_name": "Document client",
        "redirect_uris": ["http://127.0.0.1:9876/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    docs.routes[PATH] = Route.json(document, cache_control="max-age=600")
    return url


def redeem_made_up_code(client: TestClient, client_id: str) -> Response:
    return token_request(
        client,
        {
            "grant_type": "authorization_code",
            "code": "agac_made_up",
            "client_id": client_id,
            "redirect_uri": "http://127.0.0.1:9876/callback",
            "code_verifier": generate_pkce().verifier,
        },
    )


def service_token(client: TestClient, service: Client) -> Response:
    assert service.secret is not None
    return token_request(
        client,
        {
            "grant_type": "client_credentials",
            "client_id": service.id,
            "client_secret": service.secret,
        },
    )


@pytest.fixture
def service(services: Services) -> Client:
    """A registered service, allowed client_credentials tokens for the issuer."""
    return make_client(services, grant_types=["client_credentials"], service_access={ISSUER: []})


@pytest.fixture
def ran_on(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(client_id, thread name) of every token request, as the endpoint's core call ran."""
    seen: list[tuple[str, str]] = []
    real = token_endpoint._exchange

    def recorded(*args: Any) -> Any:
        client_id = args[4][0]
        seen.append((client_id, threading.current_thread().name))
        return real(*args)

    monkeypatch.setattr(token_endpoint, "_exchange", recorded)
    return seen


def test_a_new_document_runs_apart_until_it_has_been_served(
    client: TestClient,
    service: Client,
    docs: DocumentServer,
    ran_on: list[tuple[str, str]],
) -> None:
    url = publish(docs)
    missing = docs.url("/missing.json")
    assert_oauth_error(redeem_made_up_code(client, url), 400, "invalid_grant")  # fetched
    assert_oauth_error(redeem_made_up_code(client, url), 400, "invalid_grant")  # stored
    for _ in range(2):
        assert_oauth_error(redeem_made_up_code(client, missing), 401, "invalid_client")
    assert service_token(client, service).status_code == 200
    threads_of = [(cid, name.rsplit("_", 1)[0]) for cid, name in ran_on]
    assert threads_of == [
        (url, threads.APART),  # might fetch
        (url, threads.PROTOCOL),  # served from this node before: a known client
        (missing, threads.APART),  # never served: apart every time
        (missing, threads.APART),
        (service.id, threads.PROTOCOL),
    ]
    assert docs.requests_to(PATH) == 1


def test_a_known_client_is_answered_while_new_documents_wait(
    client: TestClient,
    service: Client,
    docs: DocumentServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every request naming a new document is held on the server until the known client has
    its token: queued in front of it, as they were on one pool, it would never come."""
    release = threading.Event()
    held = threading.Semaphore(0)
    real = token_endpoint._exchange

    def holding(*args: Any) -> Any:
        if args[4][0] != service.id:
            held.release()
            release.wait(timeout=30)
        return real(*args)

    monkeypatch.setattr(token_endpoint, "_exchange", holding)
    answers: list[int] = []
    strangers = [
        threading.Thread(
            target=lambda n=n: answers.append(
                redeem_made_up_code(client, docs.url(f"/new-{n}.json")).status_code
            )
        )
        for n in range(HELD)
    ]
    for stranger in strangers:
        stranger.start()
    try:
        assert held.acquire(timeout=30)  # the apart threads are taken, the rest queued
        answered = service_token(client, service)
        assert answered.status_code == 200, answered.text
        assert answered.json()["token_type"] == "Bearer"
        assert not release.is_set() and answers == []  # all still held or queued
    finally:
        release.set()
        for stranger in strangers:
            stranger.join(timeout=60)
    # Each document not found, or (past the first loads per source) refused by the limit.
    assert len(answers) == HELD and 401 in answers and set(answers) <= {401, 429}, answers
