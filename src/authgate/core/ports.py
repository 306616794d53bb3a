"""What core needs from the outside world: storage, time and randomness, as typing.Protocols.

Storage adapters (``authgate.storage``) and the in-memory fake (``tests/fakes.py``) implement
``Store``. Every method is one atomic unit: a method that changes several rows changes all of
them or none. Storage exceptions never leave the adapter except as the two below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from authgate.core.flows import Flow, FlowQuery, FlowStep, StepPosition
from authgate.core.models import (
    AccessToken,
    ApiToken,
    App,
    AppSecret,
    AuditEvent,
    AuditQuery,
    AuthorizationCode,
    Grant,
    LiveGrant,
    RefreshToken,
    Resource,
    Session,
    SigningKey,
    UpstreamIdentity,
    UpstreamProvider,
    UpstreamTransaction,
    User,
)


class DuplicateKeyError(Exception):
    """A unique constraint refused the write (e.g. a username that exists)."""


class StoreUnavailableError(Exception):
    """The database could not be reached; the request may be retried."""


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class FetchedDocument:
    """A document fetched from a client's URL (metadata document, ``jwks_uri``)."""

    url: str
    body: bytes
    content_type: str
    # ``Cache-Control: max-age`` in seconds (0 for no-store/no-cache), None if not sent.
    max_age: int | None


class FetchError(Exception):
    """A document could not be fetched; ``str(exc)`` is safe to show the client."""


class FetchBusyError(FetchError):
    """Not fetched because this node's fetches are at a limit (all fetch threads, or the
    fetches of that host or of that source network, are in flight): nothing was tried, so it
    says nothing about the document and is not remembered as its failure."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """An upstream provider's answer to a back-channel request (token endpoint, UserInfo):
    any status, since an OAuth error answer carries a JSON body too."""

    status: int
    body: bytes
    content_type: str


class UpstreamHttp(Protocol):
    """Back-channel requests to an upstream OpenID Provider, on the same SSRF-safe, bounded
    fetcher as client documents (https only, no redirects, a deadline, a size cap)."""

    def get_json(self, url: str) -> FetchedDocument:
        """GET a JSON document (discovery, JWKS): 200 and JSON, or FetchError."""
        ...

    def send(
        self, method: str, url: str, *, headers: dict[str, str], form: dict[str, str] | None
    ) -> HttpAnswer:
        """One request (a form POST to the token endpoint, a GET of UserInfo with a bearer
        token); the answer whatever its status, or FetchError when there is none."""
        ...


class DocumentFetcher(Protocol):
    """Fetches a client-supplied https URL without letting it reach internal addresses."""

    def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
        """The document at ``url`` (https, JSON, size-capped, no redirects) or FetchError;
        ``source``: the network of whoever asked (``rate_limits.source``), None for a fetch on
        behalf of a known client (its ``jwks_uri``)."""
        ...


class UserStore(Protocol):
    def create_user(self, user: User) -> None: ...
    def get_user(self, user_id: str) -> User | None: ...
    def get_user_by_username(self, username: str) -> User | None: ...
    def list_users(self) -> Sequence[User]: ...
    def update_user(self, user: User) -> None: ...
    def count_users(self) -> int: ...
    def delete_user(self, user_id: str, now: datetime) -> bool:
        """Delete the user with their sessions, API tokens, codes, grants and tokens (after
        ending their grants as ``revoke_user_grants`` does). False if there is no such user."""
        ...


class SessionStore(Protocol):
    def create_session(self, session: Session) -> None: ...
    def get_session_by_hash(self, token_hash: str) -> Session | None: ...
    def delete_session(self, session_id: str) -> None: ...
    def delete_user_sessions(self, user_id: str) -> None: ...


class ApiTokenStore(Protocol):
    def create_api_token(self, token: ApiToken) -> None: ...
    def get_api_token_by_prefix(self, prefix: str) -> ApiToken | None: ...
    def list_api_tokens(self, user_id: str) -> Sequence[ApiToken]: ...
    def delete_api_token(self, token_id: str) -> bool: ...
    def touch_api_token(self, token_id: str, at: datetime) -> None: ...


class AppStore(Protocol):
    def create_app(self, app: App) -> None: ...
    def get_app(self, app_id: str) -> App | None: ...
    def list_apps(self) -> Sequence[App]: ...
    def update_app(self, app: App) -> None: ...
    def delete_app(self, app_id: str) -> bool:
        """Delete the app with its secrets, codes, grants and tokens."""
        ...

    def upsert_app(self, app: App) -> None:
        """Create the app, or replace every field of the app with the same id."""
        ...

    def touch_app(self, app_id: str, at: datetime) -> None:
        """Record a successful token request (``last_used_at``)."""
        ...

    def count_dynamic_apps(self) -> int: ...
    def list_stale_dynamic_apps(self, unused_since: datetime) -> Sequence[App]:
        """Dynamically registered apps whose ``last_used_at`` (or, never used, ``created_at``)
        is before ``unused_since``."""
        ...

    def count_document_apps(self) -> int:
        """Stored metadata-document clients."""
        ...

    def list_stale_document_apps(self, unused_since: datetime) -> Sequence[App]:
        """Metadata-document clients whose ``last_used_at`` (or, never used, ``created_at``)
        is before ``unused_since``, least recently seen first."""
        ...

    def list_apps_authorized_by(self, user_id: str, now: datetime) -> Sequence[App]:
        """Apps for which the user holds an unrevoked grant with a live token."""
        ...

    def create_secret(self, secret: AppSecret) -> None: ...
    def get_secret_by_prefix(self, prefix: str) -> AppSecret | None: ...
    def get_app_and_secret(
        self, app_id: str, secret_prefix: str
    ) -> tuple[App | None, AppSecret | None]:
        """``get_app`` and ``get_secret_by_prefix`` in one read (client authentication, on
        every token request). The secret is returned whatever app it belongs to, and only
        with an app: ``(None, None)`` when there is no app ``app_id``."""
        ...

    def list_secrets(self, app_id: str) -> Sequence[AppSecret]: ...
    def delete_secret(self, secret_id: str, now: datetime) -> bool:
        """Delete the secret and revoke every grant whose tokens were issued with it."""
        ...

    def touch_secret(self, secret_id: str, at: datetime) -> None: ...


class CodeStore(Protocol):
    def create_code(self, code: AuthorizationCode) -> None: ...
    def get_code_by_prefix(self, prefix: str) -> AuthorizationCode | None: ...
    def redeem_code(
        self,
        code_id: str,
        now: datetime,
        grant: Grant,
        access: AccessToken,
        refresh: RefreshToken | None,
    ) -> bool:
        """Atomically mark the code consumed (only if unconsumed), record ``grant`` on it and
        store the grant and tokens. Returns False, storing nothing, if it was consumed already."""
        ...


class TokenStore(Protocol):
    def get_grant(self, grant_id: str) -> Grant | None: ...
    def list_live_grants(
        self,
        user_id: str,
        now: datetime,
        *,
        app_id: str | None = None,
        resource: str | None = None,
        limit: int | None = None,
    ) -> Sequence[LiveGrant]:
        """The user's unrevoked grants that hold an unrevoked, unexpired (and, for refresh
        tokens, unconsumed) token; newest first; of one app and one resource when given, at
        most ``limit``."""
        ...

    def get_access_token_by_prefix(self, prefix: str) -> AccessToken | None: ...
    def get_refresh_token_by_prefix(self, prefix: str) -> RefreshToken | None: ...
    def get_refresh_token_and_grant(
        self, prefix: str
    ) -> tuple[RefreshToken | None, Grant | None, bool]:
        """``get_refresh_token_by_prefix``, the token's grant and whether the grant's user is
        disabled, in one read (every refresh). ``(None, None, False)`` for no such token."""
        ...

    def create_access_token(self, access: AccessToken) -> None: ...
    def rotate_refresh_token(
        self, old_id: str, now: datetime, access: AccessToken, refresh: RefreshToken
    ) -> bool:
        """Atomically consume ``old_id`` (only if unconsumed and unrevoked) and store the new
        pair. Returns False, storing nothing, if it was consumed or revoked already."""
        ...

    def issue_in_family(
        self, grant_id: str, access: AccessToken, refresh: RefreshToken | None
    ) -> bool:
        """Store a new access token (and ``refresh``, if any) in the grant's family if the grant
        is not revoked (a continued refresh adds only the access token)."""
        ...

    def revoke_grant(self, grant_id: str, now: datetime, event: AuditEvent | None = None) -> bool:
        """Revoke the grant and every token of it. True if anything was live; then ``event``
        is appended to the audit log in the same transaction."""
        ...

    def revoke_access_token(
        self, token_id: str, now: datetime, event: AuditEvent | None = None
    ) -> bool:
        """Revoke one access token. True if it was live; then ``event`` is appended to the
        audit log in the same transaction."""
        ...

    def revoke_user_app(self, user_id: str, app_id: str, now: datetime) -> int:
        """Revoke every grant and token and delete every code of one user for one app."""
        ...

    def revoke_user_grants(
        self, user_id: str, now: datetime, *, scope: str | None = None
    ) -> tuple[int, int]:
        """Delete the user's unredeemed codes and revoke every grant of the user with all its
        tokens; with ``scope``, only the codes and grants whose scope holds that scope token.
        A redemption that has claimed a code by then is waited for, and its grant revoked
        too. Returns (grants newly revoked, codes deleted)."""
        ...

    def has_consented(self, user_id: str, app_id: str) -> bool:
        """Whether the user holds a code (any) or an unrevoked grant of the app: they consented
        to it and have not withdrawn it since (``revoke_user_app`` ends both)."""
        ...


class ResourceStore(Protocol):
    def create_resource(self, resource: Resource) -> None: ...
    def get_resource(self, resource_id: str) -> Resource | None: ...
    def get_resource_by_identifier(self, identifier: str) -> Resource | None: ...
    def list_resources(self) -> Sequence[Resource]: ...
    def update_resource(self, resource: Resource) -> None: ...
    def delete_resource(self, resource_id: str) -> bool: ...


class KeyStore(Protocol):
    def create_signing_key(self, key: SigningKey) -> None: ...
    def list_signing_keys(self) -> Sequence[SigningKey]:
        """Every stored key, oldest first (callers filter by state)."""
        ...

    def activate_signing_key(self, kid: str, now: datetime, retire_until: datetime) -> bool:
        """Atomically make the *next* key ``kid`` active and retire the active one (its
        ``retired_at`` = now, ``expires_at`` = retire_until). False, changing nothing, if
        ``kid`` is not a next key (another node rotated first)."""
        ...

    def delete_expired_signing_keys(self, now: datetime) -> int: ...
    def delete_next_signing_key(self, kid: str) -> bool:
        """Delete ``kid`` if it is a next key (never activated nor retired)."""
        ...


class ReplayStore(Protocol):
    def consume_assertion_jti(
        self, client_id: str, jti: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Record a client assertion's ``jti`` (RFC 7523 §3: single use). False if it was
        already recorded for that client and has not expired; expired entries may be purged."""
        ...


class RateLimitStore(Protocol):
    def hit_rate_limit(self, key: str, window_start: datetime, now: datetime, hits: int = 1) -> int:
        """Atomically count ``hits`` hits for ``key`` in the window that starts at
        ``window_start`` and return the count including them (``hits`` 0: a read). Older
        windows of every key may be purged."""
        ...


#: What the background cleanup deletes (``core/cleanup.py``), in the order it deletes them.
ExpiredKind = Literal[
    "sessions", "codes", "access_tokens", "refresh_tokens", "grants", "upstream_transactions"
]
EXPIRED_KINDS: tuple[ExpiredKind, ...] = (
    "sessions",
    "codes",
    "access_tokens",
    "refresh_tokens",
    "grants",
    "upstream_transactions",
)


class CleanupStore(Protocol):
    def purge_expired(self, kind: ExpiredKind, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` rows of ``kind`` that expired before ``before``, and return
        how many went. A grant counts as expired once no code, access token or refresh token
        refers to it any more and it was created before ``before``. Rows that a concurrent
        transaction holds are skipped (a later call takes them)."""
        ...


class AuditStore(Protocol):
    def append_audit(self, event: AuditEvent) -> None: ...
    def list_audit(self, query: AuditQuery) -> tuple[Sequence[AuditEvent], int]:
        """Newest first; returns the page and the total count matching the filters."""
        ...


class FlowStore(Protocol):
    """The flow timeline (core/flows.py), written in batches by a background writer."""

    def record_flow_steps(self, steps: Sequence[FlowStep]) -> None:
        """Append the steps and create or update the summary row of each flow they belong to
        (started at its first step, counts added, the last step's outcome and reason)."""
        ...

    def list_flows(self, query: FlowQuery) -> tuple[Sequence[Flow], int]:
        """Most recently active first; the page and the total count matching the filters."""
        ...

    def get_flow(self, flow_id: str) -> Flow | None: ...
    def list_flow_steps(self, flow_id: str) -> Sequence[FlowStep]:
        """The flow's steps in the order they happened."""
        ...

    def failing_clients(self, since: datetime, limit: int) -> Sequence[tuple[str, int]]:
        """The clients with the most refused steps since ``since``: (client_id, count)."""
        ...

    def flow_step_cutoff(self, cap: int) -> StepPosition | None:
        """The position (``at``, ``seq``) of the newest step beyond the newest ``cap`` in
        timeline order (None when there are no more than ``cap``): every step up to it must go
        to keep the cap."""
        ...

    def purge_flow_steps(self, before: datetime, up_to: StepPosition | None, limit: int) -> int:
        """Delete at most ``limit`` steps recorded before ``before`` or positioned at or before
        ``up_to``; how many went."""
        ...

    def purge_flows(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` flows last active before ``before`` or with no step left."""
        ...


class UpstreamStore(Protocol):
    """Sign-in through upstream OpenID Providers (core/upstream/)."""

    def create_upstream_provider(self, provider: UpstreamProvider) -> None: ...
    def get_upstream_provider(self, provider_id: str) -> UpstreamProvider | None: ...
    def list_upstream_providers(self) -> Sequence[UpstreamProvider]:
        """Every provider, by id."""
        ...

    def update_upstream_provider(self, provider: UpstreamProvider) -> None: ...
    def delete_upstream_provider(self, provider_id: str) -> bool:
        """Delete the provider with its identities and transactions."""
        ...

    def get_upstream_identity(self, provider_id: str, subject: str) -> UpstreamIdentity | None: ...
    def list_upstream_identities(self, user_id: str) -> Sequence[UpstreamIdentity]: ...
    def create_upstream_identity(self, identity: UpstreamIdentity) -> None:
        """DuplicateKeyError if (provider, subject) is linked already."""
        ...

    def touch_upstream_identity(self, provider_id: str, subject: str, at: datetime) -> None: ...
    def find_users_by_email(self, email: str) -> Sequence[User]:
        """At most two users whose address is ``email`` (case-insensitive): enough to tell
        one from several."""
        ...

    def create_upstream_transaction(self, transaction: UpstreamTransaction) -> None: ...
    def consume_upstream_transaction(
        self, state_hash: str, now: datetime
    ) -> UpstreamTransaction | None:
        """Atomically delete and return the unexpired transaction with ``state_hash``; None
        if there is none (never made, expired, or consumed already, on any node)."""
        ...


class SettingsStore(Protocol):
    def get_setting(self, key: str) -> Any | None: ...
    def set_setting(self, key: str, value: Any) -> None: ...


class Store(
    UserStore,
    SessionStore,
    ApiTokenStore,
    AppStore,
    CodeStore,
    TokenStore,
    ResourceStore,
    KeyStore,
    ReplayStore,
    RateLimitStore,
    CleanupStore,
    AuditStore,
    FlowStore,
    UpstreamStore,
    SettingsStore,
    Protocol,
):
    """Everything core persists."""
