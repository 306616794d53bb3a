"""Management API for the runtime settings of self-registered clients — dynamic client
registration and metadata documents — (Coder's ``oauth2-provider/settings``, extended) and
registration's initial access tokens.

Every rule lives in ``core.registration_settings``; a change made here is seen by this node
at once and by the others within ``policy.cache_ttl``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from authgate.core import registration_settings as runtime_settings
from authgate.core.models import RegistrationSettings
from authgate.core.registration_settings import InitialAccessToken
from authgate.web.admin.auth import Admin, Ctx, actor, no_store
from authgate.web.admin.schemas import MAX_TOKEN_LIFETIME, ServiceAccessEntry

router = APIRouter(prefix="/oauth2-provider", tags=["settings"])


class RegistrationSettingsOut(BaseModel):
    dynamic_client_registration_enabled: bool = Field(
        description="Whether `POST /oauth2/register` (RFC 7591) accepts new clients"
    )
    registration_initial_access_token_required: bool = Field(
        description="Whether registering needs `Authorization: Bearer <initial access token>`"
    )
    registration_redirect_hosts: list[str] = Field(
        description="Hosts (`example.com`, `*.example.com`) and private-use schemes (`myapp:`) "
        "registered redirect URIs may use; empty = any"
    )
    registration_max_clients: int = Field(
        description="Most dynamically registered clients at once; 0 = no limit"
    )
    registration_client_ttl_days: int = Field(
        description="Days after which an unused self-registered client (dynamically registered "
        "or metadata-document) is deleted; 0 = never"
    )
    client_metadata_documents_enabled: bool = Field(
        description="Whether an https URL is accepted as `client_id` (Client ID Metadata "
        "Documents); `AUTHGATE_CLIENT_METADATA_DOCUMENTS=false` switches them off harder"
    )
    client_metadata_document_hosts: list[str] = Field(
        description="Hosts (`example.com`, `*.example.com`) metadata documents are accepted "
        "from; empty = any (but none while an initial access token is required)"
    )
    client_metadata_document_denied_hosts: list[str] = Field(
        description="Hosts metadata documents are never accepted from"
    )
    client_metadata_max_clients: int = Field(
        description="Most metadata-document clients stored at once; 0 = no limit"
    )

    @classmethod
    def of(cls, value: RegistrationSettings) -> RegistrationSettingsOut:
        return cls(
            dynamic_client_registration_enabled=value.enabled,
            registration_initial_access_token_required=value.initial_access_token_required,
            registration_redirect_hosts=list(value.redirect_hosts),
            registration_max_clients=value.max_clients,
            registration_client_ttl_days=value.client_ttl_days,
            client_metadata_documents_enabled=value.documents_enabled,
            client_metadata_document_hosts=list(value.document_hosts),
            client_metadata_document_denied_hosts=list(value.document_denied_hosts),
            client_metadata_max_clients=value.document_max_clients,
        )


class RegistrationSettingsIn(BaseModel):
    """A partial update: an omitted (or null) field keeps its value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dynamic_client_registration_enabled: bool | None = None
    registration_initial_access_token_required: bool | None = None
    registration_redirect_hosts: list[str] | None = None
    registration_max_clients: int | None = Field(None, ge=0)
    registration_client_ttl_days: int | None = Field(None, ge=0)
    client_metadata_documents_enabled: bool | None = None
    client_metadata_document_hosts: list[str] | None = None
    client_metadata_document_denied_hosts: list[str] | None = None
    client_metadata_max_clients: int | None = Field(None, ge=0)


class InitialAccessTokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    max_uses: int | None = Field(description="null = no limit")
    uses: int
    service_access: list[ServiceAccessEntry] = Field(
        description="What a client registered with the token may reach with client_credentials"
    )

    @classmethod
    def of(cls, token: InitialAccessToken) -> InitialAccessTokenOut:
        return cls(
            id=token.id,
            name=token.name,
            prefix=token.prefix,
            created_at=token.created_at,
            expires_at=token.expires_at,
            max_uses=token.max_uses,
            uses=token.uses,
            service_access=[ServiceAccessEntry.of(e) for e in token.service_access],
        )


class InitialAccessTokenCreated(InitialAccessTokenOut):
    token: str = Field(description="The whole token (`agiat_…`); shown this once only")


class InitialAccessTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    lifetime_seconds: int | None = Field(
        None, ge=60, le=MAX_TOKEN_LIFETIME, description="Omit for a token that does not expire"
    )
    max_uses: int | None = Field(None, ge=1, description="Omit for no limit")
    service_access: list[ServiceAccessEntry] = Field(
        default_factory=list,
        max_length=64,
        description="Resources and scopes a client registered with this token may reach with "
        "client_credentials (it must register that grant); empty = none until an operator "
        "grants it",
    )


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
