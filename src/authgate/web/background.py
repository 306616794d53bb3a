"""Work a server process does besides answering requests: the periodic cleanup.

Started by the app's lifespan only when ``authgate serve`` asks for it (tests build the app
without it and call ``core.cleanup.run`` themselves). Each process waits a random part of the
interval before its first pass, so nodes started together do not clean in lockstep. The pass
runs in a worker thread: it is database work and must not block the event loop. A failed pass
(the database is down, say) is logged and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from authgate.config import Settings
from authgate.core import cleanup
from authgate.core.context import Context
from authgate.core.ports import StoreUnavailableError
from authgate.web.metrics import Metrics

log = logging.getLogger("authgate.cleanup")


async def cleanup_once(ctx: Context, settings: Settings, metrics: Metrics | None) -> None:
    try:
        report = await run_in_threadpool(
            cleanup.run,
            ctx,
            retention=timedelta(seconds=settings.cleanup_retention_seconds),
            batch_size=settings.cleanup_batch_size,
        )
    except StoreUnavailableError as exc:
        log.warning(json.dumps({"event": "cleanup.failed", "reason": str(exc)[:200]}))
        return
    except Exception:
        log.exception("cleanup pass failed")
        return
    if metrics is not None:
        for kind, count in report.deleted.items():
            if count:
                metrics.cleanup_deleted.labels(kind).inc(count)
    if report.total:
        line = {"event": "cleanup.done", "complete": report.complete, **report.deleted}
        log.info(json.dumps(line))


async def _loop(ctx: Context, settings: Settings, metrics: Metrics | None) -> None:
    interval = settings.cleanup_interval_seconds
    await asyncio.sleep(random.uniform(0.1, 1.0) * interval)  # noqa: S311 (jitter, not a secret)
    while True:
        await cleanup_once(ctx, settings, metrics)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state = app.state
    settings: Settings = state.settings
    if settings.cleanup_interval_seconds <= 0:
        yield
        return
    task = asyncio.create_task(_loop(state.ctx, settings, getattr(state, "metrics", None)))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
