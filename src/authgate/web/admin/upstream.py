"""Management API for upstream OpenID Providers (sign-in through the organisation's IdP).

Every rule lives in ``core.upstream.providers``; this module maps HTTP to it and back. The
client secret is accepted and never returned.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from authgate.core.upstream import providers
from authgate.schemas import CONFLICT_RESPONSE
from authgate.schemas.upstream import (
    UpstreamProviderCreate,
    UpstreamProviderOut,
    UpstreamProviderUpdate,
)
from authgate.web.admin.auth import Admin, Ctx, actor

router = APIRouter(prefix="/upstream-providers", tags=["upstream providers"])
ONE = "/{provider}"


@router.get("", response_model=list[UpstreamProviderOut])
def list_providers(ctx: Ctx, who: Admin) -> list[UpstreamProviderOut]:
    return [UpstreamProviderOut.of(p) for p in ctx.store.list_upstream_providers()]


@router.post("", status_code=201, response_model=UpstreamProviderOut, responses=CONFLICT_RESPONSE)
def create_provider(
    ctx: Ctx, who: Admin, request: Request, body: UpstreamProviderCreate
) -> UpstreamProviderOut:
    """Add a provider; 409 when the id is taken."""
    spec = providers.ProviderSpec(**body.spec_values())
    return UpstreamProviderOut.of(providers.create_provider(ctx, actor(request, who), spec))


@router.get(ONE, response_model=UpstreamProviderOut)
def get_provider(ctx: Ctx, who: Admin, provider: str) -> UpstreamProviderOut:
    return UpstreamProviderOut.of(providers.get_provider(ctx, provider))


@router.patch(ONE, response_model=UpstreamProviderOut)
def update_provider(
    ctx: Ctx, who: Admin, request: Request, provider: str, body: UpstreamProviderUpdate
) -> UpstreamProviderOut:
    changed = providers.update_provider(ctx, actor(request, who), provider, body.changes())
    return UpstreamProviderOut.of(changed)


@router.delete(ONE, status_code=204, response_class=Response)
def delete_provider(ctx: Ctx, who: Admin, request: Request, provider: str) -> None:
    """Delete a provider with the identities linked through it (the users stay)."""
    providers.delete_provider(ctx, actor(request, who), provider)
