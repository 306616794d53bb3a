"""What an app's ``client_credentials`` tokens may reach (RFC 6749 §4.4): the resources and
scopes an operator granted that app, nothing by default.

"The client can request an access token using only its client credentials ... when the client
is requesting access to the protected resources under its control, or those of another resource
owner that have been previously arranged with the authorization server" (§4.4). The arrangement
is ``App.service_access``: a list of (resource, scopes). An operator sets it through the
management API, the CLI or the console, or hands it out with an initial access token (RFC 7591
§3) that a registering client presents. It travels with the app in the client cache, so the
token endpoint checks it without another database read.

At the token endpoint (``authorize``):

- an app granted nothing gets ``unauthorized_client``;
- a request without ``resource`` means authgate's own API (the default audience), which must be
  granted like any other resource; a resource not granted is ``invalid_target``;
- the token's scope is the request narrowed to nothing more than was granted: an empty request
  gets every granted scope of that resource, a scope not granted is ``invalid_scope``. A granted
  scope the resource no longer defines, or that the app's own ``scope`` allow-list leaves out,
  is not granted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from authgate.core import audit, resources, scopes
from authgate.core.context import Actor, Context
from authgate.core.errors import (
    InvalidScopeError,
    InvalidTargetError,
    NotFound,
    OAuthError,
    UnauthorizedClientError,
    ValidationFailed,
)
from authgate.core.models import App, Resource, ServiceAccess

MAX_ENTRIES = 64
MAX_CLIENT_ID = 2048  # as core.clients
NOTHING_GRANTED = (
    "No resource has been granted to this client for client_credentials: an operator of this "
    "authorization server must grant it access to a resource first"
)


# The token endpoint: no I/O beyond the cached resource lookup.


def entry_for(app: App, identifier: str) -> ServiceAccess | None:
    """The app's grant for the resource ``identifier`` (canonical) names, in either spelling of a
    trailing "/"."""
    return next(
        (e for e in app.service_access if resources.same_resource(e.resource, identifier)), None
    )


def granted_scopes(app: App, entry: ServiceAccess, resource: Resource) -> tuple[str, ...]:
    """The scopes of ``entry`` that the resource still defines and the app's allow-list keeps."""
    defined = set(resources.scope_names(resource))
    allowed = set(scopes.parse_scope(app.scope)) if app.scope is not None else None
    return tuple(s for s in entry.scopes if s in defined and (allowed is None or s in allowed))


def authorize(
    ctx: Context, app: App, resource_param: str | None, scope_param: str | None
) -> tuple[Resource, str]:
    """The resource and scope of a ``client_credentials`` token for ``app``, or the refusal."""
    if not app.service_access:
        raise UnauthorizedClientError(NOTHING_GRANTED, debug=f"app {app.id} has no grant")
    identifier = (
        resources.canonical_resource(resource_param)
        if resource_param is not None
        else ctx.policy.audience
    )
    entry = entry_for(app, identifier)
    if entry is None:
        # Checked before the registry, so the answer says nothing about what else exists.
        raise InvalidTargetError(
            "This client has not been granted access to the resource",
            debug=f"app {app.id} asked for {identifier[:256]!r}",
        )
    resource = resources.lookup(ctx, entry.resource)  # a granted resource deleted since: refused
    granted = granted_scopes(app, entry, resource)
    wanted = scopes.parse_scope(scope_param)
    if not wanted:
        return resource, scopes.format_scope(granted)
    for token in wanted:
        if token not in granted:
            raise InvalidScopeError(f"The scope {token!r} has not been granted to this client")
    return resource, scopes.format_scope(wanted)


# Management: one behaviour for the admin API, the CLI, the console and initial access tokens.


def _invalid(message: str, field: str = "service_access") -> ValidationFailed:
    return ValidationFailed(f"Invalid {field}: {message}", validations={field: message})


def validate(
    ctx: Context,
    entries: Iterable[ServiceAccess],
    field: str = "service_access",
    *,
    kept: Sequence[ServiceAccess] = (),
) -> tuple[ServiceAccess, ...]:
    """Entries naming registered resources (canonical identifiers) and scopes each defines; a
    resource named twice is merged. Raises ``ValidationFailed`` naming the first problem. What
    ``kept`` (the stored list) already held but the registry no longer has — a resource deleted
    or a scope removed since — is dropped rather than refused, so it can still be revoked."""
    held = {e.resource: set(e.scopes) for e in kept}
    merged: dict[str, list[str]] = {}
    for entry in entries:
        try:
            identifier = resources.canonical_resource(entry.resource)
        except OAuthError as exc:
            raise _invalid(f"{entry.resource[:256]!r}: {exc.description}", field) from exc
        resource = resources.find(ctx.store, identifier)
        if resource is None:
            if identifier in held and set(entry.scopes) <= held[identifier]:
                continue
            raise _invalid(f"{identifier!r} is not a registered resource", field)
        identifier = resource.identifier  # the registered spelling of a trailing "/"
        defined = resources.scope_names(resource)
        for scope in entry.scopes:
            if scope not in defined and scope not in held.get(identifier, ()):
                raise _invalid(f"{identifier!r} defines no scope {scope[:128]!r}", field)
        have = merged.setdefault(identifier, [])
        have.extend(s for s in entry.scopes if s in defined and s not in have)
    if len(merged) > MAX_ENTRIES:
        raise _invalid(f"at most {MAX_ENTRIES} resources", field)
    return tuple(ServiceAccess(r, tuple(s)) for r, s in merged.items())


def can_use(app: App) -> bool:
    """Whether ``app`` could ever get a ``client_credentials`` token."""
    return (
        not app.is_public and not app.metadata_document and "client_credentials" in app.grant_types
    )


def _covers(before: Sequence[ServiceAccess], after: Sequence[ServiceAccess]) -> bool:
    old = {e.resource: set(e.scopes) for e in before}
    return all(e.resource in old and set(e.scopes) <= old[e.resource] for e in after)


def as_json(entries: Sequence[ServiceAccess]) -> list[dict[str, Any]]:
    return [{"resource": e.resource, "scopes": list(e.scopes)} for e in entries]


def from_json(value: Any) -> tuple[ServiceAccess, ...]:
    """Stored or sent entries, ``[{"resource": …, "scopes": […]}]``; malformed ones dropped."""
    if not isinstance(value, list):
        return ()
    return tuple(
        ServiceAccess(str(e["resource"]), tuple(str(s) for s in e.get("scopes") or ()))
        for e in value
        if isinstance(e, dict) and isinstance(e.get("resource"), str)
    )


def _app(ctx: Context, app_id: str) -> App:
    app = ctx.store.get_app(app_id) if len(app_id) <= MAX_CLIENT_ID else None
    if app is None:
        raise NotFound("No such app")
    return app


def set_access(ctx: Context, actor: Actor, app_id: str, entries: Iterable[ServiceAccess]) -> App:
    """Replace what ``app_id``'s client_credentials tokens may reach; audited with before and
    after. Only removals are allowed on an app that cannot use the grant."""
    app = _app(ctx, app_id)
    after = validate(ctx, entries, kept=app.service_access)
    if not _covers(app.service_access, after) and not can_use(app):
        raise _invalid(
            "the app cannot use client_credentials (it must be a confidential app with "
            "client_credentials among its grant_types, not a metadata-document client)"
        )
    if after == app.service_access:
        return app
    updated = replace(app, service_access=after, updated_at=ctx.clock.now())
    ctx.store.update_app(updated)
    audit.record(
        ctx,
        actor,
        "app.service_access_changed",
        target_type="app",
        target_id=app.id,
        before=as_json(app.service_access),
        after=as_json(after),
    )
    return updated


def grant(ctx: Context, actor: Actor, app_id: str, resource: str, granted: Sequence[str]) -> App:
    """Add ``resource`` (and these of its scopes) to what the app may reach."""
    app = _app(ctx, app_id)
    return set_access(
        ctx, actor, app.id, [*app.service_access, ServiceAccess(resource, tuple(granted))]
    )


def revoke(
    ctx: Context, actor: Actor, app_id: str, resource: str, revoked: Sequence[str] = ()
) -> App:
    """Take ``revoked`` scopes of ``resource`` away, or the whole resource when none is named.
    Tokens already issued live until they expire (or are revoked); no new one is issued."""
    app = _app(ctx, app_id)
    try:
        identifier = resources.canonical_resource(resource)
    except OAuthError as exc:
        raise _invalid(exc.description, "resource") from exc
    entry = entry_for(app, identifier)
    if entry is None:
        raise _invalid(f"{identifier!r} is not granted to this app", "resource")
    identifier = entry.resource  # the granted spelling of a trailing "/"
    unknown = [s for s in revoked if s not in entry.scopes]
    if unknown:
        raise _invalid(f"{unknown[0][:128]!r} is not granted for {identifier!r}", "scopes")
    kept = [
        e
        if e.resource != identifier
        else ServiceAccess(e.resource, tuple(s for s in e.scopes if s not in revoked))
        for e in app.service_access
        if e.resource != identifier or revoked
    ]
    return set_access(ctx, actor, app.id, kept)
