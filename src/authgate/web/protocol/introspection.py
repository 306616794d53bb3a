"""POST /oauth2/introspect (RFC 7662) and POST /oauth2/revoke (RFC 7009)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import introspection, revocation
from authgate.core.errors import OAuthError
from authgate.web import deps, errors
from authgate.web.protocol.forms import read_form


async def introspect(request: Request) -> Response:
    try:
        params = await read_form(request)
        body = await run_in_threadpool(
            introspection.introspect,
            deps.ctx_of(request),
            params,
            request.headers.get("authorization"),
        )
    except OAuthError as exc:
        return errors.oauth_json(exc)
    return JSONResponse(body, headers=errors.NO_STORE)


async def revoke(request: Request) -> Response:
    try:
        params = await read_form(request)
        await run_in_threadpool(
            revocation.revoke,
            deps.ctx_of(request),
            params,
            request.headers.get("authorization"),
            deps.actor_of(request),
        )
    except OAuthError as exc:
        return errors.oauth_json(exc)
    # RFC 7009 §2.2: 200 whether or not there was anything to revoke.
    return Response(status_code=200, headers=errors.NO_STORE)
