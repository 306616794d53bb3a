"""Worker threads for the blocking part (database, hashing, signing) of the hot protocol
endpoints (``web/hot.py``).

A small pool per process, not the framework's default of 40 threads: that work is CPU-bound
Python under one interpreter lock, and on SQLite the writers queue on one lock anyway, so 32
waiting requests on 40 threads only contend for the lock and double the 99th percentile of
latency (``bench/README.md``). The size is ``AUTHGATE_PROTOCOL_THREADS``; every app of the
process with that size shares the pool. Each call runs in a copy of the caller's context, so
log lines keep their request id.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from starlette.requests import HTTPConnection

from authgate.web import deps

P = ParamSpec("P")
T = TypeVar("T")

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    pool = _pools.get(size)
    if pool is None:
        with _lock:
            pool = _pools.get(size)
            if pool is None:
                pool = ThreadPoolExecutor(size, thread_name_prefix="authgate-protocol")
                _pools[size] = pool
    return pool


async def run(conn: HTTPConnection, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the protocol pool, awaited."""
    pool = _pool(deps.settings_of(conn).protocol_threads)
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(pool, call)
