"""POST /oauth2/tokens (and /oauth2/token): parse the form, call core, render JSON."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import token
from authgate.core.errors import OAuthError
from authgate.web import deps, errors
from authgate.web.protocol.forms import read_form


async def token_endpoint(request: Request) -> Response:
    try:
        params = await read_form(request)
        result = await run_in_threadpool(
            token.exchange,
            deps.ctx_of(request),
            params,
            request.headers.get("authorization"),
            deps.actor_of(request),
        )
    except OAuthError as exc:
        return errors.oauth_json(exc)
    return JSONResponse(result.as_dict(), headers=errors.NO_STORE)
