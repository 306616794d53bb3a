"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: this node can serve
OAuth requests) probes.

Readiness includes whether the node can *write*: a node on a full disk or a read-only database
still answers reads, but every token it would issue fails, so a load balancer must stop
sending it traffic. The check is a real committed write (``WriteProbe``), at most once a second
per process however often ``/readyz`` is called, so the probe cannot be used to queue the
writers behind it; and a request that failed for the database in the last ``RECENT_FAILURE``
keeps the node unready too.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import keys
from authgate.core.context import Context
from authgate.web import deps

log = logging.getLogger("authgate.health")
#: ``app.state.schema_current``: a callable that says whether the database schema is the one
#: this code needs. app.py sets it; without it the schema is assumed current (``serve``
#: refuses to start on another one).
SCHEMA_CHECK = "schema_current"
#: ``app.state.write_probe``: this app's ``WriteProbe`` (made on the first readiness check).
WRITE_PROBE = "write_probe"
PROBE_INTERVAL = timedelta(seconds=1)
#: ``app.state.storage_failed_at``: when a request last failed for the database (``errors.py``).
STORAGE_FAILED_AT = "storage_failed_at"
#: How long a request's database failure keeps the node unready. A small probe write can still
#: fit where a token's cannot (a file that may not grow), so the requests' own outcome counts.
RECENT_FAILURE = timedelta(seconds=5)


def storage_failed(request: Request) -> None:
    """Note that a request just failed for the database (readiness reads it)."""
    setattr(request.app.state, STORAGE_FAILED_AT, deps.ctx_of(request).clock.now())


class WriteProbe:
    """Whether this node can write, by writing: one counter hit on the rate-limit table under a
    key of this process's own (purged with the other counters after a day). Probes at most
    once per ``PROBE_INTERVAL``; a call meanwhile, or while a probe runs, gets the last
    outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: datetime | None = None
        self._ok = True
        self.key = f"readiness:{socket.gethostname()[:64]}:{os.getpid()}"

    def __call__(self, ctx: Context) -> bool:
        now = ctx.clock.now()
        if self._at is not None and now - self._at < PROBE_INTERVAL:
            return self._ok
        if not self._lock.acquire(blocking=False):
            return self._ok
        try:
            window = now.replace(minute=0, second=0, microsecond=0)
            self._ok = _safely(
                "writable", lambda: ctx.store.hit_rate_limit(self.key, window, now) > 0
            )
            self._at = now
        finally:
            self._lock.release()
        return self._ok


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _checks(request: Request) -> dict[str, bool]:
    """Database, then whether it takes writes, the schema and the signing key (each needs the
    database); a failed database check leaves the later checks out."""
    ctx = deps.ctx_of(request)
    ping = getattr(ctx.store, "ping", None)
    checks = {"database": bool(ping()) if callable(ping) else True}
    if not checks["database"]:
        return checks
    probe: WriteProbe | None = getattr(request.app.state, WRITE_PROBE, None)
    if probe is None:
        probe = WriteProbe()
        setattr(request.app.state, WRITE_PROBE, probe)
    failed_at: datetime | None = getattr(request.app.state, STORAGE_FAILED_AT, None)
    recent = failed_at is not None and ctx.clock.now() - failed_at < RECENT_FAILURE
    checks["writable"] = probe(ctx) and not recent
    schema: Callable[[], bool] | None = getattr(request.app.state, SCHEMA_CHECK, None)
    checks["schema"] = _safely("schema", schema) if schema is not None else True
    checks["signing_key"] = _safely(
        "signing_key", lambda: keys.active(list(keys.current_keys(ctx))) is not None
    )
    return checks


def _safely(name: str, check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        log.warning("readiness check %s failed", name, exc_info=True)
        return False


async def readyz(request: Request) -> Response:
    checks = await run_in_threadpool(_checks, request)
    failed = [name for name, ok in checks.items() if not ok]
    headers = {"Cache-Control": "no-store"}
    if not failed:
        return JSONResponse({"status": "ok"}, headers=headers)
    body = {
        "status": "unavailable",
        "failed": failed,
        "checks": {name: "ok" if ok else "failed" for name, ok in checks.items()},
    }
    return JSONResponse(body, status_code=503, headers=headers)
