"""Admin console: what an app's client_credentials tokens may reach (its service access).

Both forms call ``core.service_access`` — the functions behind
``/api/v2/oauth2-provider/apps/{app}/service-access`` and ``authgate apps access`` — so they are
validated and audited the same way (``app.service_access_changed``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authgate.core import service_access
from authgate.core.errors import ManagementError
from authgate.core.models import App
from authgate.web import deps
from authgate.web.pages import admin_apps, common


async def grant_access(request: Request) -> Response:
    """Add a resource (and the scopes typed, space-separated) to the app's service access."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    app = await admin_apps.app_or_404(request)
    if not isinstance(app, App):
        return app
    changed = await common.attempt(
        service_access.grant,
        deps.ctx_of(request),
        common.actor(request, who),
        app.id,
        common.text(form, "resource"),
        common.text(form, "scopes").split(),
    )
    if isinstance(changed, ManagementError):
        return await admin_apps.show(request, who, app, failure=changed)
    return common.done(admin_apps.app_path(app.id), "access-granted")


async def revoke_access(request: Request) -> Response:
    """Take a resource away from the app's service access."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    app = await admin_apps.app_or_404(request)
    if not isinstance(app, App):
        return app
    changed = await common.attempt(
        service_access.revoke,
        deps.ctx_of(request),
        common.actor(request, who),
        app.id,
        common.text(form, "resource"),
    )
    if isinstance(changed, ManagementError):
        return await admin_apps.show(request, who, app, failure=changed)
    return common.done(admin_apps.app_path(app.id), "access-revoked")
