"""POST /oauth2/tokens (and /oauth2/token): parse the form, call core, render JSON."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import client_metadata, flow_log, rate_limits
from authgate.core import flows as core_flows
from authgate.core import token_endpoint as core_token
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidClientError, OAuthError
from authgate.core.flows import StepKind
from authgate.core.params import Params
from authgate.core.tokens import TokenResponse
from authgate.web import deps, errors, flows, metrics, threads
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
    try:
        rate_limits.enforce_per_client(ctx, actor, "token", client_id, per_minute)
        return core_token.exchange(ctx, params, authorization, actor)
    except InvalidClientError:
        # Refused before the grant read its code or token: find the flow they belong to. Only
        # here: a refused grant read them already, and a flood of rate-limited requests must
        # not cost a read each.
        flow_log.tie_refused_token_request(ctx, params)
        raise


#: The flow step a token request records, by grant type.
_STEPS: dict[str | None, StepKind] = {
    "authorization_code": "token",
    "refresh_token": "refresh",
    "client_credentials": "client_credentials",
}


async def token_endpoint(request: Request) -> Response:
    with flows.tracing(request):
        return await _token(request)


async def _token(request: Request) -> Response:
    observed = metrics.of(request)
    authorization = request.headers.get("authorization")
    grant_type: str | None = None
    try:
        params = await read_form(request)
        grant_type = params.get("grant_type")
        client_id = rate_limits.named_client(authorization, params)
        note(request, client_id=client_id)
        core_flows.note(client_id=client_id)
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
        kind = "client_auth" if isinstance(exc, InvalidClientError) else _STEPS.get(grant_type)
        flows.refused(kind or "token", exc, grant_type=(grant_type or "")[:64])
        return errors.oauth_json(exc)
    if observed is not None:
        observed.token_issued(params.get("grant_type"))
        if result.continued:
            observed.token_continued()
    detail: dict[str, Any] = {"scope": result.scope, "continued": result.continued}
    if result.id_token is not None:  # that one came (OIDC Core §3.1.3.3), never its value
        detail["id_token"] = "issued"
    core_flows.step(_STEPS.get(grant_type, "token"), "ok", None, **detail)
    return JSONResponse(result.as_dict(), headers=errors.NO_STORE)
