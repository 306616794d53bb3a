"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: this node can serve
OAuth requests) probes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import keys
from authgate.web import deps

log = logging.getLogger("authgate.health")
#: ``app.state.schema_current``: a callable that says whether the database schema is the one
#: this code needs. app.py sets it; without it the schema is assumed current (``serve``
#: refuses to start on another one).
SCHEMA_CHECK = "schema_current"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _checks(request: Request) -> dict[str, bool]:
    """Database, then schema and signing key (both need the database); the first failure
    leaves the later checks out."""
    ctx = deps.ctx_of(request)
    ping = getattr(ctx.store, "ping", None)
    checks = {"database": bool(ping()) if callable(ping) else True}
    if not checks["database"]:
        return checks
    schema: Callable[[], bool] | None = getattr(request.app.state, SCHEMA_CHECK, None)
    checks["schema"] = _safely("schema", schema) if schema is not None else True
    checks["signing_key"] = _safely(
        "signing_key", lambda: keys.active(list(ctx.keyring.keys(ctx))) is not None
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
