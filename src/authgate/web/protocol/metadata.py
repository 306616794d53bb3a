"""GET the discovery documents: RFC 8414 metadata, RFC 9728 metadata, and the JWKS (RFC 7517)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import metadata, resources
from authgate.core.context import Context
from authgate.web import deps
from authgate.web.protocol.registration import registration_settings

CACHE = {"Cache-Control": "public, max-age=300"}


def _own_scopes(ctx: Context) -> list[str]:
    return list(resources.scope_names(resources.lookup(ctx, ctx.policy.audience)))


def _authorization_server(request: Request) -> dict[str, object]:
    ctx = deps.ctx_of(request)
    return metadata.authorization_server(
        ctx.policy,
        ctx.resources.scope_names(ctx),
        client_id_metadata_documents=ctx.fetcher is not None,
        registration_endpoint=registration_settings(request).enabled,
    )


async def authorization_server(request: Request) -> Response:
    # One trip to a worker thread; scopes and settings come from this node's caches.
    document = await run_in_threadpool(_authorization_server, request)
    return JSONResponse(document, headers=CACHE)


async def protected_resource(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    scopes = await run_in_threadpool(_own_scopes, ctx)
    return JSONResponse(metadata.protected_resource(ctx.policy, scopes), headers=CACHE)


async def jwks(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    document = await run_in_threadpool(ctx.keyring.jwks, ctx)
    max_age = ctx.policy.jwks_max_age
    return JSONResponse(document, headers={"Cache-Control": f"public, max-age={max_age}"})
