"""Management API for upstream OpenID Providers (sign-in through the organisation's IdP).

Every rule lives in ``core.upstream.providers``; this module maps HTTP to it and back. The
client secret is accepted and never returned; of the ``private_key_jwt`` key, the certificate
(for providers that take one: Entra ID, Auth0) and a rotation, never the private half.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from authgate.core.context import Context
from authgate.core.errors import NotFound
from authgate.core.models import UpstreamProvider
from authgate.core.upstream import client_assertion, providers
from authgate.schemas import CONFLICT_RESPONSE
from authgate.schemas.upstream import (
    UpstreamProviderCreate,
    UpstreamProviderOut,
    UpstreamProviderUpdate,
)
from authgate.web.admin.auth import Admin, Ctx, actor

router = APIRouter(prefix="/upstream-providers", tags=["upstream providers"])
ONE = "/{provider}"
PEM = "application/x-pem-file"


def _out(ctx: Context, provider: UpstreamProvider) -> UpstreamProviderOut:
    return UpstreamProviderOut.of(provider, ctx.policy.issuer)


@router.get("", response_model=list[UpstreamProviderOut])
def list_providers(ctx: Ctx, who: Admin) -> list[UpstreamProviderOut]:
    return [_out(ctx, p) for p in ctx.store.list_upstream_providers()]


@router.post("", status_code=201, response_model=UpstreamProviderOut, responses=CONFLICT_RESPONSE)
def create_provider(
    ctx: Ctx, who: Admin, request: Request, body: UpstreamProviderCreate
) -> UpstreamProviderOut:
    """Add a provider; 409 when the id is taken."""
    spec = providers.ProviderSpec(**body.spec_values())
    return _out(ctx, providers.create_provider(ctx, actor(request, who), spec))


@router.get(ONE, response_model=UpstreamProviderOut)
def get_provider(ctx: Ctx, who: Admin, provider: str) -> UpstreamProviderOut:
    return _out(ctx, providers.get_provider(ctx, provider))


@router.patch(ONE, response_model=UpstreamProviderOut)
def update_provider(
    ctx: Ctx, who: Admin, request: Request, provider: str, body: UpstreamProviderUpdate
) -> UpstreamProviderOut:
    changed = providers.update_provider(ctx, actor(request, who), provider, body.changes())
    return _out(ctx, changed)


@router.delete(ONE, status_code=204, response_class=Response)
def delete_provider(ctx: Ctx, who: Admin, request: Request, provider: str) -> None:
    """Delete a provider with the identities linked through it (the users stay)."""
    providers.delete_provider(ctx, actor(request, who), provider)


@router.get(
    ONE + "/certificate",
    response_class=Response,
    responses={200: {"content": {PEM: {}}, "description": "The certificate, PEM"}},
)
def get_certificate(ctx: Ctx, who: Admin, provider: str) -> Response:
    """The self-signed certificate of the provider's `private_key_jwt` key (for Entra ID's
    certificate upload or Auth0's credential); 404 when it uses no key."""
    found = providers.get_provider(ctx, provider)
    key = client_assertion.signing(found)
    if key is None:
        raise NotFound("The upstream provider does not use private_key_jwt")
    headers = {"Content-Disposition": f'attachment; filename="authgate-{found.id}.pem"'}
    return Response(key.certificate_pem, media_type=PEM, headers=headers)


@router.post(
    ONE + "/assertion-key", response_model=UpstreamProviderOut, responses=CONFLICT_RESPONSE
)
def rotate_assertion_key(
    ctx: Ctx, who: Admin, request: Request, provider: str
) -> UpstreamProviderOut:
    """Replace the `private_key_jwt` key with a new one (audited `upstream_provider.key_rotated`);
    409 when the provider does not use private_key_jwt."""
    return _out(ctx, providers.rotate_assertion_key(ctx, actor(request, who), provider))
