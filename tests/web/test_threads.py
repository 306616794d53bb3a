"""The protocol pool (``web/threads.py``): results, exceptions, context and cancellation come
back to the awaiting task the way an executor would hand them back."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from authgate.web import threads

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def _call(pool: threads.Workers, fn: Any) -> Any:
    return await pool.submit(asyncio.get_running_loop(), fn)


def test_result_comes_back_from_a_pool_thread_in_a_copy_of_the_context() -> None:
    pool = threads.Workers(2, name="test-pool")
    seen: dict[str, str] = {}

    def work() -> int:
        seen["thread"] = threading.current_thread().name
        seen["var"] = VAR.get()
        VAR.set("changed in the thread")
        return 42

    async def main() -> tuple[int, str]:
        VAR.set("request-1")
        call = contextvars.copy_context().run
        result = await _call(pool, lambda: call(work))
        return result, VAR.get()

    result, after = asyncio.run(main())
    assert result == 42
    assert seen["thread"].startswith("test-pool_")
    assert seen["thread"] != threading.current_thread().name
    assert seen["var"] == "request-1"
    assert after == "request-1"  # the thread changed its copy only


def test_an_exception_reaches_the_awaiting_task_as_it_was_raised() -> None:
    pool = threads.Workers(1)
    error = LookupError("no such row")

    def fail() -> None:
        raise error

    async def main() -> BaseException:
        with pytest.raises(LookupError) as caught:
            await _call(pool, fail)
        return caught.value

    assert asyncio.run(main()) is error


def test_stop_iteration_becomes_a_runtime_error_instead_of_a_hang() -> None:
    pool = threads.Workers(1)

    def stop() -> None:
        raise StopIteration

    async def main() -> BaseException:
        with pytest.raises(RuntimeError) as caught:
            await asyncio.wait_for(_call(pool, stop), 5)
        return caught.value

    error = asyncio.run(main())
    assert isinstance(error.__cause__, StopIteration)


def test_calls_run_oldest_first_and_a_cancelled_call_never_runs() -> None:
    pool = threads.Workers(1)
    release = threading.Event()
    ran: list[str] = []

    def blocker() -> str:
        release.wait(5)
        ran.append("blocker")
        return "blocker"

    def record(name: str) -> str:
        ran.append(name)
        return name

    async def main() -> list[str | BaseException]:
        loop = asyncio.get_running_loop()
        first = pool.submit(loop, blocker)
        cancelled = pool.submit(loop, lambda: record("cancelled"))
        last = pool.submit(loop, lambda: record("last"))
        cancelled.cancel()
        release.set()
        return list(await asyncio.gather(first, last, cancelled, return_exceptions=True))

    results = asyncio.run(main())
    assert results[:2] == ["blocker", "last"]
    assert isinstance(results[2], asyncio.CancelledError)
    assert ran == ["blocker", "last"]


def test_a_task_cancelled_while_its_call_runs_gets_no_late_result() -> None:
    pool = threads.Workers(1)
    started, release = threading.Event(), threading.Event()
    errors: list[dict[str, Any]] = []

    def slow() -> str:
        started.set()
        release.wait(5)
        return "late"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        task = asyncio.ensure_future(_call(pool, slow))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        # The pool is still usable, and the late result was dropped without an error.
        assert await _call(pool, lambda: "next") == "next"

    asyncio.run(main())
    assert errors == []


def test_a_closed_loop_does_not_stop_the_thread() -> None:
    pool = threads.Workers(1)
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "for a closed loop"

    loop = asyncio.new_event_loop()
    pool.submit(loop, slow)
    assert started.wait(5)
    loop.close()
    release.set()

    async def main() -> str:
        result: str = await asyncio.wait_for(_call(pool, lambda: "still serving"), 5)
        return result

    assert asyncio.run(main()) == "still serving"
    assert pool.threads[0].is_alive()


def test_pools_are_shared_per_size_and_need_a_thread() -> None:
    assert threads._pool(3) is threads._pool(3)
    assert len(threads._pool(3).threads) == 3
    assert threads._pool(3) is not threads._pool(4)
    with pytest.raises(ValueError, match="at least one thread"):
        threads.Workers(0)
