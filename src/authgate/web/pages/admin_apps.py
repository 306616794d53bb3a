"""Admin console: apps (OAuth clients) and their secrets.

Every change calls ``core.clients`` — the functions behind ``/api/v2/oauth2-provider/apps`` — so
it is validated and audited the same way. A new secret is shown once, on the page that answers
the POST (never in a URL), with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from authgate.core import client_credentials, client_profiles, clients, service_access
from authgate.core.accounts import SignedIn
from authgate.core.errors import InvalidRequestError, ManagementError, NotFound
from authgate.core.models import App
from authgate.web import deps
from authgate.web.pages import common

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def app_path(app_id: str) -> str:
    from urllib.parse import quote

    return "/admin/apps/" + quote(app_id, safe="")


def origin(app: App) -> str:
    if app.metadata_document:
        return "metadata document"
    return "registered itself" if app.dynamically_registered else "operator"


def key_ids(app: App) -> list[str]:
    """The kids of a private_key_jwt client's registered keys ("(no kid)" for one without)."""
    keys = (app.jwks or {}).get("keys", [])
    return [str(k.get("kid") or "(no kid)") for k in keys if isinstance(k, dict)]


def fields_from(form: FormData, app: App | None) -> clients.AppFields:
    """The form's fields; a self-registered client's type, grants, first-party flag and admin
    access stay (the last two are never theirs)."""
    self_registered = app is not None and (app.dynamically_registered or app.metadata_document)
    method = common.text(form, "token_endpoint_auth_method")
    client_type = common.text(form, "client_type") if app is None else None
    return clients.AppFields(
        name=common.text(form, "name"),
        icon=common.text(form, "icon"),
        redirect_uris=common.lines(form, "redirect_uris"),
        client_type=client_type or None,  # type: ignore[arg-type]
        require_pkce=form.get("require_pkce") == "on",
        token_endpoint_auth_method=method if method in AUTH_METHODS else None,  # type: ignore[arg-type]
        grant_types=None if self_registered else [str(g) for g in form.getlist("grant_types")],
        scope=common.text(form, "scope"),
        first_party=None if self_registered else form.get("first_party") == "on",
        admin_access=None if self_registered else form.get("admin_access") == "on",
    )


def _form_values(form: FormData | None, app: App | None) -> dict[str, Any]:
    """What the form shows: the posted values after a refusal, else the app's."""
    if form is not None:
        return {
            "name": common.text(form, "name"),
            "icon": common.text(form, "icon"),
            "redirect_uris": common.text(form, "redirect_uris"),
            "client_type": common.text(form, "client_type") or (app.client_type if app else ""),
            "require_pkce": form.get("require_pkce") == "on",
            "method": common.text(form, "token_endpoint_auth_method"),
            "grant_types": [str(g) for g in form.getlist("grant_types")],
            "scope": common.text(form, "scope"),
            "first_party": form.get("first_party") == "on",
            "admin_access": form.get("admin_access") == "on",
        }
    if app is not None:
        return {
            "name": app.name,
            "icon": app.icon,
            "redirect_uris": "\n".join(app.redirect_uris),
            "client_type": app.client_type,
            "require_pkce": app.require_pkce,
            "method": app.token_endpoint_auth_method or "",
            "grant_types": list(app.grant_types),
            "scope": app.scope or "",
            "first_party": app.first_party,
            "admin_access": app.admin_access,
        }
    return {
        "name": "",
        "icon": "",
        "redirect_uris": "",
        "client_type": "confidential",
        "require_pkce": True,
        "method": "",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "",
        "first_party": False,
        "admin_access": False,
    }


def _page_values(
    app: App | None, form: FormData | None, failure: ManagementError | None
) -> dict[str, Any]:
    return {
        "app": app,
        "values": _form_values(form, app),
        "failure": failure,
        "grant_choices": GRANT_TYPES,
        "auth_methods": AUTH_METHODS,
    }


async def list_apps(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    ctx = deps.ctx_of(request)
    apps = await run_in_threadpool(ctx.store.list_apps)
    profiles = await run_in_threadpool(client_profiles.all_profiles, ctx)
    known = {app.id: client_profiles.match_app(ctx, app, profiles) for app in apps}
    return common.page(request, "admin_apps.html", who, apps=apps, origin=origin, known=known)


async def new_app(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    return common.page(request, "admin_app_new.html", who, **_page_values(None, None, None))


async def create_app(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    ctx = deps.ctx_of(request)
    made = await common.attempt(
        clients.create_app, ctx, common.actor(request, who), fields_from(form, None)
    )
    if isinstance(made, ManagementError):
        values = _page_values(None, form, made)
        return common.page(request, "admin_app_new.html", who, status=made.status, **values)
    return common.done(app_path(made.id), "app-created")


async def app_or_404(request: Request) -> App | Response:
    found = await common.attempt(
        clients.get_app, deps.ctx_of(request), request.path_params["app_id"]
    )
    if isinstance(found, ManagementError):
        return common.error(request, InvalidRequestError("No such app"), 404)
    return found


async def show(
    request: Request,
    who: SignedIn,
    app: App,
    *,
    form: FormData | None = None,
    failure: ManagementError | None = None,
) -> Response:
    ctx = deps.ctx_of(request)
    secrets = await run_in_threadpool(ctx.store.list_secrets, app.id)
    # The resources an operator may grant the app's client_credentials tokens.
    grantable = (
        await run_in_threadpool(ctx.store.list_resources) if service_access.can_use(app) else []
    )
    issuer = ctx.policy.issuer.rstrip("/")
    profile = await run_in_threadpool(client_profiles.match_app, ctx, app)
    return common.page(
        request,
        "admin_app.html",
        who,
        status=failure.status if failure else 200,
        secrets=secrets,
        grantable=grantable,
        can_use_client_credentials=service_access.can_use(app),
        origin=origin(app),
        accepted_methods=client_credentials.accepted_methods(app),
        key_ids=key_ids(app),
        issuer=issuer,
        app_path=app_path(app.id),
        profile=profile,
        **_page_values(app, form, failure),
    )


async def show_app(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    app = await app_or_404(request)
    if not isinstance(app, App):
        return app
    return await show(request, who, app)


async def update_app(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    app = await app_or_404(request)
    if not isinstance(app, App):
        return app
    ctx = deps.ctx_of(request)
    updated = await common.attempt(
        clients.update_app, ctx, common.actor(request, who), app.id, fields_from(form, app)
    )
    if isinstance(updated, ManagementError):
        return await show(request, who, app, form=form, failure=updated)
    return common.done(app_path(app.id), "app-saved")


async def delete_app(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    app = await app_or_404(request)
    if not isinstance(app, App):
        return app
    if form.get("confirm") != "on":
        failure = ManagementError("Tick the box to confirm that the app should be deleted")
        return await show(request, who, app, failure=failure)
    ctx = deps.ctx_of(request)
    await common.attempt(clients.delete_app, ctx, common.actor(request, who), app.id)
    return common.done("/admin/apps", "app-deleted")


async def create_secret(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    app = await app_or_404(request)
    if not isinstance(app, App):
        return app
    ctx = deps.ctx_of(request)
    made = await common.attempt(clients.create_secret, ctx, common.actor(request, who), app.id)
    if isinstance(made, ManagementError):
        return await show(request, who, app, failure=made)
    _, value = made
    return common.page(
        request,
        "admin_secret_created.html",
        who,
        status=201,
        app=app,
        app_path=app_path(app.id),
        secret=value,
    )


async def delete_secret(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    app = await app_or_404(request)
    if not isinstance(app, App):
        return app
    ctx = deps.ctx_of(request)
    secret_id = request.path_params["secret_id"]
    gone = await common.attempt(
        clients.delete_secret, ctx, common.actor(request, who), app.id, secret_id
    )
    if isinstance(gone, NotFound):
        return common.error(request, InvalidRequestError("No such secret for this app"), 404)
    return common.done(app_path(app.id), "secret-deleted")
