"""Fair shares of the server between sources: one address's flood waits its turn, others don't.

A server process answers requests on one core. Sixty-four connections from one address that
ask as fast as they are answered (a client retrying in a loop, a script naming a fresh
metadata document per request, a password guesser) keep sixty-four requests in progress, and
every other client's request queues behind them: cheap refusals are still refusals the core
has to make one after another. So while more than one source is active, a source (an IPv4
address, an IPv6 /64: ``core.rate_limits.source``) has at most ``per_source`` requests in
progress; its next ones wait, in arrival order, on the event loop (a parked request costs no
thread and no processor time), and start as its earlier ones end. A source alone on the server
is not held back: behind a proxy whose address is the only one seen (``trust_proxy_headers``
off), or on a quiet server, requests run as they did. "Alone" means no other source has a
request in progress or started one in the last ``quiet_seconds``.

Nothing is refused here: how many requests may wait is bounded by the connections the server
keeps open (``AUTHGATE_HTTP_MAX_CONNECTIONS``, ``web/connections.py``), and what a source may
ask for by the rate limits. An attacker spread over many addresses is not slowed by this; the
rate limits, the fetch pool and the hashing queue still bound what it costs.

A refusal is cheap, not free: a source that asks as fast as it is answered, and is refused
every time (429: a rate limit, a full fetch pool or hashing queue), gets its next refusal as
soon as the last one left, and on the one core a process has, a thousand refusals a second
leave the other clients a fraction of it. So while other sources are active, a 429 waits
``refusal_delay`` seconds before it is sent, holding its source's turn (without a thread or
any processor time): a source being refused gets at most ``per_source`` answers per delay, and
the core goes to the others. It changes no answer, only when it comes; a client that was told
to retry later waits longer than that anyway (``Retry-After``), and a source alone on the
server gets its refusals at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.core.rate_limits import source


@dataclass(slots=True)
class _Source:
    running: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class FairShare:
    """Admission of requests per source; one per server process (its event loop's)."""

    def __init__(
        self,
        per_source: int,
        *,
        quiet_seconds: float = 1.0,
        refusal_delay: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_source = per_source
        self.refusal_delay = refusal_delay
        self._quiet = quiet_seconds
        self._monotonic = monotonic
        self._sleep = sleep
        self._sources: dict[str, _Source] = {}
        # The last source that started a request and when; when a request last started while
        # another source was active.
        self._last_source: str | None = None
        self._last_at = float("-inf")
        self._shared_at = float("-inf")
        #: Requests that waited for their turn (``authgate_requests_waited_turn_total``).
        self.waited = 0
        #: Refusals sent late because other sources were active (``…_refusals_delayed_total``).
        self.delayed = 0

    def _shared(self, key: str) -> bool:
        """Whether another source than ``key`` has a request in progress, or started one
        lately (``key``'s own state exists already)."""
        now = self._monotonic()
        if len(self._sources) > 1 or (
            self._last_source != key and now - self._last_at < self._quiet
        ):
            self._shared_at = now
        self._last_source, self._last_at = key, now
        return now - self._shared_at < self._quiet

    def crowded(self) -> bool:
        """Whether a request started in the last ``quiet_seconds`` shared the server."""
        return self._monotonic() - self._shared_at < self._quiet

    async def delay_refusal(self) -> None:
        """Hold a refusal (429) for ``refusal_delay`` while other sources are active."""
        if self.refusal_delay > 0 and self.crowded():
            self.delayed += 1
            await self._sleep(self.refusal_delay)

    async def enter(self, key: str) -> None:
        state = self._sources.get(key)
        if state is None:
            state = self._sources[key] = _Source()
        if not self._shared(key):
            self._admit_all(state)  # alone again: those waiting start now, as this one does
        elif state.waiting or state.running >= self.per_source:  # over its share: wait in line
            turn = asyncio.get_running_loop().create_future()
            state.waiting.append(turn)
            self.waited += 1
            try:
                await turn  # the slot is handed over by leave(): running already counts it
                return
            except BaseException:
                if turn.done() and not turn.cancelled():
                    self.leave(key)  # handed a slot while being cancelled: pass it on
                elif turn in state.waiting:  # (a leave() may have dropped it already)
                    state.waiting.remove(turn)
                raise
        state.running += 1

    @staticmethod
    def _admit_all(state: _Source) -> None:
        while state.waiting:
            turn = state.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                state.running += 1

    def leave(self, key: str) -> None:
        state = self._sources[key]
        # A source that had more in progress than its share (it was alone when they started)
        # drains down to its share before the next in line starts.
        while state.waiting and state.running <= self.per_source:
            turn = state.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes to the next in line
                return
        state.running -= 1
        if state.running == 0:
            del self._sources[key]

    def turns_waited(self) -> int:
        return self.waited

    def refusals_delayed(self) -> int:
        return self.delayed

    def in_progress(self, key: str) -> int:
        state = self._sources.get(key)
        return 0 if state is None else state.running


def client_address(scope: Scope, *, trust_proxy_headers: bool) -> str | None:
    """The client's address: the one the trusted proxy saw, else the peer's."""
    if trust_proxy_headers:
        forwarded = next((v for n, v in scope["headers"] if n == b"x-forwarded-for"), b"")
        if forwarded:
            # The entry the trusted proxy appended (the last one): anything before it came
            # from the client and can be forged.
            return forwarded.decode("latin-1").split(",")[-1].strip()[:64]
    client = scope.get("client")
    return client[0] if client else None


def source_of(scope: Scope, *, trust_proxy_headers: bool) -> str:
    """The source a request counts as (``core.rate_limits.source`` of its address)."""
    address = client_address(scope, trust_proxy_headers=trust_proxy_headers)
    return source(address) if address else "unknown"


class FairShares:
    """ASGI middleware: every HTTP request runs under ``share``'s admission."""

    def __init__(self, app: ASGIApp, share: FairShare, *, trust_proxy_headers: bool) -> None:
        self.app = app
        self.share = share
        self._trust = trust_proxy_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = source_of(scope, trust_proxy_headers=self._trust)
        share = self.share

        async def send_late_refusals(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 429:
                await share.delay_refusal()  # still in the source's turn
            await send(message)

        await share.enter(key)
        try:
            await self.app(scope, receive, send_late_refusals if share.refusal_delay else send)
        finally:
            share.leave(key)
