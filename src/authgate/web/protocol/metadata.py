"""GET the discovery documents: RFC 8414 metadata, RFC 9728 metadata, and the JWKS (RFC 7517)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import keys, metadata, resources
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import Context
from authgate.web import deps, threads

CACHE = {"Cache-Control": "public, max-age=300"}


class Rendered:
    """One endpoint's last JSON body and what it was made from: while that stays equal, the
    document is neither built nor encoded again (these bodies change only with the keys, the
    resources or the settings, and are requested on every connection)."""

    def __init__(self) -> None:
        self._last: tuple[object, bytes] | None = None

    def body(self, made_from: object, build: Callable[[], Any]) -> bytes:
        last = self._last  # one read: another thread may replace it meanwhile
        if last is not None and last[0] == made_from:
            return last[1]
        # As JSONResponse renders it.
        body = json.dumps(
            build(), ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")
        self._last = (made_from, body)
        return body


_metadata = Rendered()
_openid = Rendered()
_jwks = Rendered()


def _own_scopes(ctx: Context) -> list[str]:
    return list(resources.scope_names(resources.lookup(ctx, ctx.policy.audience)))


def _authorization_server(
    request: Request, cached: bool = False, openid: bool = False
) -> bytes | None:
    """The RFC 8414 document (or with ``openid`` the OpenID Provider document), encoded; with
    ``cached``, None unless every part is in this node's caches (so it can be answered on the
    event loop, without a trip to a worker thread)."""
    ctx = deps.ctx_of(request)
    if cached:
        scopes = resources.cached_all_scope_names(ctx)
        registration = runtime_settings.cached(ctx)
        if scopes is None or registration is None:
            return None
    else:
        scopes = resources.all_scope_names(ctx)
        registration = runtime_settings.current(ctx)
    policy, enabled = ctx.policy, registration.enabled
    # Advertised while the fetcher exists (the hard switch) and the operator's switch is on.
    cimd = ctx.fetcher is not None and registration.documents_enabled
    return (_openid if openid else _metadata).body(
        (policy, tuple(scopes), cimd, enabled),
        lambda: metadata.authorization_server(
            policy,
            scopes,
            client_id_metadata_documents=cimd,
            registration_endpoint=enabled,
            openid=openid,
        ),
    )


async def authorization_server(request: Request) -> Response:
    # From this node's caches when they are fresh, else one trip to a worker thread.
    body = _authorization_server(request, cached=True)
    if body is None:
        body = await threads.run(request, _authorization_server, request)
    return Response(body, media_type="application/json", headers=CACHE)


async def openid_configuration(request: Request) -> Response:
    """OIDC Discovery §4: the same builder as RFC 8414's, with the OpenID fields."""
    body = _authorization_server(request, cached=True, openid=True)
    if body is None:
        body = await threads.run(request, _authorization_server, request, openid=True)
    return Response(body, media_type="application/json", headers=CACHE)


async def protected_resource(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    scopes = await threads.run(request, _own_scopes, ctx)
    return JSONResponse(metadata.protected_resource(ctx.policy, scopes), headers=CACHE)


async def jwks(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    document = keys.cached_jwks(ctx)
    if document is None:
        document = await threads.run(request, keys.jwks, ctx)
    body = _jwks.body(document["keys"], lambda: document)
    max_age = ctx.policy.jwks_max_age
    return Response(
        body, media_type="application/json", headers={"Cache-Control": f"public, max-age={max_age}"}
    )
