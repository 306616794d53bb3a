"""Resource indicators (RFC 8707 §2).

"The value of the resource parameter MUST be an absolute URI ... MUST NOT include a fragment
component." The token's audience is the resource; without one, authgate's own API.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from authgate.core import audit
from authgate.core.admin_scope import ADMIN_SCOPE
from authgate.core.context import SYSTEM, Actor, Context
from authgate.core.errors import Conflict, InvalidTargetError, NotFound, ValidationFailed
from authgate.core.models import Resource, ScopeInfo
from authgate.core.ports import DuplicateKeyError, Store
from authgate.resource_server import canonical

MAX_RESOURCE_LENGTH = canonical.MAX_RESOURCE_LENGTH
_SCOPE_NAME = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]{1,128}")


@functools.lru_cache(maxsize=1024)  # every token request canonicalises the same few values
def canonical_resource(value: str) -> str:
    """Validate a resource indicator and return its canonical form, or ``invalid_target``.

    The rule is the resource-server kit's (``resource_server.canonical``), so the server and the
    resource servers never disagree: scheme and host lower-cased, the default port dropped, an
    empty path or a lone "/" removed; path and query kept as sent.
    """
    try:
        return canonical.canonical_resource(value)
    except canonical.InvalidResource as exc:
        raise InvalidTargetError(f"The resource parameter is invalid: {exc}") from exc


def same_resource(a: str, b: str) -> bool:
    """Both name the same resource: equal once canonical, or one trailing "/" apart."""
    return canonical.same_resource(a, b)


def find(store: Store, identifier: str) -> Resource | None:
    """The registered resource a canonical identifier names: registered in this spelling, or
    with one trailing "/" more or less (``https://host/mcp/`` finds ``https://host/mcp``)."""
    for spelling in canonical.spellings(identifier):
        resource = store.get_resource_by_identifier(spelling)
        if resource is not None:
            return resource
    return None


def lookup(ctx: Context, identifier: str) -> Resource:
    """The registered resource this canonical identifier names (in either spelling of a
    trailing "/"), or ``invalid_target``. Its ``identifier`` is the tokens' audience."""
    resource = _cached(ctx, identifier)
    if resource is None:
        raise InvalidTargetError("The resource is not registered with this authorization server")
    return resource


def _cached(ctx: Context, identifier: str) -> Resource | None:
    """``find`` through this node's copy (``caches.ResourceCache``), each entry trusted for
    ``policy.cache_ttl`` (as the keyring). This node's own changes clear it at once; another
    node's change is seen within that bound."""
    now, cache = ctx.clock.now(), ctx.caches.resources
    resource = cache.get(identifier, now, ctx.policy.cache_ttl)
    if resource is None:
        resource = find(ctx.store, identifier)
        cache.put(identifier, now, resource)
    return resource


def all_scope_names(ctx: Context) -> list[str]:
    """Every scope any registered resource defines, sorted (for the metadata document),
    read at most once per ``policy.cache_ttl``."""
    names = cached_all_scope_names(ctx)
    if names is None:
        names = sorted({s.name for r in ctx.store.list_resources() for s in r.scopes})
        ctx.caches.resources.scope_names.put(ctx.clock.now(), names)
    return names


def cached_all_scope_names(ctx: Context) -> list[str] | None:
    """``all_scope_names`` if this node's copy is fresh, else None; never reads the database."""
    return ctx.caches.resources.scope_names.get(ctx.clock.now(), ctx.policy.cache_ttl)


def resolve(ctx: Context, value: str | None) -> Resource:
    """The resource a request names (RFC 8707 §2), or the default audience when it names none."""
    return lookup(ctx, canonical_resource(value) if value is not None else ctx.policy.audience)


def scope_names(resource: Resource) -> tuple[str, ...]:
    return tuple(s.name for s in resource.scopes)


# Management: one behaviour for the admin API and the CLI, audited.

OWN_API_SCOPES = (
    ScopeInfo(ADMIN_SCOPE, "Administer authgate: apps, users, resources, keys and settings"),
)
TOKEN_FORMATS = ("jwt", "opaque")
MAX_SCOPES = 64
MIN_TTL, MAX_TTL = 60, 86400


@dataclass(frozen=True, slots=True)
class ResourceFields:
    """What an operator sets on a resource; None means "keep" on update, default on create."""

    identifier: str | None = None
    name: str | None = None
    scopes: Sequence[ScopeInfo] | None = None
    token_format: str | None = None
    access_token_ttl: int | None = None
    introspectors: Sequence[str] | None = None


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {field}: {message}", validations={field: message})


def _check_scopes(scopes: Sequence[ScopeInfo]) -> tuple[ScopeInfo, ...]:
    if len(scopes) > MAX_SCOPES:
        raise _invalid("scopes", f"at most {MAX_SCOPES}")
    names = [s.name for s in scopes]
    if len(set(names)) != len(names):
        raise _invalid("scopes", "names must be unique")
    for scope in scopes:
        if not _SCOPE_NAME.fullmatch(scope.name):
            raise _invalid("scopes", f"{scope.name!r} is not a valid scope name")
        if len(scope.description) > 256:
            raise _invalid("scopes", "descriptions are at most 256 characters")
    return tuple(ScopeInfo(s.name, s.description.strip()) for s in scopes)


def _validated(ctx: Context, fields: ResourceFields, base: Resource | None) -> dict[str, Any]:
    identifier = fields.identifier if fields.identifier is not None else base and base.identifier
    try:
        identifier = canonical_resource(identifier or "")
    except InvalidTargetError as exc:
        raise _invalid("identifier", exc.description) from exc
    name = (fields.name if fields.name is not None else (base.name if base else "")).strip()
    if not 1 <= len(name) <= 128:
        raise _invalid("name", "1 to 128 characters")
    token_format = fields.token_format or (base.token_format if base else "jwt")
    if token_format not in TOKEN_FORMATS:
        raise _invalid("token_format", "jwt or opaque")
    ttl = (
        fields.access_token_ttl
        if fields.access_token_ttl is not None
        else (base.access_token_ttl if base else None)
    )
    if ttl == 0:
        ttl = None  # 0 puts a resource back on the server's default lifetime
    if ttl is not None and not MIN_TTL <= ttl <= MAX_TTL:
        raise _invalid("access_token_ttl", f"{MIN_TTL} to {MAX_TTL} seconds")
    introspectors = tuple(
        fields.introspectors
        if fields.introspectors is not None
        else (base.introspectors if base else ())
    )
    kept = set(base.introspectors) if base else set()
    checked = []
    for app_id in introspectors:
        app = ctx.store.get_app(app_id) if len(app_id) <= 255 else None
        if app is None and app_id in kept:
            continue  # the app was deleted since: drop it rather than refuse the update
        if app is None or app.is_public:
            raise _invalid("introspectors", f"{app_id!r} is not a confidential app")
        checked.append(app_id)
    introspectors = tuple(checked)
    scopes = fields.scopes if fields.scopes is not None else (base.scopes if base else ())
    return {
        "identifier": identifier,
        "name": name,
        "scopes": _check_scopes(scopes),
        "token_format": token_format,
        "access_token_ttl": ttl,
        "introspectors": tuple(dict.fromkeys(introspectors)),
    }


def create_resource(ctx: Context, actor: Actor, fields: ResourceFields) -> Resource:
    now = ctx.clock.now()
    values = _validated(ctx, fields, None)
    resource = Resource(id=str(uuid.uuid4()), created_at=now, updated_at=now, **values)
    existing = find(ctx.store, resource.identifier)
    if existing is not None:  # the other spelling of a trailing "/" is the same resource
        raise Conflict(f"A resource {existing.identifier!r} is already registered")
    try:
        ctx.store.create_resource(resource)
        ctx.caches.resources.clear()
    except DuplicateKeyError as exc:
        raise Conflict(f"A resource {resource.identifier!r} is already registered") from exc
    audit.record(
        ctx,
        actor,
        "resource.created",
        target_type="resource",
        target_id=resource.id,
        **_audit_fields(resource),
    )
    return resource


def reference(value: str) -> str:
    """What ``get_resource`` looks up: an id as given, an identifier in its
    canonical form (so a trailing slash or an upper-case host still finds it)."""
    try:
        return canonical_resource(value)
    except InvalidTargetError:
        return value


def get_resource(ctx: Context, resource_id: str) -> Resource:
    resource = ctx.store.get_resource(resource_id) if len(resource_id) <= 255 else None
    if resource is None:
        try:
            # Any spelling of the identifier finds it: lookups use the canonical form.
            resource = find(ctx.store, canonical_resource(resource_id))
        except InvalidTargetError:
            resource = None
    if resource is None:
        raise NotFound("No such resource")
    return resource


def update_resource(
    ctx: Context, actor: Actor, resource_id: str, fields: ResourceFields
) -> Resource:
    resource = get_resource(ctx, resource_id)
    values = _validated(ctx, fields, resource)
    if values["identifier"] != resource.identifier:
        raise _invalid("identifier", "cannot change: register a new resource instead")
    updated = replace(resource, updated_at=ctx.clock.now(), **values)
    ctx.store.update_resource(updated)
    ctx.caches.resources.clear()
    audit.record(
        ctx,
        actor,
        "resource.updated",
        target_type="resource",
        target_id=resource.id,
        **_audit_fields(updated),
    )
    return updated


def delete_resource(ctx: Context, actor: Actor, resource_id: str) -> None:
    resource = get_resource(ctx, resource_id)
    if resource.identifier == ctx.policy.audience:
        raise ValidationFailed("authgate's own API resource cannot be deleted")
    ctx.store.delete_resource(resource.id)
    ctx.caches.resources.clear()
    audit.record(
        ctx,
        actor,
        "resource.deleted",
        target_type="resource",
        target_id=resource.id,
        identifier=resource.identifier,
    )


def ensure_own_api(ctx: Context) -> Resource:
    """authgate's own API is a registered resource too (DESIGN.md §7): create it if missing."""
    existing = ctx.store.get_resource_by_identifier(ctx.policy.audience)
    if existing is not None:
        return existing
    fields = ResourceFields(
        identifier=ctx.policy.audience,
        name="authgate API",
        scopes=OWN_API_SCOPES,
        token_format="opaque",
    )
    try:
        return create_resource(ctx, SYSTEM, fields)
    except Conflict:  # another node created it at the same moment
        return lookup(ctx, ctx.policy.audience)


def _audit_fields(resource: Resource) -> dict[str, Any]:
    return {
        "identifier": resource.identifier,
        "name": resource.name,
        "scopes": [s.name for s in resource.scopes],
        "token_format": resource.token_format,
        "access_token_ttl": resource.access_token_ttl,
        "introspectors": list(resource.introspectors),
    }
