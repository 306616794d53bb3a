"""Domain values of authgate. Rows become these at the storage boundary; core sees nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

ClientType = Literal["confidential", "public"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
ApplicationType = Literal["web", "native"]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]
ActorType = Literal["user", "client", "system", "anonymous"]
TokenFormat = Literal["jwt", "opaque"]
SigningAlg = Literal["ES256", "RS256", "EdDSA"]


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    email: str
    name: str
    password_hash: str | None
    is_admin: bool
    disabled: bool
    created_at: datetime
    updated_at: datetime
    # OIDC Core §5.1 ``email_verified``: true only when an operator (or a provider that proved
    # it) said the address reaches the person; an address typed by an operator is not.
    email_verified: bool = False


#: RFC 8176 §2 "pwd": authgate's own password form.
PASSWORD_AMR = "pwd"


@dataclass(frozen=True, slots=True)
class Session:
    """A browser session. Only the SHA-256 of the cookie value is stored."""

    id: str
    user_id: str
    token_hash: str
    created_at: datetime
    expires_at: datetime
    ip: str | None = None
    user_agent: str | None = None
    # How the person signed in: RFC 8176 method references (space-separated) and the name of
    # the upstream provider that authenticated them (None: authgate's own password form).
    # Carried to the code and the grant, so an ID token can say it (``amr``, ``acr``, ``idp``).
    amr: str = PASSWORD_AMR
    idp: str | None = None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A personal API token (``agpat_…``) for the management API and scripts."""

    id: str
    user_id: str
    name: str
    prefix: str
    token_hash: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ServiceAccess:
    """A resource an operator opened to an app's ``client_credentials`` tokens, and the scopes
    of it the app may get (RFC 6749 §4.4: resources "previously arranged with the authorization
    server"). ``resource`` is the resource's canonical identifier."""

    resource: str
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class App:
    """An OAuth client. ``id`` is its ``client_id``."""

    id: str
    name: str
    icon: str
    redirect_uris: tuple[str, ...]
    client_type: ClientType
    require_pkce: bool
    token_endpoint_auth_method: AuthMethod | None
    grant_types: tuple[GrantType, ...]
    scope: str | None
    first_party: bool
    dynamically_registered: bool
    created_at: datetime
    updated_at: datetime
    # RFC 7591 client metadata (dynamic registration and metadata-document clients).
    application_type: ApplicationType = "web"
    client_uri: str = ""
    tos_uri: str = ""
    policy_uri: str = ""
    contacts: tuple[str, ...] = ()
    jwks: dict[str, Any] | None = None
    jwks_uri: str = ""
    software_id: str = ""
    software_version: str = ""
    # RFC 7592: SHA-256 of the registration access token (dynamically registered clients).
    registration_token_hash: str | None = None
    # A Client ID Metadata Document client: ``id`` is the https URL of its document, and the
    # row is a cache of that document, refreshed after ``metadata_expires_at``.
    metadata_document: bool = False
    metadata_expires_at: datetime | None = None
    # The last successful token request (dynamically registered clients expire when unused).
    last_used_at: datetime | None = None
    # What an operator opened to the app, nothing by default: the resources and scopes of its
    # client_credentials tokens, and whether it may be given authgate's administrative scopes.
    service_access: tuple[ServiceAccess, ...] = ()
    admin_access: bool = False

    @property
    def is_public(self) -> bool:
        return self.client_type == "public"


@dataclass(frozen=True, slots=True)
class AppSecret:
    id: str
    app_id: str
    prefix: str
    secret_hash: str
    display_secret: str
    created_at: datetime
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """A single-use code, bound to everything the user consented to (RFC 6749 §4.1.2)."""

    id: str
    prefix: str
    code_hash: str
    app_id: str
    user_id: str
    redirect_uri: str
    redirect_uri_provided: bool
    code_challenge: str | None
    code_challenge_method: str | None
    scope: str
    resource: str
    state_hash: str | None
    auth_time: datetime
    created_at: datetime
    expires_at: datetime
    consumed_at: datetime | None = None
    grant_id: str | None = None
    #: The flow of the authorization request it answers (core/flows.py).
    flow_id: str | None = None
    # How the person signed in (``Session``), and the OIDC ``nonce`` of the request.
    amr: str = PASSWORD_AMR
    idp: str | None = None
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """The family one code redemption starts: every later token of the chain belongs to it."""

    id: str
    app_id: str
    user_id: str | None
    resource: str
    scope: str
    auth_time: datetime | None
    created_at: datetime
    revoked_at: datetime | None = None
    #: The flow that started the family; its refreshes continue it (core/flows.py).
    flow_id: str | None = None
    # How the person signed in (``Session``): a refresh's ID token says it again.
    amr: str = PASSWORD_AMR
    idp: str | None = None


@dataclass(frozen=True, slots=True)
class LiveGrant:
    """A user's unrevoked grant that still has a live token, with what the pages show of it:
    the redirect URI of the code that started it, and when it last got an access token."""

    grant: Grant
    redirect_uri: str | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class AccessToken:
    id: str
    prefix: str
    token_hash: str
    grant_id: str | None
    app_id: str
    user_id: str | None
    secret_id: str | None
    audience: str
    scope: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: str
    prefix: str
    token_hash: str
    grant_id: str
    app_id: str
    user_id: str | None
    secret_id: str | None
    audience: str
    scope: str
    created_at: datetime
    expires_at: datetime
    consumed_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One security-relevant event. ``details`` never holds a secret."""

    id: str
    at: datetime
    action: str
    actor_type: ActorType
    actor_id: str | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    action: str | None = None
    actor_id: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ScopeInfo:
    """A scope a resource understands, with the words shown on the consent page."""

    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Resource:
    """A registered resource (MCP server or API) that tokens may be issued for (RFC 8707).

    ``identifier`` is the canonical URI (core.resources.canonical_resource) and is unique.
    ``introspectors`` are the app ids (resource servers) allowed to introspect its tokens.
    """

    id: str
    identifier: str
    name: str
    scopes: tuple[ScopeInfo, ...]
    token_format: TokenFormat
    access_token_ttl: int | None
    introspectors: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A JWS signing key. ``private_key`` is encrypted at rest (never stored in clear).

    Life: *next* (published, not yet signing: ``activated_at`` is None), *active* (signing),
    *retiring* (``retired_at`` set; still published until ``expires_at``, when every token it
    signed has expired), then gone.
    """

    kid: str
    alg: SigningAlg
    public_jwk: dict[str, Any]
    private_key: str
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RegistrationSettings:
    """What self-registered clients may do now. ``max_clients``, ``document_max_clients`` and
    ``client_ttl_days``: 0 = no limit / never expire. ``redirect_hosts`` (both kinds of client)
    and ``document_hosts``: empty = any host. ``client_ttl_days`` applies to dynamically
    registered and metadata-document clients alike."""

    enabled: bool = True
    initial_access_token_required: bool = False
    redirect_hosts: tuple[str, ...] = ()
    max_clients: int = 1000
    client_ttl_days: int = 30
    documents_enabled: bool = True
    document_hosts: tuple[str, ...] = ()
    document_denied_hosts: tuple[str, ...] = ()
    document_max_clients: int = 1000


#: RFC 8176 §2 "fed"-style reference for a sign-in through an upstream OpenID Provider (the
#: session's ``amr``; ``idp`` names the provider).
FEDERATED_AMR = "fed"
UpstreamKind = Literal["oidc", "github"]
#: How authgate authenticates at a provider's token endpoint; None (auto): from discovery.
UpstreamAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
#: The ``aud`` of authgate's client assertion: the token endpoint URL or the issuer.
AssertionAudience = Literal["token_endpoint", "issuer"]


@dataclass(frozen=True, slots=True)
class UpstreamProvider:
    """An upstream provider people may sign in through (``core/upstream/``): an OpenID
    Provider (``kind`` "oidc") or GitHub, an OAuth app (``kind`` "github", ``issuer`` its web
    base URL).

    ``id`` is the slug in ``/login/upstream/{id}``. ``client_secret`` is sealed at rest like
    a signing key's private half (``core/upstream/providers.py``); None for a public client.
    ``allowed_domains``: email domains just-in-time creation accepts (empty: any);
    ``required_claim``/``required_values``: a claim (a string or a list of strings) that must
    hold one of the values for a new account; ``admin_claim``/``admin_values`` the same for
    the administrator role. ``token_auth_method``: None picks from discovery;
    ``private_key_jwt`` signs a client assertion (``core/upstream/client_assertion.py``) for
    ``assertion_audience`` with ``assertion_key`` (an RSA private key, sealed like the client
    secret) whose self-signed ``assertion_certificate`` (PEM, public) is published."""

    id: str
    display_name: str
    kind: UpstreamKind
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: str
    created_at: datetime
    updated_at: datetime
    allowed_domains: tuple[str, ...] = ()
    link_by_verified_email: bool = False
    jit_create: bool = False
    required_claim: str | None = None
    required_values: tuple[str, ...] = ()
    admin_claim: str | None = None
    admin_values: tuple[str, ...] = ()
    enabled: bool = True
    token_auth_method: UpstreamAuthMethod | None = None
    assertion_audience: AssertionAudience = "token_endpoint"
    assertion_key: str | None = None
    assertion_certificate: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamIdentity:
    """A person at an upstream provider (its ``iss`` via the provider, its ``sub``) linked to
    a local user: the only key a sign-in is matched by."""

    provider_id: str
    subject: str
    user_id: str
    created_at: datetime
    last_sign_in_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UpstreamTransaction:
    """One upstream sign-in in progress, kept where any node can finish the callback.
    ``state_hash`` is the SHA-256 of the ``state`` sent to the provider (the value itself is
    never stored); single use, consumed atomically, gone after ``expires_at``."""

    state_hash: str
    provider_id: str
    nonce: str
    code_verifier: str
    return_to: str
    created_at: datetime
    expires_at: datetime
