"""Management API for the runtime settings of self-registered clients — dynamic client
registration and metadata documents — (Coder's ``oauth2-provider/settings``, extended) and
registration's initial access tokens.

Every rule lives in ``core.registration_settings``; a change made here is seen by this node
at once and by the others within ``policy.cache_ttl``.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from authgate.core import registration_settings as runtime_settings
from authgate.schemas import (
    InitialAccessTokenCreate,
    InitialAccessTokenCreated,
    InitialAccessTokenOut,
    RegistrationSettingsIn,
    RegistrationSettingsOut,
)
from authgate.web.admin.auth import Admin, Ctx, actor, no_store

router = APIRouter(prefix="/oauth2-provider", tags=["settings"])


@router.get("/settings", response_model=RegistrationSettingsOut)
def get_settings(ctx: Ctx, who: Admin) -> RegistrationSettingsOut:
    """The settings of dynamic client registration and metadata documents as stored now."""
    return RegistrationSettingsOut.of(runtime_settings.load(ctx))


@router.put("/settings", response_model=RegistrationSettingsOut)
def update_settings(
    ctx: Ctx, who: Admin, request: Request, body: RegistrationSettingsIn
) -> RegistrationSettingsOut:
    """Change some settings (omitted fields are unchanged); audited as `settings.updated`."""
    change = runtime_settings.SettingsChange(
        enabled=body.dynamic_client_registration_enabled,
        initial_access_token_required=body.registration_initial_access_token_required,
        redirect_hosts=body.registration_redirect_hosts,
        max_clients=body.registration_max_clients,
        client_ttl_days=body.registration_client_ttl_days,
        documents_enabled=body.client_metadata_documents_enabled,
        document_hosts=body.client_metadata_document_hosts,
        document_denied_hosts=body.client_metadata_document_denied_hosts,
        document_max_clients=body.client_metadata_max_clients,
    )
    updated = runtime_settings.update(ctx, actor(request, who), change)
    return RegistrationSettingsOut.of(updated)


@router.get("/registration-tokens", response_model=list[InitialAccessTokenOut])
def list_initial_access_tokens(ctx: Ctx, who: Admin) -> list[InitialAccessTokenOut]:
    """Initial access tokens for `POST /oauth2/register` (never their values)."""
    return [InitialAccessTokenOut.of(t) for t in runtime_settings.list_initial_access_tokens(ctx)]


@router.post("/registration-tokens", status_code=201, response_model=InitialAccessTokenCreated)
def create_initial_access_token(
    ctx: Ctx, who: Admin, request: Request, response: Response, body: InitialAccessTokenCreate
) -> InitialAccessTokenCreated:
    """A new initial access token; the whole value is in this response only."""
    token, value = runtime_settings.create_initial_access_token(
        ctx,
        actor(request, who),
        body.name,
        expires_in=timedelta(seconds=body.lifetime_seconds) if body.lifetime_seconds else None,
        max_uses=body.max_uses,
        access=[entry.to_core() for entry in body.service_access],
    )
    no_store(response)
    return InitialAccessTokenCreated(**InitialAccessTokenOut.of(token).model_dump(), token=value)


@router.delete("/registration-tokens/{token_id}", status_code=204)
def delete_initial_access_token(ctx: Ctx, who: Admin, request: Request, token_id: str) -> None:
    """Withdraw an initial access token (clients registered with it stay)."""
    runtime_settings.delete_initial_access_token(ctx, actor(request, who), token_id)
