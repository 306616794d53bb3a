"""DELETE /oauth2/tokens?client_id=…: the signed-in user withdraws one app's codes and tokens."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from authgate.core import clients, consent
from authgate.core.errors import ValidationFailed
from authgate.web import deps


async def withdraw_app_tokens(request: Request) -> Response:
    # The user themself (browser session or personal API token), never an app's OAuth token:
    # an app may not disconnect the user's other apps.
    who = await run_in_threadpool(deps.account_holder, request)
    client_id = request.query_params.get("client_id")
    if not client_id:
        raise ValidationFailed("Missing client_id", validations={"client_id": "required"})
    ctx = deps.ctx_of(request)
    app = await run_in_threadpool(clients.get_app, ctx, client_id)
    actor = deps.actor_for(request, who)
    await run_in_threadpool(consent.withdraw, ctx, actor, who.user.id, app.id)
    return Response(status_code=204)
