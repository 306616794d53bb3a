"""The hot protocol endpoints, dispatched by exact method and path, in front of the framework.

Token, introspection, revocation, JWKS and metadata requests arrive on every MCP connection and
every refresh. The framework passes each request through its own middleware (server errors,
telemetry, body limits, exception handlers, exit stacks), then a router that tries its routes
one regular expression at a time, then the request/response adapter; for these fixed paths one
dictionary lookup, before all of it, finds the same endpoint function. The request still passes
through ``RequestContext`` (request id, access log, metrics, body limit, the bare 500), and
errors end in the same handlers (``web/errors.py``) as on the router.

Paths with parameters, HEAD, a ``root_path`` and everything else go to the framework untouched
(where ``RequestContext`` is the outermost of the app's own middleware).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from authgate.web.errors import EXCEPTION_HANDLERS
from authgate.web.fairness import FairShare, FairShares
from authgate.web.middleware import RequestContext


class HotRoutes:
    """An ASGI app: ``routes`` answered under ``RequestContext``, anything else by ``app``."""

    def __init__(self, app: ASGIApp, routes: Iterable[Route]) -> None:
        self.app = app
        self._front = RequestContext(self._serve)
        self.table: dict[tuple[str, str], Route] = {}
        for route in routes:
            if "{" in route.path:
                raise ValueError(f"a hot route needs a fixed path: {route.path}")
            for method in route.methods or ():
                if method != "HEAD":  # the framework answers HEAD without a body
                    self.table[(method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.table.get((scope["method"], scope["path"]))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the metrics label (web/metrics.route_template)
        await self._front(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: Route = scope["route"]
        request = Request(scope, receive, send)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handled = await _handled(request, exc)
            if handled is None:
                raise  # RequestContext answers the 500 under the request id
            response = handled
        await response(scope, receive, send)


class AuthgateApp(FastAPI):
    """The framework's app, with ``HotRoutes`` in front of it once ``serve_hot`` is called,
    and every request admitted by a ``FairShare`` once ``share_fairly`` is."""

    _hot: HotRoutes | None = None
    _fair: FairShares | None = None

    def serve_hot(self, routes: Iterable[Route]) -> None:
        self._hot = HotRoutes(super().__call__, routes)

    def share_fairly(self, share: FairShare, *, trust_proxy_headers: bool) -> None:
        self._fair = FairShares(self._dispatch, share, trust_proxy_headers=trust_proxy_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self._fair or self._dispatch)(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._hot is None or self.root_path:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # as the framework sets it: the endpoints find their state there
        await self._hot(scope, receive, send)


async def _handled(request: Request, exc: Exception) -> Response | None:
    """The response of the handler the framework would have used, if one is registered for
    this exception; an unexpected exception is left to ``RequestContext``."""
    for kind in type(exc).__mro__:
        if kind is Exception:
            return None
        handler: Any = EXCEPTION_HANDLERS.get(kind)
        if handler is not None:
            result = handler(request, exc)
            response: Response = await result if inspect.isawaitable(result) else result
            return response
    return None
