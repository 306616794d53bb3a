"""Liveness and readiness probes."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.web import deps


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    store = deps.ctx_of(request).store
    ping = getattr(store, "ping", None)
    ok = bool(await run_in_threadpool(ping)) if ping is not None else True
    return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)
