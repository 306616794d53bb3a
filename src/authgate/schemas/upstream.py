"""JSON shapes of the upstream providers (``/api/v2/upstream-providers``), shared with
``authgate upstream``. The client secret is write-only: sent in, never sent back
(``has_client_secret`` says whether one is stored); of the ``private_key_jwt`` key only the
public parts are shown (``assertion_key``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from authgate.core.models import (
    AssertionAudience,
    UpstreamAuthMethod,
    UpstreamKind,
    UpstreamProvider,
)
from authgate.core.upstream import client_assertion
from authgate.core.upstream.discovery import discovery_url
from authgate.core.upstream.transactions import callback_path, jwks_path

TOKEN_AUTH_METHOD = (
    "How authgate authenticates at the provider's token endpoint; null: auto (Basic with the "
    "client secret, or the form when discovery offers only that; a public client without one). "
    "`private_key_jwt`: a client assertion signed with a key authgate generates (no client "
    "secret); GitHub takes `client_secret_post` or `client_secret_basic` only"
)
ASSERTION_AUDIENCE = (
    "The `aud` of the client assertion (`private_key_jwt` only): `token_endpoint` (the token "
    "endpoint URL from discovery; Entra ID and Okta require it) or `issuer`"
)


class AssertionKeyOut(BaseModel):
    """The public parts of the key authgate signs client assertions with."""

    kid: str = Field(description="base64url SHA-256 of the certificate (its `x5t#S256`)")
    x5t: str = Field(description="base64url SHA-1 of the certificate (Entra ID's thumbprint)")
    not_after: datetime = Field(description="When the certificate expires: rotate before")
    jwks_uri: str = Field(description="The public JWK Set to give the provider")

    @classmethod
    def of(cls, provider: UpstreamProvider, issuer: str) -> AssertionKeyOut | None:
        key = client_assertion.described(provider)
        if key is None:
            return None
        return cls(
            kid=key.kid,
            x5t=key.x5t,
            not_after=key.not_after,
            jwks_uri=issuer.rstrip("/") + jwks_path(provider.id),
        )


class UpstreamProviderOut(BaseModel):
    id: str = Field(description="The slug in `/login/upstream/{id}`")
    display_name: str = Field(description="What the sign-in page's button says")
    kind: UpstreamKind = Field(description="`oidc`, or `github` (an OAuth app)")
    issuer: str = Field(
        description="The provider's issuer, byte for byte as its metadata says; for `github` "
        "GitHub's web base URL"
    )
    client_id: str
    has_client_secret: bool = Field(description="A client secret is stored (never shown)")
    scopes: str
    allowed_domains: list[str]
    link_by_verified_email: bool
    jit_create: bool
    required_claim: str | None
    required_values: list[str]
    admin_claim: str | None
    admin_values: list[str]
    enabled: bool
    token_auth_method: UpstreamAuthMethod | None = Field(description=TOKEN_AUTH_METHOD)
    assertion_audience: AssertionAudience = Field(description=ASSERTION_AUDIENCE)
    assertion_key: AssertionKeyOut | None = Field(
        description="The key of `private_key_jwt` (public parts only); null otherwise"
    )
    redirect_path: str = Field(
        description="The path of the redirect URI to register at the provider (after the issuer)"
    )
    discovery_url: str | None = Field(description="Where its metadata is read; none for `github`")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, provider: UpstreamProvider, issuer: str) -> UpstreamProviderOut:
        """``issuer``: authgate's own, to which ``assertion_key.jwks_uri`` belongs."""
        return cls(
            id=provider.id,
            display_name=provider.display_name,
            kind=provider.kind,
            issuer=provider.issuer,
            client_id=provider.client_id,
            has_client_secret=provider.client_secret is not None,
            scopes=provider.scopes,
            allowed_domains=list(provider.allowed_domains),
            link_by_verified_email=provider.link_by_verified_email,
            jit_create=provider.jit_create,
            required_claim=provider.required_claim,
            required_values=list(provider.required_values),
            admin_claim=provider.admin_claim,
            admin_values=list(provider.admin_values),
            enabled=provider.enabled,
            token_auth_method=provider.token_auth_method,
            assertion_audience=provider.assertion_audience,
            assertion_key=AssertionKeyOut.of(provider, issuer),
            redirect_path=callback_path(provider.id),
            discovery_url=discovery_url(provider.issuer) if provider.kind == "oidc" else None,
            created_at=provider.created_at,
            updated_at=provider.updated_at,
        )


class UpstreamProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="1-40 of a-z, 0-9 and '-'")
    display_name: str
    kind: Literal["oidc", "github"] = "oidc"
    issuer: str = Field(
        description="An https URL without query or fragment; for `github` GitHub's base URL "
        "(`https://github.com` or a GitHub Enterprise Server's)"
    )
    client_id: str
    client_secret: str | None = Field(None, description="Write-only; omit for a public client")
    scopes: str = Field(
        "",
        description="Space-separated; empty: the kind's default (`openid email profile`; for "
        "`github` `read:user user:email`, with `read:org` when conditions name orgs or teams)",
    )
    allowed_domains: list[str] = Field(default_factory=list)
    link_by_verified_email: bool = False
    jit_create: bool = False
    required_claim: str | None = None
    required_values: list[str] = Field(default_factory=list)
    admin_claim: str | None = None
    admin_values: list[str] = Field(default_factory=list)
    enabled: bool = True
    token_auth_method: UpstreamAuthMethod | None = Field(None, description=TOKEN_AUTH_METHOD)
    assertion_audience: AssertionAudience = Field("token_endpoint", description=ASSERTION_AUDIENCE)

    def spec_values(self) -> dict[str, Any]:
        return _tuples(self.model_dump())


class UpstreamProviderUpdate(BaseModel):
    """Change a provider: an omitted field keeps its stored value; `client_secret` "" removes
    the stored secret; `token_auth_method` null is auto."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scopes: str | None = None
    allowed_domains: list[str] | None = None
    link_by_verified_email: bool | None = None
    jit_create: bool | None = None
    required_claim: str | None = None
    required_values: list[str] | None = None
    admin_claim: str | None = None
    admin_values: list[str] | None = None
    enabled: bool | None = None
    token_auth_method: UpstreamAuthMethod | None = Field(None, description=TOKEN_AUTH_METHOD)
    assertion_audience: AssertionAudience | None = Field(None, description=ASSERTION_AUDIENCE)

    def changes(self) -> dict[str, Any]:
        """The fields sent; null claims (``required_claim``, ``admin_claim``) clear them, a
        null ``token_auth_method`` is auto."""
        sent = self.model_dump(include=self.model_fields_set)
        clearable = {"required_claim", "admin_claim", "token_auth_method"}
        return _tuples({k: v for k, v in sent.items() if v is not None or k in clearable})


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
