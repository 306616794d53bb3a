"""Fair shares between sources (web/fairness.py): a source's flood waits its turn while other
sources are active, a source alone is not held back, and nothing is left behind.

The middleware runs here around an app whose requests block until the test lets them end,
so what is in progress at any moment is known exactly; the wiring into the real app (and the
address rules it shares with the rate limits) is checked through the real app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from authgate.app import create_app
from authgate.config import Settings
from authgate.services import Services
from authgate.web.fairness import FairShare, FairShares, source_of
from tests.conftest import ISSUER


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Blocking:
    """An ASGI app whose requests run until ``release(address)`` ends one of them."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.started: list[str] = []
        self._gates: dict[str, asyncio.Queue[None]] = {}

    def _gate(self, address: str) -> asyncio.Queue[None]:
        return self._gates.setdefault(address, asyncio.Queue())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = scope["client"][0]
        self.running[address] = self.running.get(address, 0) + 1
        self.started.append(address)
        try:
            await self._gate(address).get()
        finally:
            self.running[address] -= 1

    def release(self, address: str) -> None:
        self._gate(address).put_nowait(None)


def _scope(address: str, forwarded: str | None = None) -> Scope:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (address, 5000), "headers": headers}


async def _noop_receive() -> dict[str, object]:
    return {"type": "http.disconnect"}


async def _noop_send(message: object) -> None:
    return None


def _start(middleware: FairShares, address: str) -> asyncio.Task[None]:
    return asyncio.ensure_future(middleware(_scope(address), _noop_receive, _noop_send))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _run(test: Callable[[], object]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


def test_a_source_alone_is_not_held_back() -> None:
    async def test() -> None:
        app, share = Blocking(), FairShare(2, monotonic=Clock())
        middleware = FairShares(app, share, trust_proxy_headers=False)
        tasks = [_start(middleware, "192.0.2.1") for _ in range(10)]
        await _settle()
        assert app.running["192.0.2.1"] == 10 and share.waited == 0
        for _ in tasks:
            app.release("192.0.2.1")
        await asyncio.gather(*tasks)
        assert share.in_progress("192.0.2.1") == 0 and share._sources == {}

    _run(test)


def test_a_flood_waits_its_turn_while_another_source_is_active() -> None:
    async def test() -> None:
        clock = Clock()
        app, share = Blocking(), FairShare(2, quiet_seconds=1.0, monotonic=clock)
        middleware = FairShares(app, share, trust_proxy_headers=False)
        other = _start(middleware, "198.51.100.7")  # another client is active
        await _settle()
        flood = [_start(middleware, "192.0.2.1") for _ in range(6)]
        await _settle()
        # Two of the flood run, four wait without running anything.
        assert app.running["192.0.2.1"] == 2 and share.waited == 4
        # The other source is not behind them: its next request runs at once.
        second = _start(middleware, "198.51.100.7")
        await _settle()
        assert app.running["198.51.100.7"] == 2
        # As one of the flood ends, the next in line starts: never more than two at once.
        app.release("192.0.2.1")
        await _settle()
        assert app.running["192.0.2.1"] == 2 and share.in_progress("192.0.2.1") == 2
        for _ in range(5):
            app.release("192.0.2.1")
            await _settle()
            assert app.running["192.0.2.1"] <= 2
        await asyncio.gather(*flood)
        app.release("198.51.100.7")
        app.release("198.51.100.7")
        await asyncio.gather(other, second)
        assert share._sources == {}  # nothing kept for sources with nothing in progress

    _run(test)


def test_the_flood_runs_freely_again_once_alone() -> None:
    async def test() -> None:
        clock = Clock()
        app, share = Blocking(), FairShare(1, quiet_seconds=1.0, monotonic=clock)
        middleware = FairShares(app, share, trust_proxy_headers=False)
        other = _start(middleware, "198.51.100.7")
        await _settle()
        app.release("198.51.100.7")
        await other
        first = _start(middleware, "192.0.2.1")
        second = _start(middleware, "192.0.2.1")
        await _settle()
        assert app.running["192.0.2.1"] == 1  # the other source was here under a second ago
        clock.now += 1.5
        third = _start(middleware, "192.0.2.1")
        await _settle()
        # Alone now: the new one is not held, nor is the one that was waiting.
        assert app.running["192.0.2.1"] == 3 and share.in_progress("192.0.2.1") == 3
        for _ in range(3):
            app.release("192.0.2.1")
            await _settle()
        await asyncio.gather(first, second, third)
        assert share._sources == {}

    _run(test)


def test_a_flood_already_running_drains_to_its_share_when_another_source_comes() -> None:
    async def test() -> None:
        app, share = Blocking(), FairShare(2, monotonic=Clock())
        middleware = FairShares(app, share, trust_proxy_headers=False)
        flood = [_start(middleware, "192.0.2.1") for _ in range(5)]  # alone: all five run
        await _settle()
        other = _start(middleware, "198.51.100.7")
        await _settle()
        more = [_start(middleware, "192.0.2.1") for _ in range(3)]
        await _settle()
        assert app.running["192.0.2.1"] == 5 and share.waited == 3
        # Each end lowers what runs until the share is reached; only then does the next start.
        for expected in (4, 3, 2, 2, 2, 2):
            app.release("192.0.2.1")
            await _settle()
            assert app.running["192.0.2.1"] == expected
            assert share.in_progress("192.0.2.1") == expected
        app.release("192.0.2.1")
        app.release("192.0.2.1")
        app.release("198.51.100.7")
        await asyncio.gather(*flood, *more, other)
        assert app.started.count("192.0.2.1") == 8 and share._sources == {}

    _run(test)


def test_a_waiting_request_that_goes_away_leaves_no_trace() -> None:
    async def test() -> None:
        app, share = Blocking(), FairShare(1, monotonic=Clock())
        middleware = FairShares(app, share, trust_proxy_headers=False)
        other = _start(middleware, "198.51.100.7")
        await _settle()
        running = _start(middleware, "192.0.2.1")
        waiting = _start(middleware, "192.0.2.1")
        await _settle()
        waiting.cancel()  # the client hung up while waiting its turn
        await _settle()
        last = _start(middleware, "192.0.2.1")
        await _settle()
        app.release("192.0.2.1")
        await _settle()
        assert app.started.count("192.0.2.1") == 2  # the cancelled one never ran
        app.release("192.0.2.1")
        app.release("198.51.100.7")
        await asyncio.gather(running, last, other)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert share._sources == {}

    _run(test)


class Answering:
    """An ASGI app that answers at once with the status its path names (``/429``)."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.started.append(scope["path"])
        status = int(scope["path"].strip("/"))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


class HeldSleep:
    """A stand-in for ``asyncio.sleep`` that returns only when the test lets it."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._gate: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self._gate.get()

    def release(self) -> None:
        self._gate.put_nowait(None)


def _ask(middleware: FairShares, address: str, path: str, sent: list[int]) -> asyncio.Task[None]:
    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    scope = {**_scope(address), "path": path}
    return asyncio.ensure_future(middleware(scope, _noop_receive, send))


def test_a_refusal_waits_in_its_turn_while_other_sources_are_active() -> None:
    async def test() -> None:
        sleep = HeldSleep()
        share = FairShare(1, refusal_delay=1.5, monotonic=Clock(), sleep=sleep)
        app = Answering()
        middleware = FairShares(app, share, trust_proxy_headers=False)
        other: list[int] = []
        await _ask(middleware, "198.51.100.7", "/200", other)  # another client is active
        flood: list[int] = []
        first = _ask(middleware, "192.0.2.1", "/429", flood)
        second = _ask(middleware, "192.0.2.1", "/429", flood)
        await _settle()
        # The first refusal is made but not sent; it holds its source's only turn, so the
        # second has not even started: the flood costs nothing while it waits.
        assert sleep.asked == [1.5] and flood == [] and app.started.count("/429") == 1
        assert share.delayed == 1 and share.in_progress("192.0.2.1") == 1
        # Another source is answered meanwhile.
        await _ask(middleware, "198.51.100.7", "/200", other)
        assert other == [200, 200]
        sleep.release()
        await _settle()
        assert flood == [429] and app.started.count("/429") == 2 and sleep.asked == [1.5, 1.5]
        sleep.release()
        await asyncio.gather(first, second)
        assert flood == [429, 429] and share.delayed == 2 and share._sources == {}

    _run(test)


def test_a_source_alone_gets_its_refusals_at_once() -> None:
    async def test() -> None:
        clock = Clock()
        sleep = HeldSleep()
        share = FairShare(1, refusal_delay=1.5, monotonic=clock, sleep=sleep)
        middleware = FairShares(Answering(), share, trust_proxy_headers=False)
        sent: list[int] = []
        await _ask(middleware, "198.51.100.7", "/200", sent)
        clock.now += 1.5  # the other source left over a second ago
        for _ in range(3):
            await _ask(middleware, "192.0.2.1", "/429", sent)
        assert sent == [200, 429, 429, 429] and sleep.asked == [] and share.delayed == 0
        # Off: not even with company.
        off = FairShare(1, refusal_delay=0, monotonic=clock, sleep=sleep)
        middleware = FairShares(Answering(), off, trust_proxy_headers=False)
        await _ask(middleware, "198.51.100.7", "/200", sent)
        await _ask(middleware, "192.0.2.1", "/429", sent)
        assert sent[-2:] == [200, 429] and sleep.asked == [] and off.delayed == 0

    _run(test)


@pytest.mark.parametrize(
    ("address", "forwarded", "trust", "expected"),
    [
        ("192.0.2.1", None, False, "192.0.2.1"),
        # A host takes any address of its /64: one source, as for the rate limits.
        ("2001:db8:1:2::10", None, False, "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.9", None, False, "192.0.2.9"),
        # The proxy's entry (the last) when the proxy is trusted; never the client's own.
        ("10.0.0.2", "203.0.113.5, 192.0.2.44", True, "192.0.2.44"),
        ("10.0.0.2", "192.0.2.44", False, "10.0.0.2"),
    ],
)
def test_the_source_of_a_request(
    address: str, forwarded: str | None, trust: bool, expected: str
) -> None:
    assert source_of(_scope(address, forwarded), trust_proxy_headers=trust) == expected


def test_the_app_admits_fairly_by_default_and_can_be_told_not_to(
    settings: Settings, services: Services
) -> None:
    app = create_app(settings, services=services)
    share = app.state.fair_share
    assert isinstance(share, FairShare) and share.per_source == 4
    assert share.refusal_delay == settings.http_refusal_delay_seconds == 1.0
    admitted: list[str] = []
    enter = share.enter

    async def recording(key: str) -> None:
        admitted.append(key)
        await enter(key)

    share.enter = recording  # type: ignore[method-assign]

    async def ask(
        address: str, path: str = "/.well-known/oauth-authorization-server"
    ) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(address, 5000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            return await client.get(path)

    async def both() -> list[httpx.Response]:
        return list(await asyncio.gather(ask("192.0.2.1"), ask("198.51.100.7")))

    answers = asyncio.run(both())
    assert [a.status_code for a in answers] == [200, 200]
    assert sorted(admitted) == ["192.0.2.1", "198.51.100.7"]  # each request went through it
    assert share._sources == {}  # every admission was left again
    share.waited, share.delayed = 3, 2
    metrics = asyncio.run(ask("192.0.2.1", "/metrics")).text
    assert "authgate_requests_waited_turn_total 3.0" in metrics
    assert "authgate_refusals_delayed_total 2.0" in metrics
    off = create_app(
        settings.model_copy(update={"http_in_flight_per_source": 0}), services=services
    )
    assert getattr(off.state, "fair_share", None) is None
    off_metrics = TestClient(off).get("/metrics").text
    assert "authgate_requests_waited_turn" not in off_metrics
    assert "authgate_refusals_delayed" not in off_metrics
