"""Admin console: the overview, resources and their scopes, signing keys, registration
settings and the audit log — each change through the core function the API calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from authgate.core import keys, resources
from authgate.core import registration_settings as runtime_settings
from authgate.core.accounts import SignedIn
from authgate.core.context import Context
from authgate.core.errors import InvalidRequestError, ManagementError, ValidationFailed
from authgate.core.models import AuditQuery, Resource, ScopeInfo
from authgate.schemas import key_state
from authgate.web import deps
from authgate.web.pages import common

AUDIT_PAGE = 50


async def console(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    store = deps.ctx_of(request).store

    def counts() -> dict[str, int]:
        _, events = store.list_audit(AuditQuery(limit=1))
        return {
            "apps": len(store.list_apps()),
            "users": store.count_users(),
            "resources": len(store.list_resources()),
            "events": events,
        }

    return common.page(request, "admin_console.html", who, counts=await run_in_threadpool(counts))


# Resources and scopes


def scopes_from(text: str) -> list[ScopeInfo]:
    """One scope a line: ``name = what it lets an app do`` (the words shown on consent)."""
    found = []
    for line in text.splitlines():
        name, _, description = line.partition("=")
        if name.strip():
            found.append(ScopeInfo(name.strip(), description.strip()))
    return found


def scopes_text(resource: Resource) -> str:
    return "\n".join(
        f"{s.name} = {s.description}" if s.description else s.name for s in resource.scopes
    )


def _resource_fields(form: FormData, *, creating: bool) -> resources.ResourceFields:
    ttl = common.text(form, "access_token_ttl")
    seconds = common.whole_number(ttl)
    if ttl and seconds is None:
        raise ValidationFailed(
            "Invalid access_token_ttl: a number of seconds",
            validations={"access_token_ttl": "a number of seconds, or empty for the default"},
        )
    return resources.ResourceFields(
        identifier=common.text(form, "identifier") if creating else None,
        name=common.text(form, "name"),
        scopes=scopes_from(common.text(form, "scopes")),
        token_format=common.text(form, "token_format") or None,
        access_token_ttl=seconds if seconds is not None else (0 if not creating else None),
        introspectors=common.lines(form, "introspectors"),
    )


def _resource_values(form: FormData | None, resource: Resource | None) -> dict[str, str]:
    if form is not None:
        names = ("identifier", "name", "scopes", "token_format", "access_token_ttl")
        values = {k: common.text(form, k) for k in names}
        return values | {"introspectors": common.text(form, "introspectors")}
    if resource is not None:
        return {
            "identifier": resource.identifier,
            "name": resource.name,
            "scopes": scopes_text(resource),
            "token_format": resource.token_format,
            "access_token_ttl": str(resource.access_token_ttl or ""),
            "introspectors": "\n".join(resource.introspectors),
        }
    return {"token_format": "jwt"}


async def _resources_page(
    request: Request,
    who: SignedIn,
    *,
    form: FormData | None = None,
    failure: ManagementError | None = None,
) -> Response:
    ctx = deps.ctx_of(request)
    found = await run_in_threadpool(ctx.store.list_resources)
    return common.page(
        request,
        "admin_resources.html",
        who,
        status=failure.status if failure else 200,
        resources=found,
        own=ctx.policy.audience,
        values=_resource_values(form, None),
        failure=failure,
    )


async def list_resources(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    return await _resources_page(request, who)


async def create_resource(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    ctx = deps.ctx_of(request)
    try:
        fields = _resource_fields(form, creating=True)
    except ValidationFailed as exc:
        return await _resources_page(request, who, form=form, failure=exc)
    made = await common.attempt(resources.create_resource, ctx, common.actor(request, who), fields)
    if isinstance(made, ManagementError):
        return await _resources_page(request, who, form=form, failure=made)
    return common.done(f"/admin/resources/{made.id}", "resource-created")


async def _resource(request: Request) -> Resource | Response:
    found = await common.attempt(
        resources.get_resource, deps.ctx_of(request), request.path_params["resource_id"]
    )
    if isinstance(found, ManagementError):
        return common.error(request, InvalidRequestError("No such resource"), 404)
    return found


async def _resource_page(
    request: Request,
    who: SignedIn,
    resource: Resource,
    *,
    form: FormData | None = None,
    failure: ManagementError | None = None,
) -> Response:
    return common.page(
        request,
        "admin_resource.html",
        who,
        status=failure.status if failure else 200,
        resource=resource,
        own=resource.identifier == deps.ctx_of(request).policy.audience,
        values=_resource_values(form, resource),
        failure=failure,
    )


async def show_resource(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    resource = await _resource(request)
    if not isinstance(resource, Resource):
        return resource
    return await _resource_page(request, who, resource)


async def update_resource(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    resource = await _resource(request)
    if not isinstance(resource, Resource):
        return resource
    ctx = deps.ctx_of(request)
    try:
        fields = _resource_fields(form, creating=False)
    except ValidationFailed as exc:
        return await _resource_page(request, who, resource, form=form, failure=exc)
    updated = await common.attempt(
        resources.update_resource, ctx, common.actor(request, who), resource.id, fields
    )
    if isinstance(updated, ManagementError):
        return await _resource_page(request, who, resource, form=form, failure=updated)
    return common.done(f"/admin/resources/{resource.id}", "resource-saved")


async def delete_resource(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    resource = await _resource(request)
    if not isinstance(resource, Resource):
        return resource
    ctx = deps.ctx_of(request)
    gone = await common.attempt(
        resources.delete_resource, ctx, common.actor(request, who), resource.id
    )
    if isinstance(gone, ManagementError):
        return await _resource_page(request, who, resource, failure=gone)
    return common.done("/admin/resources", "resource-deleted")


# Signing keys


def _published_keys(ctx: Context) -> list[dict[str, Any]]:
    keys.current_keys(ctx)  # like a JWKS fetch: creates the keys on a new database
    published = keys.published(list(ctx.store.list_signing_keys()), ctx.clock.now())
    return [{"key": key, "state": key_state(key)} for key in published]


async def list_keys(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    rows = await run_in_threadpool(_published_keys, deps.ctx_of(request))
    return common.page(request, "admin_keys.html", who, keys=rows)


async def rotate_keys(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    ctx = deps.ctx_of(request)
    await run_in_threadpool(keys.rotate, ctx, common.actor(request, who))
    ctx.caches.keyring.invalidate()
    return common.done("/admin/keys", "keys-rotated")


# Registration settings


async def _settings_page(
    request: Request,
    who: SignedIn,
    *,
    failure: ManagementError | None = None,
) -> Response:
    current = await run_in_threadpool(runtime_settings.load, deps.ctx_of(request))
    return common.page(
        request,
        "admin_settings.html",
        who,
        status=failure.status if failure else 200,
        current=current,
        failure=failure,
    )


async def show_settings(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    return await _settings_page(request, who)


def _count(form: FormData, name: str) -> int:
    number = common.whole_number(common.text(form, name))
    if number is None:
        raise ValidationFailed(
            f"Invalid {name}: a whole number", validations={name: "a whole number, 0 or more"}
        )
    return number


def _document_change(form: FormData) -> dict[str, Any]:
    """The metadata-document part of the form, when the form had it (``documents_shown``: an
    unticked checkbox is not sent at all, so its absence alone says nothing)."""
    if form.get("documents_shown") != "1":
        return {}
    return {
        "documents_enabled": form.get("documents_enabled") == "on",
        "document_hosts": common.lines(form, "document_hosts"),
        "document_denied_hosts": common.lines(form, "document_denied_hosts"),
        "document_max_clients": _count(form, "document_max_clients"),
    }


async def update_settings(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    try:
        change = runtime_settings.SettingsChange(
            enabled=form.get("enabled") == "on",
            initial_access_token_required=form.get("initial_access_token_required") == "on",
            redirect_hosts=common.lines(form, "redirect_hosts"),
            max_clients=_count(form, "max_clients"),
            client_ttl_days=_count(form, "client_ttl_days"),
            **_document_change(form),
        )
    except ValidationFailed as exc:
        return await _settings_page(request, who, failure=exc)
    ctx = deps.ctx_of(request)
    updated = await common.attempt(runtime_settings.update, ctx, common.actor(request, who), change)
    if isinstance(updated, ManagementError):
        return await _settings_page(request, who, failure=updated)
    return common.done("/admin/settings", "settings-saved")


# The audit log


def _day(value: str, *, end: bool = False) -> datetime | None:
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day.replace(hour=23, minute=59, second=59) if end else day


async def audit_log(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    params = request.query_params
    filters = {k: params.get(k, "").strip()[:255] for k in ("action", "actor_id", "target_id")}
    since, until = params.get("since", ""), params.get("until", "")
    page = max(1, min(common.whole_number(params.get("page", "1")) or 1, 100_000))
    query = AuditQuery(
        action=filters["action"] or None,
        actor_id=filters["actor_id"] or None,
        target_id=filters["target_id"] or None,
        since=_day(since),
        until=_day(until, end=True),
        limit=AUDIT_PAGE,
        offset=(page - 1) * AUDIT_PAGE,
    )
    events, total = await run_in_threadpool(deps.ctx_of(request).store.list_audit, query)
    kept = {k: v for k, v in (filters | {"since": since, "until": until}).items() if v}

    def link(number: int) -> str:
        return "/admin/audit?" + urlencode(kept | {"page": str(number)})

    pages = max(1, -(-total // AUDIT_PAGE))
    return common.page(
        request,
        "admin_audit.html",
        who,
        events=events,
        total=total,
        page=page,
        pages=pages,
        previous=link(page - 1) if page > 1 else None,
        next=link(page + 1) if page < pages else None,
        filters=filters | {"since": since, "until": until},
    )
