"""``FetchPool``: fetches run on their own threads, within caps per pool, host and source
network; a fetch beyond a cap is refused at once; the caller never waits past the deadline,
name resolution included. And what core does with a refusal: a stored document serves, a new
one is ``invalid_client`` "could not be fetched now", and the refusal is not remembered."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from authgate.app import Services
from authgate.core import client_assertion, client_metadata, rate_limits
from authgate.core.context import Actor
from authgate.core.errors import InvalidClientError
from authgate.core.ports import FetchBusyError, FetchedDocument, FetchError
from authgate.fetch import FetchPool, HttpsFetcher
from authgate.fetch.addresses import AllowList
from tests.clock import MovableClock
from tests.flows import REDIRECT_URI

# Generous bounds: these prove that nothing waits, not how fast anything is.
AT_ONCE = 1.0


class Gate:
    """A fetcher double whose fetches block until released; records what it was asked."""

    total_timeout = 5.0

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[tuple[str, str | None, str]] = []
        self._lock = threading.Lock()

    def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
        with self._lock:
            self.started.append((url, source, threading.current_thread().name))
        if not self.release.wait(timeout=10):
            raise FetchError("the test gate was never released")
        return FetchedDocument(url, b"{}", "application/json", None)

    def wait_started(self, count: int) -> None:
        deadline = time.monotonic() + 5
        while len(self.started) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.started) == count, self.started


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.release.set()


def in_background(pool: FetchPool, url: str, source: str | None = None) -> threading.Thread:
    thread = threading.Thread(target=pool.fetch, args=(url, source), daemon=True)
    thread.start()
    return thread


def refused_at_once(pool: FetchPool, url: str, source: str | None = None) -> FetchBusyError:
    started = time.monotonic()
    with pytest.raises(FetchBusyError) as caught:
        pool.fetch(url, source)
    assert time.monotonic() - started < AT_ONCE
    assert "could not be fetched now" in str(caught.value)
    return caught.value


def test_a_fetch_runs_on_a_pool_thread_and_returns_the_document(gate: Gate) -> None:
    gate.release.set()
    pool = FetchPool(gate, threads=2)
    document = pool.fetch("https://a.example/client", "192.0.2.1")
    assert document.url == "https://a.example/client"
    [(url, source, thread)] = gate.started
    assert (url, source) == ("https://a.example/client", "192.0.2.1")
    assert thread.startswith("authgate-fetch_")  # not the caller's thread
    assert pool.in_flight == 0
    assert pool.refusals == {"threads": 0, "host": 0, "source": 0}


def test_a_full_pool_refuses_at_once_and_admits_again_once_free(gate: Gate) -> None:
    pool = FetchPool(gate, threads=2, per_host=8, per_source=8)
    waiting = [in_background(pool, f"https://h{i}.example/c", f"192.0.2.{i}") for i in range(2)]
    gate.wait_started(2)
    assert pool.in_flight == 2
    refused_at_once(pool, "https://other.example/c", "198.51.100.7")
    assert pool.refusals["threads"] == 1
    assert len(gate.started) == 2  # the refused fetch never reached the fetcher
    gate.release.set()
    for thread in waiting:
        thread.join(timeout=5)
    assert pool.in_flight == 0
    assert pool.fetch("https://other.example/c", "198.51.100.7").body == b"{}"


def test_one_host_holds_at_most_per_host_threads_whatever_the_urls(gate: Gate) -> None:
    pool = FetchPool(gate, threads=4, per_host=2, per_source=8)
    for i in range(2):
        in_background(pool, f"https://slow.example/fresh-{i}", f"192.0.2.{i}")
    gate.wait_started(2)
    refused_at_once(pool, "https://SLOW.example/fresh-3", "192.0.2.9")
    assert pool.refusals == {"threads": 0, "host": 1, "source": 0}
    in_background(pool, "https://fine.example/c", "192.0.2.10")  # another host still fetches
    gate.wait_started(3)


def test_one_source_network_holds_at_most_per_source_threads(gate: Gate) -> None:
    pool = FetchPool(gate, threads=4, per_host=8, per_source=1)
    source = rate_limits.source("2001:db8:1:2::5")
    in_background(pool, "https://a.example/c", source)
    gate.wait_started(1)
    # Another address of the same /64 is the same source.
    refused_at_once(pool, "https://b.example/c", rate_limits.source("2001:db8:1:2:ffff::1"))
    assert pool.refusals == {"threads": 0, "host": 0, "source": 1}
    in_background(pool, "https://b.example/c", rate_limits.source("2001:db8:1:3::5"))
    in_background(pool, "https://c.example/c", None)  # a known client's jwks_uri: no source cap
    gate.wait_started(3)


def test_an_error_of_the_fetch_reaches_the_caller_and_frees_the_place() -> None:
    class Failing:
        total_timeout = 5.0

        def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
            raise FetchError("the server answered HTTP 500")

    pool = FetchPool(Failing(), threads=1, per_host=1, per_source=1)
    for _ in range(3):  # the place is free again each time
        with pytest.raises(FetchError, match="HTTP 500") as caught:
            pool.fetch("https://a.example/c", "192.0.2.1")
        assert not isinstance(caught.value, FetchBusyError)
    assert pool.in_flight == 0


def test_a_hanging_name_lookup_costs_the_caller_the_deadline_not_more() -> None:
    """The deadline covers resolution: the caller gets a timeout after ``total_timeout`` while
    the lookup still hangs, and the lookup keeps its place (the bound stays true)."""
    release = threading.Event()

    def hanging_resolver(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        release.wait(timeout=10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9))]

    fetcher = HttpsFetcher(
        allow=AllowList.parse(["127.0.0.1"]), total_timeout=0.5, resolve=hanging_resolver
    )
    pool = FetchPool(fetcher, threads=1, per_host=1, per_source=1)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match="did not answer in time"):
            pool.fetch("https://slow-dns.example/c", "192.0.2.1")
        assert time.monotonic() - started < 0.5 + 2.0
        assert pool.in_flight == 1  # the lookup still holds its thread
        refused_at_once(pool, "https://other.example/c", "192.0.2.2")
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while pool.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.in_flight == 0


def test_the_fetcher_counts_a_slow_lookup_against_its_deadline() -> None:
    """Without a pool too: a lookup that returns after the deadline ends the fetch there."""
    calls: list[str] = []

    def slow_resolver(host: str, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        calls.append(host)
        time.sleep(0.4)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9))]

    fetcher = HttpsFetcher(
        allow=AllowList.parse(["127.0.0.1"]), total_timeout=0.3, resolve=slow_resolver
    )
    with pytest.raises(FetchError, match="did not answer in time"):
        fetcher.fetch("https://slow-dns.example/c")
    assert calls == ["slow-dns.example"]


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
    ],
)
def test_source_is_the_ipv4_address_or_the_ipv6_64(address: str, network: str) -> None:
    assert rate_limits.source(address) == network


# What core does with a refusal.


class Busy:
    total_timeout = 5.0

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
        self.asked.append((url, source))
        raise FetchBusyError("the document could not be fetched now; try again later")


class Serving:
    total_timeout = 5.0

    def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
        body = json.dumps(
            {"client_id": url, "client_name": "Fetched", "redirect_uris": [REDIRECT_URI]}
        ).encode()
        return FetchedDocument(url, body, "application/json", 600)


URL = "https://client.example/oauth/client.json"
ACTOR = Actor("anonymous", ip="2001:db8:aa:bb::1")


def test_a_new_document_refused_busy_is_invalid_client_and_not_remembered(
    services: Services,
) -> None:
    busy = Busy()
    ctx = dataclasses.replace(services.ctx, fetcher=busy)
    with pytest.raises(InvalidClientError) as caught:
        client_metadata.load_document_client(ctx, URL, ACTOR)
    assert "could not be fetched now" in caught.value.description
    assert caught.value.status_code == 401
    assert busy.asked == [(URL, "2001:db8:aa:bb::/64")]  # the caller's network, for the caps
    assert services.store.get_app(URL) is None
    # Not remembered as the document's failure: once a fetch can run, the client loads.
    ctx = dataclasses.replace(services.ctx, fetcher=Serving())
    app = client_metadata.load_document_client(ctx, URL, ACTOR)
    assert app.name == "Fetched"
    assert services.store.get_app(URL) is not None


def test_a_stored_document_serves_while_the_pool_is_busy(
    services: Services, clock: MovableClock
) -> None:
    ctx = dataclasses.replace(services.ctx, fetcher=Serving())
    stored = client_metadata.load_document_client(ctx, URL, ACTOR)
    clock.advance(minutes=11)  # past its max-age of 600 s: a refresh is due
    busy = Busy()
    ctx = dataclasses.replace(services.ctx, fetcher=busy)
    assert client_metadata.load_document_client(ctx, URL, ACTOR) == stored
    assert len(busy.asked) == 1


def test_first_loads_are_limited_per_ipv6_64_not_per_address(services: Services) -> None:
    """Every address of a /64 is one source: the hourly first-load limit (10) is theirs
    together; another /64 has its own."""
    ctx = dataclasses.replace(services.ctx, fetcher=Serving())
    for i in range(10):
        actor = Actor("anonymous", ip=f"2001:db8:aa:bb::{i + 1:x}")
        client_metadata.load_document_client(ctx, f"https://c{i}.example/client.json", actor)
    with pytest.raises(rate_limits.RateLimitedError) as caught:
        client_metadata.load_document_client(
            ctx, "https://c10.example/client.json", Actor("anonymous", ip="2001:db8:aa:bb:ffff::9")
        )
    assert caught.value.status_code == 429 and caught.value.retry_after > 0
    assert services.store.get_app("https://c10.example/client.json") is None
    other = Actor("anonymous", ip="2001:db8:aa:bc::1")
    assert client_metadata.load_document_client(ctx, "https://c10.example/client.json", other)


def test_jwks_uri_keys_serve_while_the_pool_is_busy_and_a_refusal_is_not_kept(
    services: Services, clock: MovableClock
) -> None:
    keys_doc = json.dumps({"keys": [{"kty": "EC", "kid": "k1"}]}).encode()

    class Keys:
        total_timeout = 5.0
        asked = 0

        def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
            Keys.asked += 1
            assert source is None  # a known client's keys: no stranger's source to cap
            return FetchedDocument(url, keys_doc, "application/json", 60)

    document = {
        "client_id": URL,
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": "https://k.example/j",
    }
    app = client_metadata.app_from_document(
        URL, json.dumps(document).encode(), None, clock.now(), None
    )
    assert app.jwks_uri == "https://k.example/j"
    busy_ctx = dataclasses.replace(services.ctx, fetcher=Busy())
    # Never fetched, pool busy: refused now, and nothing kept (the next request may fetch).
    with pytest.raises(InvalidClientError, match="could not be fetched now"):
        client_assertion.jwks_uri_keys(busy_ctx, app, "k1")
    serving_ctx = dataclasses.replace(services.ctx, fetcher=Keys())
    assert client_assertion.jwks_uri_keys(serving_ctx, app, "k1")[0]["kid"] == "k1"
    assert Keys.asked == 1
    # Expired, pool busy: the keys we had serve.
    clock.advance(minutes=5)
    assert client_assertion.jwks_uri_keys(busy_ctx, app, "k1")[0]["kid"] == "k1"


@pytest.mark.parametrize("endpoint", ["token", "introspection", "revocation"])
def test_every_endpoint_that_names_a_client_gives_the_pool_its_source(
    services: Services, endpoint: str
) -> None:
    """A document not stored yet is fetched under the caps of the caller's network, whichever
    endpoint names it (introspection did not say who asked)."""
    from authgate.core import introspection, revocation, token_endpoint
    from authgate.core.params import Params

    busy = Busy()
    ctx = dataclasses.replace(services.ctx, fetcher=busy)
    fields = {"client_id": URL, "token": "t", "grant_type": "client_credentials"}
    params = Params.from_pairs(fields.items())
    with pytest.raises(InvalidClientError, match="could not be fetched now"):
        if endpoint == "token":
            token_endpoint.exchange(ctx, params, None, ACTOR)
        elif endpoint == "introspection":
            introspection.introspect(ctx, params, None, ACTOR)
        else:
            revocation.revoke(ctx, params, None, ACTOR)
    assert busy.asked == [(URL, "2001:db8:aa:bb::/64")]
