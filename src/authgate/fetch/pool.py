"""``FetchPool``: outbound fetches on their own few threads, bounded, refused at once when full.

A metadata document or a ``jwks_uri`` is fetched while a request waits for it, and the URL is
the client's choice: a stranger can name a host that never answers, or a fresh URL per request
so that no failure is remembered. Without bounds every such request holds a request thread for
the whole fetch deadline, and a few dozen of them stall the token endpoint and the pages.

Here a fetch runs on one of ``threads`` threads of its own and is admitted only while

- a thread is free (there is no queue: waiting would only move the stall),
- fewer than ``per_host`` fetches of the URL's host are in flight (a slow host holds at most
  that many threads, whatever URLs on it are named), and
- fewer than ``per_source`` fetches asked by the caller's network are in flight (an IPv4
  address, an IPv6 /64; ``core.rate_limits.source``), so one source cannot take every thread.

Otherwise ``FetchBusyError`` is raised at once. The caller waits at most the fetch deadline
(name resolution included): a lookup that hangs past it keeps its thread — and its place
under the caps — until it returns, so the bounds stay true, but no request waits for it. So
at most ``threads`` request threads are ever waiting on fetches; a client that needs no fetch
(an operator's app, a cached document) is never behind one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from authgate.core.ports import FetchBusyError, FetchedDocument, FetchError

Refusal = Literal["threads", "host", "source"]
REFUSALS: tuple[Refusal, ...] = ("threads", "host", "source")
#: How much longer than the fetch deadline a caller waits for the fetcher's own answer (its
#: timeout error names the cause better than ours).
GRACE_SECONDS = 0.5
T = TypeVar("T")
BUSY = "the document could not be fetched now (too many fetches in progress); try again later"


class Fetcher(Protocol):
    total_timeout: float

    def fetch(self, url: str, source: str | None = None) -> FetchedDocument: ...


@dataclass(slots=True)
class _Job:
    host: str
    source: str | None
    call: Callable[[], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class FetchPool:
    """A ``DocumentFetcher`` that runs ``fetcher`` on its own bounded threads (module doc)."""

    def __init__(
        self, fetcher: Fetcher, *, threads: int = 4, per_host: int = 2, per_source: int = 2
    ) -> None:
        if threads < 1 or per_host < 1 or per_source < 1:
            raise ValueError("a fetch pool needs at least one thread, per host and per source")
        self.fetcher = fetcher
        self.size = threads
        self.per_host = per_host
        self.per_source = per_source
        self.refusals: dict[Refusal, int] = dict.fromkeys(REFUSALS, 0)
        self._lock = threading.Lock()
        self._busy = 0
        self._hosts: dict[str, int] = {}
        self._sources: dict[str, int] = {}
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    @property
    def in_flight(self) -> int:
        return self._busy

    def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
        return self.run(url, source, lambda: self.fetcher.fetch(url, source))

    def run(self, url: str, source: str | None, call: Callable[[], T]) -> T:
        """Run ``call`` (one exchange with ``url``'s host, under the fetcher's deadline) on
        the pool's threads, under the same caps as a document fetch: the back-channel
        requests to an upstream OpenID Provider (``fetch/upstream.py``) go through here."""
        host = (urlsplit(url).hostname or "").lower()
        self._admit(host, source)
        job = _Job(host, source, call)
        self._start_threads()
        self._jobs.put(job)
        try:
            result: T = job.future.result(timeout=self.fetcher.total_timeout + GRACE_SECONDS)
        except concurrent.futures.TimeoutError:
            raise FetchError("the server did not answer in time") from None
        return result

    def _admit(self, host: str, source: str | None) -> None:
        with self._lock:
            refusal: Refusal | None = None
            if self._busy >= self.size:
                refusal = "threads"
            elif self._hosts.get(host, 0) >= self.per_host:
                refusal = "host"
            elif source is not None and self._sources.get(source, 0) >= self.per_source:
                refusal = "source"
            if refusal is not None:
                self.refusals[refusal] += 1
                raise FetchBusyError(BUSY)
            self._busy += 1
            self._hosts[host] = self._hosts.get(host, 0) + 1
            if source is not None:
                self._sources[source] = self._sources.get(source, 0) + 1

    def _release(self, job: _Job) -> None:
        with self._lock:
            self._busy -= 1
            _decrement(self._hosts, job.host)
            if job.source is not None:
                _decrement(self._sources, job.source)

    def _start_threads(self) -> None:
        """Started on first use, in the process that fetches (after a server's workers fork)."""
        if self._threads:
            return
        with self._lock:
            if self._threads:
                return
            self._threads = [
                threading.Thread(target=self._work, name=f"authgate-fetch_{i}", daemon=True)
                for i in range(self.size)
            ]
            for thread in self._threads:
                thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            document: Any = None
            error: BaseException | None = None
            try:
                document = job.call()
            except BaseException as exc:  # handed to the caller, as an executor does
                error = exc
            # Free the place first: a caller that fetches again once answered finds it free.
            self._release(job)
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if error is not None:
                    job.future.set_exception(error)
                else:
                    job.future.set_result(document)
            del job, document, error


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
