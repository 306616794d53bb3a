"""Work a server process does besides answering requests: the periodic cleanup (expired rows,
and the flow timeline beyond its retention and row cap), and writing out pending flow steps at
shutdown.

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
from authgate.core import cleanup, flow_log
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
        if settings.flows_enabled:
            flows = await run_in_threadpool(purge_flows, ctx, settings)
            report.deleted["flows"] = flows
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


def purge_flows(ctx: Context, settings: Settings) -> int:
    """The flow steps and flows beyond the retention and the row cap (core/flow_log.py)."""
    return flow_log.purge(
        ctx,
        retention=timedelta(seconds=settings.flow_retention_seconds),
        cap=settings.flow_max_steps,
        batch_size=settings.cleanup_batch_size,
    )


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
    writer = getattr(state, "flow_writer", None)
    task = None
    if getattr(state, "background", False) and settings.cleanup_interval_seconds > 0:
        task = asyncio.create_task(_loop(state.ctx, settings, getattr(state, "metrics", None)))
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if writer is not None:
            await run_in_threadpool(writer.close)
