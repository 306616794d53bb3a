"""Management API for OAuth clients ("apps") and their secrets (Coder's ``oauth2-provider/apps``).

Every rule lives in ``core.clients``; this module maps HTTP to it and back. The only HTTP-level
rule is Coder's ``callback_url``: accepted as the first redirect URI.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request, Response

from authgate.core import client_profiles, clients, service_access
from authgate.core.context import Context
from authgate.core.errors import Forbidden, NotFound, ValidationFailed
from authgate.core.models import App
from authgate.schemas import (
    AppIn,
    AppOut,
    SecretCreated,
    SecretOut,
    ServiceAccessEntry,
    service_access_of,
)
from authgate.web import deps
from authgate.web.admin.auth import Admin, Ctx, CurrentPrincipal, actor, no_store

router = APIRouter(prefix="/oauth2-provider/apps", tags=["apps"])


def redirect_uris_of(body: AppIn) -> list[str] | None:
    """``redirect_uris``, or Coder's ``callback_url`` as the only one; both must agree."""
    if body.redirect_uris is None:
        return None if body.callback_url is None else [body.callback_url]
    if body.callback_url is not None and body.redirect_uris[:1] != [body.callback_url]:
        message = "must equal redirect_uris[0] when both are sent"
        raise ValidationFailed(
            f"Invalid callback_url: {message}", validations={"callback_url": message}
        )
    return body.redirect_uris


def fields_of(body: AppIn) -> clients.AppFields:
    return clients.AppFields(
        name=body.name,
        icon=body.icon,
        redirect_uris=redirect_uris_of(body),
        client_type=body.client_type,
        require_pkce=body.require_pkce,
        token_endpoint_auth_method=body.token_endpoint_auth_method,
        grant_types=body.grant_types,
        scope=body.scope,
        first_party=body.first_party,
        admin_access=body.admin_access,
    )


def app_out(
    ctx: Context, app: App, profiles: Sequence[client_profiles.Profile] | None = None
) -> AppOut:
    """The app as the API shows it, with the known-client profile it matches."""
    profile = client_profiles.match_app(ctx, app, profiles)
    out = AppOut.of(app, ctx.policy.issuer)
    return out.model_copy(update={"client_profile": profile.id if profile else None})


def render(ctx: Context, apps: Sequence[App]) -> list[AppOut]:
    profiles = client_profiles.all_profiles(ctx)
    return [app_out(ctx, app, profiles) for app in apps]


def authorized_apps(ctx: Context, user_id: str) -> list[AppOut]:
    """Apps the user has authorized and still holds a live token for."""
    return render(ctx, ctx.store.list_apps_authorized_by(user_id, ctx.clock.now()))


@router.get("", response_model=list[AppOut])
def list_apps(ctx: Ctx, who: CurrentPrincipal, user_id: str | None = None) -> list[AppOut]:
    """All apps (administrators), or the apps that ``user_id`` has authorized."""
    asks_for_self = user_id is not None and user_id == who.user.id
    if not (asks_for_self or who.is_admin):
        raise Forbidden("Only an administrator may list all apps or another user's apps")
    if not who.is_admin:
        deps.require_account_holder(who)  # as GET /users/me/apps
    if user_id is None:
        return render(ctx, ctx.store.list_apps())
    if ctx.store.get_user(user_id) is None:
        raise NotFound("No such user")
    return authorized_apps(ctx, user_id)


@router.post("", status_code=201, response_model=AppOut)
def create_app(ctx: Ctx, who: Admin, request: Request, body: AppIn) -> AppOut:
    app = clients.create_app(ctx, actor(request, who), fields_of(body))
    return app_out(ctx, app)


@router.get("/{app:path}/secrets", response_model=list[SecretOut])
def list_secrets(ctx: Ctx, who: Admin, app: str) -> list[SecretOut]:
    return [SecretOut.of(secret) for secret in clients.list_secrets(ctx, app)]


@router.post("/{app:path}/secrets", status_code=201, response_model=SecretCreated)
def create_secret(
    ctx: Ctx, who: Admin, request: Request, response: Response, app: str
) -> SecretCreated:
    secret, value = clients.create_secret(ctx, actor(request, who), app)
    no_store(response)
    return SecretCreated(id=secret.id, client_secret_full=value)


@router.delete("/{app:path}/secrets/{secret_id}", status_code=204, response_class=Response)
def delete_secret(ctx: Ctx, who: Admin, request: Request, app: str, secret_id: str) -> None:
    clients.delete_secret(ctx, actor(request, who), app, secret_id)


@router.get("/{app:path}/service-access", response_model=list[ServiceAccessEntry])
def get_service_access(ctx: Ctx, who: Admin, app: str) -> list[ServiceAccessEntry]:
    """The resources and scopes the app's client_credentials tokens may reach."""
    return service_access_of(clients.get_app(ctx, app))


@router.put("/{app:path}/service-access", response_model=list[ServiceAccessEntry])
def put_service_access(
    ctx: Ctx, who: Admin, request: Request, app: str, body: list[ServiceAccessEntry]
) -> list[ServiceAccessEntry]:
    """Replace the list (`[]` takes everything away). Each resource must be registered and
    each scope defined by it; the app must be a confidential app with `client_credentials`
    among its grant types to be granted anything. Audited as `app.service_access_changed`;
    every node issues by the new list from its next request on."""
    entries = [entry.to_core() for entry in body]
    updated = service_access.set_access(ctx, actor(request, who), app, entries)
    return service_access_of(updated)


# A metadata-document client's id is an https URL: ``{app:path}`` takes its slashes (sent as
# %2F or not), so these come after the ``/{app}/secrets`` routes they would otherwise swallow.


@router.get("/{app:path}", response_model=AppOut)
def get_app(ctx: Ctx, who: Admin, app: str) -> AppOut:
    return app_out(ctx, clients.get_app(ctx, app))


@router.put("/{app:path}", response_model=AppOut)
def update_app(ctx: Ctx, who: Admin, request: Request, app: str, body: AppIn) -> AppOut:
    updated = clients.update_app(ctx, actor(request, who), app, fields_of(body))
    return app_out(ctx, updated)


@router.delete("/{app:path}", status_code=204, response_class=Response)
def delete_app(ctx: Ctx, who: Admin, request: Request, app: str) -> None:
    clients.delete_app(ctx, actor(request, who), app)
