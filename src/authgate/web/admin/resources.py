"""Management API for registered resources (RFC 8707 audiences: MCP servers and APIs).

Every rule lives in ``core.resources``; this module maps HTTP to it and back. A resource is
named in the path by its id or by its URL-encoded identifier, in any spelling of the same
canonical URI (``https%3A%2F%2Fapi.example.com%2F`` finds ``https://api.example.com``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from authgate.core import resources
from authgate.core.errors import ValidationFailed
from authgate.core.models import ScopeInfo
from authgate.schemas import (
    CONFLICT_RESPONSE,
    ResourceCreate,
    ResourceOut,
    ResourceScope,
    ResourceUpdate,
)
from authgate.web.admin.auth import Admin, Ctx, actor

router = APIRouter(prefix="/resources", tags=["resources"])

# `:path`: a URL-encoded identifier arrives decoded, slashes included.
ONE = "/{resource:path}"


def scopes_of(scopes: list[ResourceScope] | None) -> tuple[ScopeInfo, ...] | None:
    return None if scopes is None else tuple(ScopeInfo(s.name, s.description) for s in scopes)


@router.get("", response_model=list[ResourceOut])
def list_resources(ctx: Ctx, who: Admin) -> list[ResourceOut]:
    """Every registered resource, authgate's own API included."""
    return [ResourceOut.of(r) for r in ctx.store.list_resources()]


@router.post("", status_code=201, response_model=ResourceOut, responses=CONFLICT_RESPONSE)
def create_resource(ctx: Ctx, who: Admin, request: Request, body: ResourceCreate) -> ResourceOut:
    """Register a resource; 409 when its canonical identifier is already registered."""
    fields = resources.ResourceFields(
        identifier=body.identifier,
        name=body.name,
        scopes=scopes_of(body.scopes),
        token_format=body.token_format,
        access_token_ttl=body.access_token_ttl,
        introspectors=body.introspectors,
    )
    return ResourceOut.of(resources.create_resource(ctx, actor(request, who), fields))


@router.get(ONE, response_model=ResourceOut)
def get_resource(ctx: Ctx, who: Admin, resource: str) -> ResourceOut:
    return ResourceOut.of(resources.get_resource(ctx, resources.reference(resource)))


@router.put(ONE, response_model=ResourceOut)
def update_resource(
    ctx: Ctx, who: Admin, request: Request, resource: str, body: ResourceUpdate
) -> ResourceOut:
    ref = resources.reference(resource)
    # core keeps the stored value for None: refuse an explicit reset rather than ignore it.
    resets_ttl = "access_token_ttl" in body.model_fields_set and body.access_token_ttl is None
    if resets_ttl and resources.get_resource(ctx, ref).access_token_ttl is not None:
        message = "cannot be reset to the default: send a number of seconds"
        raise ValidationFailed(
            f"Invalid access_token_ttl: {message}", validations={"access_token_ttl": message}
        )
    fields = resources.ResourceFields(
        identifier=body.identifier,
        name=body.name,
        scopes=scopes_of(body.scopes),
        token_format=body.token_format,
        access_token_ttl=body.access_token_ttl,
        introspectors=body.introspectors,
    )
    return ResourceOut.of(resources.update_resource(ctx, actor(request, who), ref, fields))


@router.delete(ONE, status_code=204, response_class=Response)
def delete_resource(ctx: Ctx, who: Admin, request: Request, resource: str) -> None:
    """Delete a resource; authgate's own API resource cannot be deleted (400)."""
    resources.delete_resource(ctx, actor(request, who), resources.reference(resource))
