"""Run a bounded attack beside a well-behaved client: ``workers`` threads repeat one request
until the attack ends (or ``max_requests`` were sent), each answer recorded with its time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx


@dataclass
class Answer:
    seconds: float
    status: int
    headers: httpx.Headers
    text: str


@dataclass
class Attack:
    answers: list[Answer] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)


class ThreadClients:
    """An ``httpx.Client`` per attacking thread, all closed when the block ends: one client
    shared by dozens of threads lost a socket to its own pool under load (``ReadError: Bad
    file descriptor``), an error of the attacker, not of the server."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._local = threading.local()
        self._all: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(**self._options)
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def __enter__(self) -> ThreadClients:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            client.close()


def timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = call()
    return time.monotonic() - started, response


@contextmanager
def running(
    request: Callable[[int], httpx.Response],
    *,
    workers: int,
    max_requests: int,
    pause: float = 0.0,
) -> Iterator[Attack]:
    """``request(n)`` (n: the request's number, for fresh URLs) from ``workers`` threads, each
    waiting ``pause`` seconds after an answer, until the block ends or ``max_requests`` were
    sent; the block runs while they do."""
    attack = Attack()
    stop = threading.Event()
    counter = iter(range(max_requests))
    counter_lock = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            with counter_lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                seconds, response = timed(partial(request, n))
            except BaseException as exc:  # reported by the test, not swallowed
                with attack._lock:
                    attack.errors.append(exc)
                return
            attack.record(Answer(seconds, response.status_code, response.headers, response.text))
            stop.wait(pause)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield attack
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
