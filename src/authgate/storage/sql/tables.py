"""The SQL schema of authgate as SQLAlchemy Core tables (DESIGN.md §4).

Columns mirror the dataclasses of ``authgate.core.models`` one to one, so a row becomes a model
with ``Model(**row._mapping)``. This module describes the schema the code expects; the
migrations in ``migrations/versions`` create it and ``tests/storage/test_migrations.py`` checks
that the two agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
    text,
)

from authgate.storage.sql.types import NullablePortableJSON, PortableJSON, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _fk(target: str, *, on_delete: str = "CASCADE") -> ForeignKey:
    return ForeignKey(target, ondelete=on_delete)


def _where(*conditions: str) -> dict[str, Any]:
    """A partial index's condition, on both backends: the rows that meet all ``conditions``."""
    where = text(" AND ".join(conditions))
    return {"sqlite_where": where, "postgresql_where": where}


def _where_set(column: str) -> dict[str, Any]:
    """The rows where ``column`` is set."""
    return _where(f"{column} IS NOT NULL")


#: A flow step that is its flow's only one (``FlowStep.alone``: its id is the flow's).
ALONE = "id = flow_id"
#: A step of a flow that has, or may have, others: only those are looked up by their flow's id.
NOT_ALONE = "id <> flow_id"


def _where_alone(*more: str) -> dict[str, Any]:
    """The steps that are flows of their own (and ``more``)."""
    return _where(ALONE, *more)


users = Table(
    "users",
    metadata,
    Column("id", String, primary_key=True),
    Column("username", String, nullable=False),
    Column("email", String, nullable=False),
    Column("name", String, nullable=False),
    Column("password_hash", String, nullable=True),
    Column("is_admin", Boolean, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # OpenID Connect (0008): whether the address is proven to reach the person.
    Column("email_verified", Boolean, nullable=False, server_default=false()),
    Index("ix_users_username", "username", unique=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String, primary_key=True),
    Column("user_id", String, _fk("users.id"), nullable=False),
    Column("token_hash", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("ip", String, nullable=True),
    Column("user_agent", Text, nullable=True),
    # How the person signed in (0008): RFC 8176 method references, the upstream provider.
    Column("amr", String, nullable=False, server_default="pwd"),
    Column("idp", String, nullable=True),
    Index("ix_sessions_token_hash", "token_hash", unique=True),
    Index("ix_sessions_user_id", "user_id"),
    Index("ix_sessions_expires_at", "expires_at"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String, primary_key=True),
    Column("user_id", String, _fk("users.id"), nullable=False),
    Column("name", String, nullable=False),
    Column("prefix", String, nullable=False),
    Column("token_hash", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    Index("ix_api_tokens_prefix", "prefix", unique=True),
    Index("ix_api_tokens_user_id", "user_id"),
)

apps = Table(
    "apps",
    metadata,
    Column("id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("icon", Text, nullable=False),
    Column("redirect_uris", PortableJSON, nullable=False),
    Column("client_type", String, nullable=False),
    Column("require_pkce", Boolean, nullable=False),
    Column("token_endpoint_auth_method", String, nullable=True),
    Column("grant_types", PortableJSON, nullable=False),
    Column("scope", Text, nullable=True),
    Column("first_party", Boolean, nullable=False),
    Column("dynamically_registered", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # RFC 7591 client metadata (0003); the server defaults are what rows older than it got.
    Column("application_type", String, nullable=False, server_default="web"),
    Column("client_uri", Text, nullable=False, server_default=""),
    Column("tos_uri", Text, nullable=False, server_default=""),
    Column("policy_uri", Text, nullable=False, server_default=""),
    Column("contacts", PortableJSON, nullable=False, server_default="[]"),
    Column("jwks", NullablePortableJSON, nullable=True),
    Column("jwks_uri", Text, nullable=False, server_default=""),
    Column("software_id", String, nullable=False, server_default=""),
    Column("software_version", String, nullable=False, server_default=""),
    Column("registration_token_hash", String, nullable=True),
    Column("metadata_document", Boolean, nullable=False, server_default=false()),
    Column("metadata_expires_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    # What an operator opened to the app (0006): client_credentials access, admin scopes.
    Column("service_access", PortableJSON, nullable=False, server_default="[]"),
    Column("admin_access", Boolean, nullable=False, server_default=false()),
    # The sweep of unused dynamically registered clients.
    Index("ix_apps_dynamically_registered", "dynamically_registered", "last_used_at"),
)

app_secrets = Table(
    "app_secrets",
    metadata,
    Column("id", String, primary_key=True),
    Column("app_id", String, _fk("apps.id"), nullable=False),
    Column("prefix", String, nullable=False),
    Column("secret_hash", String, nullable=False),
    Column("display_secret", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Index("ix_app_secrets_prefix", "prefix", unique=True),
    Index("ix_app_secrets_app_id", "app_id"),
)

# ``grant_id`` is recorded on redemption *before* the grant row is inserted (the UPDATE is what
# claims the code), so it is an indexed reference rather than a foreign key.
authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("id", String, primary_key=True),
    Column("prefix", String, nullable=False),
    Column("code_hash", String, nullable=False),
    Column("app_id", String, _fk("apps.id"), nullable=False),
    Column("user_id", String, _fk("users.id"), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("redirect_uri_provided", Boolean, nullable=False),
    Column("code_challenge", String, nullable=True),
    Column("code_challenge_method", String, nullable=True),
    Column("scope", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("state_hash", String, nullable=True),
    Column("auth_time", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("consumed_at", UTCDateTime, nullable=True),
    Column("grant_id", String, nullable=True),
    Column("flow_id", String, nullable=True),
    # OpenID Connect (0008): how the person signed in, and the request's nonce.
    Column("amr", String, nullable=False, server_default="pwd"),
    Column("idp", String, nullable=True),
    Column("nonce", Text, nullable=True),
    Index("ix_authorization_codes_prefix", "prefix", unique=True),
    Index("ix_authorization_codes_app_id", "app_id"),
    Index("ix_authorization_codes_user_id", "user_id"),
    Index("ix_authorization_codes_grant_id", "grant_id"),
    Index("ix_authorization_codes_expires_at", "expires_at"),
)

grants = Table(
    "grants",
    metadata,
    Column("id", String, primary_key=True),
    Column("app_id", String, _fk("apps.id"), nullable=False),
    Column("user_id", String, _fk("users.id"), nullable=True),
    Column("resource", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("auth_time", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("flow_id", String, nullable=True),
    # How the person signed in (0008), for the ID tokens a refresh issues.
    Column("amr", String, nullable=False, server_default="pwd"),
    Column("idp", String, nullable=True),
    Index("ix_grants_app_id", "app_id"),
    Index("ix_grants_user_id", "user_id"),
)


def _token_table(name: str, *, refresh: bool) -> Table:
    """access_tokens and refresh_tokens share their shape; refresh tokens are single use."""
    extra = [Column("consumed_at", UTCDateTime, nullable=True)] if refresh else []
    return Table(
        name,
        metadata,
        Column("id", String, primary_key=True),
        Column("prefix", String, nullable=False),
        Column("token_hash", String, nullable=False),
        Column("grant_id", String, _fk("grants.id"), nullable=not refresh),
        Column("app_id", String, _fk("apps.id"), nullable=False),
        Column("user_id", String, nullable=True),
        Column("secret_id", String, _fk("app_secrets.id", on_delete="SET NULL"), nullable=True),
        Column("audience", Text, nullable=False),
        Column("scope", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),
        *extra,
        Column("revoked_at", UTCDateTime, nullable=True),
        Index(f"ix_{name}_prefix", "prefix", unique=True),
        Index(f"ix_{name}_grant_id", "grant_id"),
        Index(f"ix_{name}_app_id", "app_id"),
        Index(f"ix_{name}_user_id", "user_id"),
        Index(f"ix_{name}_secret_id", "secret_id"),
        Index(f"ix_{name}_expires_at", "expires_at"),
    )


access_tokens = _token_table("access_tokens", refresh=False)
refresh_tokens = _token_table("refresh_tokens", refresh=True)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("action", String, nullable=False),
    Column("actor_type", String, nullable=False),
    Column("actor_id", String, nullable=True),
    Column("target_type", String, nullable=True),
    Column("target_id", String, nullable=True),
    Column("ip", String, nullable=True),
    Column("user_agent", Text, nullable=True),
    Column("request_id", String, nullable=True),
    Column("details", PortableJSON, nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_action", "action"),
)

flows = Table(
    "flows",
    metadata,
    Column("id", String, primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_at", UTCDateTime, nullable=False),
    Column("client_id", String, nullable=True),
    Column("user_id", String, nullable=True),
    Column("resource", Text, nullable=True),
    Column("steps", Integer, nullable=False),
    Column("refusals", Integer, nullable=False),
    Column("last_outcome", String, nullable=False),
    Column("last_reason", String, nullable=True),
    Index("ix_flows_last_at", "last_at"),
    Index("ix_flows_client_id", "client_id"),
    # Partial (migration 0010): a client_credentials flow has no user.
    Index("ix_flows_user_id", "user_id", **_where_set("user_id")),
)

flow_steps = Table(
    "flow_steps",
    metadata,
    Column("id", String, primary_key=True),
    Column("flow_id", String, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String, nullable=False),
    Column("outcome", String, nullable=False),
    Column("reason", String, nullable=True),
    Column("client_id", String, nullable=True),
    Column("user_id", String, nullable=True),
    Column("resource", Text, nullable=True),
    Column("request_id", String, nullable=True),
    Column("reference", String, nullable=True),
    Column("detail", PortableJSON, nullable=False),
    # Partial (migration 0013): a flow of one step is found by its step's id, the primary key.
    Index("ix_flow_steps_flow_id", "flow_id", **_where(NOT_ALONE)),
    # Timeline order: the cap, the retention and the failing clients (migration 0010).
    Index("ix_flow_steps_at_seq", "at", "seq"),
    # Partial: searches by reason and by reference look for refusals, which have a reason.
    Index("ix_flow_steps_reason", "reason", **_where_set("reason")),
    Index("ix_flow_steps_reference", "reference", **_where_set("reason")),
    # A flow of one step is that step alone, without a ``flows`` row (migration 0012): the
    # searches by client and by person find it here.
    Index("ix_flow_steps_alone_client", "client_id", "at", **_where_alone()),
    Index("ix_flow_steps_alone_user", "user_id", **_where_alone("user_id IS NOT NULL")),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", PortableJSON, nullable=True),
)

# ``scopes`` is a JSON list of {"name", "description"}; ``introspectors`` a JSON list of app ids,
# deliberately not foreign keys (core ignores ids of apps that no longer exist).
resources = Table(
    "resources",
    metadata,
    Column("id", String, primary_key=True),
    Column("identifier", Text, nullable=False),
    Column("name", String, nullable=False),
    Column("scopes", PortableJSON, nullable=False),
    Column("token_format", String, nullable=False),
    Column("access_token_ttl", Integer, nullable=True),
    Column("introspectors", PortableJSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_resources_identifier", "identifier", unique=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String, primary_key=True),
    Column("alg", String, nullable=False),
    Column("public_jwk", PortableJSON, nullable=False),
    Column("private_key", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("activated_at", UTCDateTime, nullable=True),
    Column("retired_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
)

# RFC 7523 §3: the jti of a client assertion is single use; kept until the assertion expires.
# ``client_id`` is deliberately not a foreign key: the rows are short-lived and self-expiring.
client_assertion_jtis = Table(
    "client_assertion_jtis",
    metadata,
    Column("client_id", String, nullable=False),
    Column("jti", String, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("client_id", "jti"),
    Index("ix_client_assertion_jtis_expires_at", "expires_at"),
)

# Fixed-window rate-limit counters: one row per key and window.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("key", "window_start"),
    Index("ix_rate_limits_window_start", "window_start"),
)

# One row: how many times ``apps`` or ``app_secrets`` changed, counted by the triggers of
# migration 0005 on SQLite (on PostgreSQL they notify instead). See client_cache.py.
client_changes = Table(
    "client_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),
)

# Upstream OpenID Providers people sign in through (0009). ``client_secret`` is sealed with a
# key derived from AUTHGATE_SECRET_KEY (core/upstream/providers.py), never stored in clear; so
# is ``assertion_key``, the private key of private_key_jwt (0011), whose certificate is public.
upstream_providers = Table(
    "upstream_providers",
    metadata,
    Column("id", String, primary_key=True),
    Column("display_name", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("issuer", String, nullable=False),
    Column("client_id", String, nullable=False),
    Column("client_secret", Text, nullable=True),
    Column("scopes", String, nullable=False),
    Column("allowed_domains", PortableJSON, nullable=False),
    Column("link_by_verified_email", Boolean, nullable=False),
    Column("jit_create", Boolean, nullable=False),
    Column("required_claim", String, nullable=True),
    Column("required_values", PortableJSON, nullable=False),
    Column("admin_claim", String, nullable=True),
    Column("admin_values", PortableJSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("token_auth_method", String, nullable=True),
    Column("assertion_audience", String, nullable=False, server_default="token_endpoint"),
    Column("assertion_key", Text, nullable=True),
    Column("assertion_certificate", Text, nullable=True),
)

# A person at an upstream provider linked to a local user: matched by (provider, subject) only.
upstream_identities = Table(
    "upstream_identities",
    metadata,
    Column("provider_id", String, _fk("upstream_providers.id"), nullable=False),
    Column("subject", String, nullable=False),
    Column("user_id", String, _fk("users.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_sign_in_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("provider_id", "subject"),
    Index("ix_upstream_identities_user_id", "user_id"),
)

# Upstream sign-ins in progress: single use (deleted when the callback consumes them), and
# purged by the background cleanup once expired. Only a SHA-256 of ``state`` is stored.
upstream_transactions = Table(
    "upstream_transactions",
    metadata,
    Column("state_hash", String, primary_key=True),
    Column("provider_id", String, _fk("upstream_providers.id"), nullable=False),
    Column("nonce", String, nullable=False),
    Column("code_verifier", String, nullable=False),
    Column("return_to", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_upstream_transactions_expires_at", "expires_at"),
)
