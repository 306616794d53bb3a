"""Client configuration of dynamically registered clients (RFC 7592): read, update, delete.

The endpoint authenticates with the registration access token (``agrat_…``, shown once at
registration, stored as its SHA-256 only). Every failure — no token, a wrong one, an unknown
client, or an app an operator created (which has no such token) — is the same 401
``invalid_token``, so the endpoint tells nobody which client ids exist. The token is kept
across updates (not rotated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from authgate.core import (
    app_events,
    audit,
    negotiation,
    service_access,
)
from authgate.core.client_credentials import SECRET_KIND, accepted_methods
from authgate.core.context import Actor, Context
from authgate.core.errors import (
    InvalidTokenError,
)
from authgate.core.models import (
    App,
    AuthMethod,
    RegistrationSettings,
)
from authgate.core.registration_metadata import app_fields, bad, parse_metadata
from authgate.crypto import secrets

REGISTRATION_TOKEN_KIND = "rat"
INVALID_TOKEN = "The registration access token is invalid for this client"


def authenticate(ctx: Context, client_id: str, token: str | None) -> App:
    """The dynamically registered client the registration access token belongs to, or 401."""
    parsed = secrets.parse(token, REGISTRATION_TOKEN_KIND) if token else None
    app = ctx.store.get_app(client_id) if parsed is not None and len(client_id) <= 255 else None
    if (
        parsed is None
        or app is None
        or not app.dynamically_registered
        or app.registration_token_hash is None
        or not secrets.constant_time_equal(app.registration_token_hash, parsed.hash)
    ):
        raise InvalidTokenError(INVALID_TOKEN, debug=f"client_id {client_id[:64]!r}")
    return app


def client_information(ctx: Context, app: App) -> dict[str, Any]:
    """RFC 7591 §3.2.1 / RFC 7592 §3 without the secrets (which only registration returns)."""
    base = ctx.policy.issuer.rstrip("/")
    info: dict[str, Any] = {
        "client_id": app.id,
        "client_id_issued_at": int(app.created_at.timestamp()),
        "registration_client_uri": f"{base}/oauth2/clients/{app.id}",
        "client_name": app.name,
        "redirect_uris": list(app.redirect_uris),
        "token_endpoint_auth_method": app.token_endpoint_auth_method,
        "grant_types": list(app.grant_types),
        "response_types": ["code"] if "authorization_code" in app.grant_types else [],
        "application_type": app.application_type,
    }
    optional: dict[str, Any] = {
        "client_uri": app.client_uri,
        "logo_uri": app.icon,
        "tos_uri": app.tos_uri,
        "policy_uri": app.policy_uri,
        "contacts": list(app.contacts),
        "scope": app.scope,
        "jwks": app.jwks,
        "jwks_uri": app.jwks_uri,
        "software_id": app.software_id,
        "software_version": app.software_version,
    }
    methods = accepted_methods(app)
    if len(methods) > 1:
        # RP Metadata Choices: every method the token endpoint accepts from it, per request.
        info["token_endpoint_auth_methods_supported"] = list(methods)
    if "client_credentials" in app.grant_types:
        # What its client_credentials tokens may reach: an operator decides (nothing until
        # then), so the client developer sees why the token endpoint says no.
        info["service_access"] = service_access.as_json(app.service_access)
    return info | {k: v for k, v in optional.items() if v}


def _credential(method: AuthMethod | None) -> str:
    if method == "none":
        return "public"
    return "key" if method == "private_key_jwt" else "secret"


def _check_secret(ctx: Context, app: App, value: Any) -> None:
    """RFC 7592 §2.2: "If the client includes the client_secret field in the request, the value
    of this field MUST match the currently issued client secret for that client."""
    parsed = secrets.parse(value, SECRET_KIND) if isinstance(value, str) else None
    stored = ctx.store.get_secret_by_prefix(parsed.prefix) if parsed is not None else None
    if (
        parsed is None
        or stored is None
        or stored.app_id != app.id
        or not secrets.constant_time_equal(stored.secret_hash, parsed.hash)
    ):
        raise bad("client_secret does not match the client's secret")


def update_client(
    ctx: Context, actor: Actor, app: App, body: Mapping[str, Any], settings: RegistrationSettings
) -> App:
    """RFC 7592 §2.2: the request replaces the metadata (omitted fields take their defaults)."""
    # "The client MUST include its client_id field in the request, and it MUST be the same as
    # its currently issued client identifier."
    if body.get("client_id") != app.id:
        raise bad("client_id must be the client's own client_id")
    if body.get("client_secret") is not None:
        _check_secret(ctx, app, body["client_secret"])
    parsed = parse_metadata(ctx, body, settings)
    metadata = parsed.metadata
    if _credential(metadata.token_endpoint_auth_method) != _credential(
        app.token_endpoint_auth_method
    ):
        raise bad(
            "token_endpoint_auth_method cannot change between none, a client secret and "
            "private_key_jwt; register a new client instead"
        )
    updated = replace(app, updated_at=ctx.clock.now(), **app_fields(metadata))
    ctx.store.update_app(updated)
    audit.record(
        ctx,
        actor.as_client(app.id),
        "client.updated",
        target_type="app",
        target_id=app.id,
        dropped=negotiation.as_audit(parsed.dropped),
        **app_events.fields(updated),
    )
    return updated


def delete_client(ctx: Context, actor: Actor, app: App) -> None:
    """RFC 7592 §2.3: the client, its secrets, codes, grants and tokens are gone."""
    ctx.store.delete_app(app.id)
    audit.record(
        ctx,
        actor.as_client(app.id),
        "client.deleted",
        target_type="app",
        target_id=app.id,
        name=app.name,
    )
