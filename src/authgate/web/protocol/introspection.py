"""POST /oauth2/introspect (RFC 7662) and POST /oauth2/revoke (RFC 7009)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import flows as core_flows
from authgate.core import introspection, rate_limits, revocation
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidClientError, OAuthError
from authgate.core.params import Params
from authgate.web import deps, errors, flows, threads
from authgate.web.middleware import note
from authgate.web.protocol.forms import read_form


def _introspect(
    ctx: Context,
    params: Params,
    authorization: str | None,
    actor: Actor,
    limit: tuple[str | None, int],
) -> dict[str, Any]:
    client_id, per_minute = limit
    rate_limits.enforce_per_client(ctx, actor, "introspection", client_id, per_minute)
    return introspection.introspect(ctx, params, authorization, actor)


async def introspect(request: Request) -> Response:
    authorization = request.headers.get("authorization")
    client_id: str | None = None
    try:
        params = await read_form(request)
        client_id = rate_limits.named_client(authorization, params)
        note(request, client_id=client_id)
        body = await threads.run(
            request,
            _introspect,
            deps.ctx_of(request),
            params,
            authorization,
            deps.actor_of(request),
            (client_id, deps.settings_of(request).introspection_rate_per_client),
        )
    except OAuthError as exc:
        flows.record_refusal(request, "introspection", exc, client_id)
        return errors.oauth_json(exc)
    return JSONResponse(body, headers=errors.NO_STORE)


async def revoke(request: Request) -> Response:
    with flows.tracing(request):
        return await _revoke(request)


async def _revoke(request: Request) -> Response:
    try:
        params = await read_form(request)
        core_flows.note(
            client_id=rate_limits.named_client(request.headers.get("authorization"), params)
        )
        await threads.run(
            request,
            revocation.revoke,
            deps.ctx_of(request),
            params,
            request.headers.get("authorization"),
            deps.actor_of(request),
        )
    except OAuthError as exc:
        flows.refused("client_auth" if isinstance(exc, InvalidClientError) else "revocation", exc)
        return errors.oauth_json(exc)
    # RFC 7009 §2.2: 200 whether or not there was anything to revoke.
    return Response(status_code=200, headers=errors.NO_STORE)
