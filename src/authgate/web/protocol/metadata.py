"""GET the discovery documents: RFC 8414 metadata, RFC 9728 metadata, and the JWKS (RFC 7517)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import metadata, resources
from authgate.core.context import Context
from authgate.web import deps, threads
from authgate.web.protocol.registration import settings_cache

CACHE = {"Cache-Control": "public, max-age=300"}


def _own_scopes(ctx: Context) -> list[str]:
    return list(resources.scope_names(resources.lookup(ctx, ctx.policy.audience)))


def _authorization_server(request: Request, cached: bool = False) -> dict[str, object] | None:
    """The RFC 8414 document; with ``cached``, None unless every part is in this node's caches
    (so it can be answered on the event loop, without a trip to a worker thread)."""
    ctx = deps.ctx_of(request)
    if cached:
        scopes = ctx.resources.cached_scope_names(ctx)
        registration = settings_cache(request).cached(ctx)
        if scopes is None or registration is None:
            return None
    else:
        scopes = ctx.resources.scope_names(ctx)
        registration = settings_cache(request).get(ctx)
    return metadata.authorization_server(
        ctx.policy,
        scopes,
        client_id_metadata_documents=ctx.fetcher is not None,
        registration_endpoint=registration.enabled,
    )


async def authorization_server(request: Request) -> Response:
    # From this node's caches when they are fresh, else one trip to a worker thread.
    document = _authorization_server(request, cached=True)
    if document is None:
        document = await threads.run(request, _authorization_server, request)
    return JSONResponse(document, headers=CACHE)


async def protected_resource(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    scopes = await threads.run(request, _own_scopes, ctx)
    return JSONResponse(metadata.protected_resource(ctx.policy, scopes), headers=CACHE)


async def jwks(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    document = ctx.keyring.cached_jwks(ctx)
    if document is None:
        document = await threads.run(request, ctx.keyring.jwks, ctx)
    max_age = ctx.policy.jwks_max_age
    return JSONResponse(document, headers={"Cache-Control": f"public, max-age={max_age}"})
