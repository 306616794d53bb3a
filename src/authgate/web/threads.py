"""Worker threads for the blocking part (database, hashing, signing) of the hot protocol
endpoints (``web/hot.py``).

A small pool per process, not the framework's default of 40 threads: that work is CPU-bound
Python under one interpreter lock, and on SQLite the writers queue on one lock anyway, so 32
waiting requests on 40 threads only contend for the lock and double the 99th percentile of
latency (``bench/README.md``). The size is ``AUTHGATE_PROTOCOL_THREADS``; every app of the
process with that size shares the pool. Each call runs in a copy of the caller's context, so
log lines keep their request id.

Requests that name a metadata-document client this node has not served yet
(``client_metadata.names_new_document``) run apart, on the threads of ``run_apart``: such a
request may wait seconds for a fetch, and a stranger can send them by the thousand with a
fresh URL each, fetching or refused. Queued with everyone else, they took the threads and
the interpreter lock from the known clients' token requests; apart, they wait for each
other, and a known client is never behind them. There are as many as the fetch pool has
threads (the most that can wait on fetches at once), plus a quarter of the protocol pool
(at least one) that keeps answering the ones the fetch pool refuses at once.

The pool hands a call over on one queue and its outcome back with one
``call_soon_threadsafe`` straight into the awaiting event loop's future. The executor route
(``run_in_executor``) goes through a ``concurrent.futures.Future`` with its condition lock and
a second future chained to it: about 11 µs more of interpreter time per call, measured side by
side on one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from starlette.requests import HTTPConnection

from authgate.web import deps

P = ParamSpec("P")
T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class Workers:
    """``size`` daemon threads that run the calls put on one queue, oldest first."""

    def __init__(self, size: int, name: str = "authgate-protocol") -> None:
        if size < 1:
            raise ValueError("a pool needs at least one thread")
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, loop: asyncio.AbstractEventLoop, call: Callable[[], T]) -> asyncio.Future[T]:
        """A future of ``loop`` that gets ``call()``'s result or exception. A call whose future
        is cancelled before a thread takes it does not run."""
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, call))
        return future

    def _work(self) -> None:
        get = self._jobs.get
        while True:
            loop, future, call = get()
            if future.cancelled():
                continue
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting task, as an executor does
                outcome: tuple[Callable[..., None], Any] = (_fail, exc)
            else:
                outcome = (_succeed, result)
            del call
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits it any more
                loop.call_soon_threadsafe(outcome[0], future, outcome[1])
            del loop, future, outcome


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if future.cancelled():
        return
    if isinstance(exc, StopIteration):  # a future refuses it; the caller still gets an error
        error = RuntimeError("the call raised StopIteration")
        error.__cause__ = exc
        exc = error
    future.set_exception(exc)


PROTOCOL = "authgate-protocol"
APART = "authgate-apart"
_pools: dict[tuple[str, int], Workers] = {}
_lock = threading.Lock()


def _pool(size: int, name: str = PROTOCOL) -> Workers:
    pool = _pools.get((name, size))
    if pool is None:
        with _lock:
            pool = _pools.get((name, size))
            if pool is None:
                pool = Workers(size, name)
                _pools[(name, size)] = pool
    return pool


def apart_size(protocol_threads: int, fetch_threads: int) -> int:
    """Threads for the requests run apart: one per fetch that can be in flight, and a quarter
    of the protocol pool (at least one) for the rest."""
    return fetch_threads + max(1, protocol_threads // 4)


async def run(conn: HTTPConnection, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the protocol pool, awaited."""
    pool = _pool(deps.settings_of(conn).protocol_threads)
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await pool.submit(asyncio.get_running_loop(), call)


async def run_apart(
    conn: HTTPConnection, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``fn(*args, **kwargs)`` on the threads for requests that name a metadata document not
    served yet (module doc), awaited."""
    settings = deps.settings_of(conn)
    pool = _pool(apart_size(settings.protocol_threads, settings.fetch_threads), APART)
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await pool.submit(asyncio.get_running_loop(), call)
