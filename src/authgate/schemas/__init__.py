"""Request and response bodies of the management API (shapes kept from Coder's codersdk).

Response models are built from core models by their ``of`` constructors, the one place where a
domain value becomes JSON; the CLI's ``--json`` output reuses them so both speak the same shape.
That is why they live here, beside ``web`` and not in it: the CLI prints them without loading
the web framework (pydantic only; an import contract keeps it so). The flow timeline's shapes
are in ``flows.py``.
No response model carries a secret except the one-time ``client_secret_full`` and ``token``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from authgate.core import client_credentials
from authgate.core.models import (
    ApiToken,
    App,
    ApplicationType,
    AppSecret,
    AuditEvent,
    AuthMethod,
    RegistrationSettings,
    Resource,
    ServiceAccess,
    SigningKey,
    User,
)
from authgate.core.registration_settings import InitialAccessToken
from authgate.core.resources import MAX_TTL, MIN_TTL

ClientTypeName = Literal["confidential", "public"]
# What an operator may pin (``AppIn``); an app may carry any method a client can register
# (``AppOut`` shows ``core.models.AuthMethod``, ``private_key_jwt`` included).
AuthMethodName = Literal["client_secret_basic", "client_secret_post", "none"]


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    validations: dict[str, str] | None = None


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
    }


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("Invalid input; `validations` names the offending fields"),
    401: _problem("No valid credentials"),
    403: _problem("The caller may not do this"),
    404: _problem("No such object"),
}
CONFLICT_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: _problem("An object with the same unique key already exists"),
}


# Apps (OAuth clients)


class AppEndpoints(BaseModel):
    authorization: str
    token: str
    token_revoke: str
    device_authorization: str = ""

    @classmethod
    def of(cls, issuer: str) -> AppEndpoints:
        base = issuer.rstrip("/")
        return cls(
            authorization=f"{base}/oauth2/authorize",
            token=f"{base}/oauth2/tokens",
            token_revoke=f"{base}/oauth2/revoke",
        )


class ServiceAccessEntry(BaseModel):
    """A resource an app's client_credentials tokens may reach, and which of its scopes."""

    resource: str = Field(description="The registered resource's identifier", max_length=2048)
    scopes: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Scopes the resource defines; empty = a token for the resource, no scope",
    )

    @classmethod
    def of(cls, entry: ServiceAccess) -> ServiceAccessEntry:
        return cls(resource=entry.resource, scopes=list(entry.scopes))

    def to_core(self) -> ServiceAccess:
        return ServiceAccess(self.resource, tuple(self.scopes))


def service_access_of(app: App) -> list[ServiceAccessEntry]:
    return [ServiceAccessEntry.of(e) for e in app.service_access]


class AppOut(BaseModel):
    id: str = Field(description="The app's client_id")
    name: str
    icon: str
    callback_url: str = Field(description="The first redirect URI (Coder compatibility)")
    redirect_uris: list[str]
    client_type: ClientTypeName
    require_pkce: bool
    token_endpoint_auth_method: AuthMethod | None = Field(
        description="The one method the app must use, or null when any secret method is accepted"
    )
    token_endpoint_auth_methods: list[AuthMethod] = Field(
        description="Every method the token endpoint accepts from the app, per request (a "
        "client that registered private_key_jwt beside another method may use either)"
    )
    grant_types: list[str]
    scope: str | None
    first_party: bool
    admin_access: bool = Field(
        description="Whether authgate's own `admin` scope may be granted to the app "
        "(only ever for apps an operator created)"
    )
    dynamically_registered: bool
    service_access: list[ServiceAccessEntry] = Field(
        description="What an operator granted the app's client_credentials tokens (nothing by "
        "default); change it at `/apps/{app}/service-access`"
    )
    created_at: datetime
    updated_at: datetime
    endpoints: AppEndpoints
    # What a client registered about itself (RFC 7591 §2; empty for an operator's apps).
    metadata_document: bool = Field(
        description="A Client ID Metadata Document client: `id` is the URL of its document"
    )
    application_type: ApplicationType
    client_uri: str
    tos_uri: str
    policy_uri: str
    contacts: list[str]
    jwks_uri: str = Field(description="Where a private_key_jwt client publishes its keys")
    jwks: dict[str, Any] | None = Field(
        description="The public keys a private_key_jwt client registered (RFC 7517 JWK Set)"
    )
    software_id: str
    software_version: str
    client_profile: str | None = Field(
        None,
        description="The known-client profile the app matches (`/api/v2/client-profiles`), or null",
    )

    @classmethod
    def of(cls, app: App, issuer: str) -> AppOut:
        return cls(
            id=app.id,
            name=app.name,
            icon=app.icon,
            callback_url=app.redirect_uris[0] if app.redirect_uris else "",
            redirect_uris=list(app.redirect_uris),
            client_type=app.client_type,
            require_pkce=app.require_pkce,
            token_endpoint_auth_method=app.token_endpoint_auth_method,
            token_endpoint_auth_methods=list(client_credentials.accepted_methods(app)),
            grant_types=list(app.grant_types),
            scope=app.scope,
            first_party=app.first_party,
            admin_access=app.admin_access,
            dynamically_registered=app.dynamically_registered,
            service_access=service_access_of(app),
            created_at=app.created_at,
            updated_at=app.updated_at,
            endpoints=AppEndpoints.of(issuer),
            metadata_document=app.metadata_document,
            application_type=app.application_type,
            client_uri=app.client_uri,
            tos_uri=app.tos_uri,
            policy_uri=app.policy_uri,
            contacts=list(app.contacts),
            jwks_uri=app.jwks_uri,
            jwks=_public_jwks(app.jwks),
            software_id=app.software_id,
            software_version=app.software_version,
        )


def _public_jwks(jwks: dict[str, Any] | None) -> dict[str, Any] | None:
    """Registered keys are checked to be public; filtered again, as for signing keys."""
    if jwks is None:
        return None
    keys = [
        {k: v for k, v in key.items() if k not in PRIVATE_JWK_MEMBERS}
        for key in jwks.get("keys", [])
        if isinstance(key, dict)
    ]
    return {"keys": keys}


class AppIn(BaseModel):
    """Create or replace an app. On PUT, an omitted field keeps its stored value."""

    name: str
    icon: str | None = None
    redirect_uris: list[str] | None = None
    callback_url: str | None = Field(
        None,
        description="Coder's single callback URL: used as the redirect URI when `redirect_uris` "
        "is absent; when both are sent it must equal `redirect_uris[0]`",
    )
    client_type: ClientTypeName | None = None
    require_pkce: bool | None = None
    token_endpoint_auth_method: AuthMethodName | None = None
    grant_types: list[str] | None = None
    scope: str | None = None
    first_party: bool | None = None
    admin_access: bool | None = Field(
        None,
        description="Let the app be granted authgate's own `admin` scope (the management API "
        "with an administrator's consent); refused for self-registered and metadata-document "
        "clients",
    )


class SecretOut(BaseModel):
    id: str
    last_used_at: datetime | None
    client_secret_truncated: str = Field(description="The last 6 characters of the secret")

    @classmethod
    def of(cls, secret: AppSecret) -> SecretOut:
        return cls(
            id=secret.id,
            last_used_at=secret.last_used_at,
            client_secret_truncated=secret.display_secret,
        )


class SecretCreated(BaseModel):
    id: str
    client_secret_full: str = Field(description="The whole secret; shown this once only")


# Resources (RFC 8707 audiences)

TokenFormatName = Literal["jwt", "opaque"]


class ResourceScope(BaseModel):
    name: str = Field(description="The scope value clients ask for (RFC 6749 §3.3)")
    description: str = Field("", description="What the consent page says the scope allows")


class ResourceOut(BaseModel):
    id: str
    identifier: str = Field(description="The canonical resource URI (the tokens' `aud`)")
    name: str
    scopes: list[ResourceScope]
    token_format: TokenFormatName = Field(
        description="`jwt`: RFC 9068 JWT access tokens; `opaque`: `agat_…` strings"
    )
    access_token_ttl: int | None = Field(
        description="Access-token lifetime in seconds, or null for the server's default"
    )
    introspectors: list[str] = Field(
        description="The app ids (resource servers) allowed to introspect this resource's tokens"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, resource: Resource) -> ResourceOut:
        return cls(
            id=resource.id,
            identifier=resource.identifier,
            name=resource.name,
            scopes=[ResourceScope(name=s.name, description=s.description) for s in resource.scopes],
            token_format=resource.token_format,
            access_token_ttl=resource.access_token_ttl,
            introspectors=list(resource.introspectors),
            created_at=resource.created_at,
            updated_at=resource.updated_at,
        )


_TTL = Field(
    None,
    ge=MIN_TTL,
    le=MAX_TTL,
    description="Access-token lifetime in seconds; omit (or null) for the server's default",
)


class ResourceCreate(BaseModel):
    identifier: str = Field(description="An absolute http(s) URI without a fragment")
    name: str
    scopes: list[ResourceScope] = Field(default_factory=list)
    token_format: TokenFormatName = "jwt"
    access_token_ttl: int | None = _TTL
    introspectors: list[str] = Field(default_factory=list)


class ResourceUpdate(BaseModel):
    """Change a resource: an omitted field keeps its stored value; `scopes` and
    `introspectors`, when sent, replace the stored lists. The identifier cannot change (it may
    be sent, in any spelling of the same canonical URI)."""

    identifier: str | None = None
    name: str | None = None
    scopes: list[ResourceScope] | None = None
    token_format: TokenFormatName | None = None
    access_token_ttl: int | None = _TTL
    introspectors: list[str] | None = None


# Signing keys

KeyState = Literal["next", "active", "retiring"]
# RFC 7518 §6.2.2, §6.3.2, §6.4 and RFC 8037 §2: members only a private JWK has.
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def key_state(key: SigningKey) -> KeyState:
    """*next* (published, not yet signing), *active* (signing) or *retiring* (published until
    ``expires_at``, when every token it signed has expired)."""
    if key.retired_at is not None:
        return "retiring"
    return "next" if key.activated_at is None else "active"


class SigningKeyOut(BaseModel):
    """A signing key's public half and life cycle; the private key is never sent."""

    kid: str
    alg: Literal["ES256", "RS256", "EdDSA"]
    state: KeyState
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    expires_at: datetime | None = Field(
        description="When a retiring key leaves the JWKS; null while next or active"
    )
    public_jwk: dict[str, Any] = Field(description="The public key as published in the JWKS")

    @classmethod
    def of(cls, key: SigningKey) -> SigningKeyOut:
        return cls(
            kid=key.kid,
            alg=key.alg,
            state=key_state(key),
            created_at=key.created_at,
            activated_at=key.activated_at,
            retired_at=key.retired_at,
            expires_at=key.expires_at,
            # Stored public already; filtered again so no mistake upstream can leak a private key.
            public_jwk={k: v for k, v in key.public_jwk.items() if k not in PRIVATE_JWK_MEMBERS},
        )


# Users


class UserOut(BaseModel):
    id: str
    username: str
    email: str
    name: str
    is_admin: bool
    disabled: bool
    created_at: datetime
    email_verified: bool = False

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            email_verified=user.email_verified,
            name=user.name,
            is_admin=user.is_admin,
            disabled=user.disabled,
            created_at=user.created_at,
        )


class UserCreate(BaseModel):
    username: str
    password: str
    email: str = ""
    # Whether the address is known to reach the person (OpenID Connect ``email_verified``).
    email_verified: bool = False
    name: str = ""
    is_admin: bool = False


class UserPatch(BaseModel):
    """Only the fields sent change."""

    password: str | None = None
    is_admin: bool | None = None
    disabled: bool | None = None
    email: str | None = None
    # A new email without it is unverified again.
    email_verified: bool | None = None
    name: str | None = None


# Personal API tokens

MAX_TOKEN_LIFETIME = 5 * 366 * 86400


class ApiTokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> ApiTokenOut:
        return cls(
            id=token.id,
            name=token.name,
            prefix=token.prefix,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
        )


class ApiTokenCreate(BaseModel):
    name: str
    lifetime_seconds: int | None = Field(
        None, ge=60, le=MAX_TOKEN_LIFETIME, description="Omit for a token that does not expire"
    )


class ApiTokenCreated(BaseModel):
    id: str
    name: str
    token: str = Field(description="The whole token; shown this once only")
    prefix: str
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken, value: str) -> ApiTokenCreated:
        return cls(
            id=token.id,
            name=token.name,
            token=value,
            prefix=token.prefix,
            created_at=token.created_at,
            expires_at=token.expires_at,
        )


# Audit log


class AuditEventOut(BaseModel):
    id: str
    at: datetime
    action: str
    actor_type: str
    actor_id: str | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=event.id,
            at=event.at,
            action=event.action,
            actor_type=event.actor_type,
            actor_id=event.actor_id,
            target_type=event.target_type,
            target_id=event.target_id,
            ip=event.ip,
            user_agent=event.user_agent,
            request_id=event.request_id,
            details=dict(event.details),
        )


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    count: int = Field(description="How many events match the filters, across all pages")


# The runtime settings of self-registered clients (core/registration_settings.py).


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
