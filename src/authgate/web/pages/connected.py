"""Connected apps: what each app a person allowed may do, since when, and "Disconnect".

Disconnecting is ``core.consent.withdraw`` (as ``DELETE /api/v2/users/me/apps/{app}``): every
code, grant and token the person gave the app is revoked, and the next authorization asks again.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from authgate.core import consent
from authgate.core.accounts import SignedIn
from authgate.core.errors import InvalidRequestError
from authgate.core.models import Resource
from authgate.web import deps
from authgate.web.pages import common


def _resources(request: Request) -> dict[str, Resource]:
    return {r.identifier: r for r in deps.ctx_of(request).store.list_resources()}


async def connected_apps(request: Request) -> Response:
    who = await common.signed_in_page(request)
    if not isinstance(who, SignedIn):
        return who
    ctx = deps.ctx_of(request)
    apps = await run_in_threadpool(consent.connected_apps, ctx, who.user.id)
    resources = await run_in_threadpool(_resources, request)
    return common.page(request, "connected_apps.html", who, apps=apps, resources=resources)


async def disconnect(request: Request) -> Response:
    who = await common.signed_in_page(request)
    if not isinstance(who, SignedIn):
        return who
    form = await common.checked_form(request, who)
    if form is None:
        return common.csrf_refused(request)
    ctx = deps.ctx_of(request)
    app_id = common.text(form, "app_id")
    connected = await run_in_threadpool(
        ctx.store.list_apps_authorized_by, who.user.id, ctx.clock.now()
    )
    if app_id not in {app.id for app in connected}:
        return common.error(request, InvalidRequestError("This app is not connected"), 404)
    await run_in_threadpool(consent.withdraw, ctx, common.actor(request, who), who.user.id, app_id)
    return common.done("/account/apps", "disconnected")
