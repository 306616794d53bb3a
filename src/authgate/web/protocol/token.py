"""POST /oauth2/tokens (and /oauth2/token): parse the form, call core, render JSON."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import client_metadata, rate_limits, token
from authgate.core.context import Actor, Context
from authgate.core.errors import OAuthError
from authgate.core.params import Params
from authgate.core.tokens import TokenResponse
from authgate.web import deps, errors, metrics, threads
from authgate.web.middleware import note
from authgate.web.protocol.forms import read_form


def _exchange(
    ctx: Context,
    params: Params,
    authorization: str | None,
    actor: Actor,
    limit: tuple[str | None, int],
) -> TokenResponse:
    """Counted before anything is checked or issued: a refused request changes nothing."""
    client_id, per_minute = limit
    rate_limits.enforce_per_client(ctx, actor, "token", client_id, per_minute)
    return token.exchange(ctx, params, authorization, actor)


async def token_endpoint(request: Request) -> Response:
    observed = metrics.of(request)
    authorization = request.headers.get("authorization")
    try:
        params = await read_form(request)
        client_id = rate_limits.named_client(authorization, params)
        note(request, client_id=client_id)
        ctx = deps.ctx_of(request)
        # A new metadata-document client waits for its fetch (or refusal) apart.
        new = client_metadata.names_new_document(ctx, client_id)
        result = await (threads.run_apart if new else threads.run)(
            request,
            _exchange,
            ctx,
            params,
            authorization,
            deps.actor_of(request),
            (client_id, deps.settings_of(request).token_rate_per_client),
        )
    except OAuthError as exc:
        if observed is not None:
            observed.token_refused(exc)
        return errors.oauth_json(exc)
    if observed is not None:
        observed.token_issued(params.get("grant_type"))
        if result.continued:
            observed.token_continued()
    return JSONResponse(result.as_dict(), headers=errors.NO_STORE)
