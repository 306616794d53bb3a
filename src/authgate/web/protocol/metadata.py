"""GET /.well-known/oauth-authorization-server and /.well-known/oauth-protected-resource."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import metadata
from authgate.web import deps

CACHE = {"Cache-Control": "public, max-age=300"}


async def authorization_server(request: Request) -> Response:
    return JSONResponse(metadata.authorization_server(deps.ctx_of(request).policy), headers=CACHE)


async def protected_resource(request: Request) -> Response:
    return JSONResponse(metadata.protected_resource(deps.ctx_of(request).policy), headers=CACHE)
