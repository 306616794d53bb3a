"""Dynamic client registration (RFC 7591 §3), with the abuse controls of DESIGN.md §6: an off
switch, rate limits, an optional initial access token, a redirect-host allow-list, a cap on
registered clients and the expiry of unused ones.

``register`` is a stack of checks, in this order, and nothing is stored until all have passed:
switched on → rate limits (per source IP, then overall) → initial access token (if required)
→ the metadata (``registration_metadata.parse_metadata``) → the cap. A registered client is
public (``none``) or confidential and pinned to the one method it registered (DESIGN.md §7),
always uses PKCE and is never first party. Its configuration afterwards (RFC 7592) is
``client_configuration``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from authgate.core import (
    app_events,
    audit,
    client_expiry,
    clients,
    negotiation,
    rate_limits,
)
from authgate.core import registration_settings as runtime_settings
from authgate.core.client_configuration import REGISTRATION_TOKEN_KIND, client_information
from authgate.core.context import SYSTEM, Actor, Context
from authgate.core.errors import (
    AccessDeniedError,
)
from authgate.core.models import (
    App,
    RegistrationSettings,
    ServiceAccess,
)
from authgate.core.ports import StoreUnavailableError
from authgate.core.rate_limits import Limit, RateLimitedError
from authgate.core.registration_metadata import ClientMetadata, Parsed, app_fields, parse_metadata
from authgate.core.registration_settings import InitialAccessToken
from authgate.crypto import secrets

SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
PURGE_KEY = "registration:purge"
DISABLED = "Dynamic client registration is disabled on this server"
#: The start of the cap's ``debug``, which the flow timeline reads (core/flow_reasons.py).
MAX_CLIENTS_DEBUG = "registration_max_clients="


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Registrations per source IP and overall, per hour (0 = unlimited)."""

    per_ip: int = 10
    overall: int = 100


@dataclass(frozen=True, slots=True)
class Registration:
    """A new client and its one-time secrets (RFC 7591 §3.2.1)."""

    app: App
    client_secret: str | None
    registration_access_token: str


# Abuse controls.


def check_rate_limits(ctx: Context, actor: Actor, limits: RateLimits) -> None:
    """Per source IP first, so that one noisy address does not spend everybody's budget."""
    for scope, limit in (
        ("ip", Limit(f"registration:ip:{rate_limits.source_key(actor)}", limits.per_ip)),
        ("global", Limit("registration:global", limits.overall)),
    ):
        hit = rate_limits.hit(ctx, limit)
        if not hit.over(limit):
            continue
        if hit.first_over(limit):
            audit.record(
                ctx,
                actor,
                "registration.rate_limited",
                target_type="rate_limit",
                target_id=scope,
                limit=limit.max_hits,
                window_start=hit.window_start.isoformat(),
            )
        who = "from this address" if scope == "ip" else "on this server"
        raise RateLimitedError(
            f"Too many client registrations {who}; try again in {hit.retry_after} seconds",
            retry_after=hit.retry_after,
        )


def _purge_now_and_then(ctx: Context, settings: RegistrationSettings) -> None:
    """Expire unused clients at most once an hour, on whichever node registers first."""
    if settings.client_ttl_days > 0 and rate_limits.first_in_window(ctx, PURGE_KEY):
        client_expiry.purge_stale_dynamic_apps(ctx, SYSTEM)


def _check_cap(ctx: Context, settings: RegistrationSettings) -> None:
    if settings.max_clients and ctx.store.count_dynamic_apps() >= settings.max_clients:
        raise AccessDeniedError(
            "This server has reached its limit of dynamically registered clients; "
            "ask its operator to register the client",
            debug=f"{MAX_CLIENTS_DEBUG}{settings.max_clients}",
        )


def register(
    ctx: Context,
    actor: Actor,
    read_body: Callable[[], Mapping[str, Any]],
    *,
    settings: RegistrationSettings,
    limits: RateLimits,
    initial_access_token: str | None,
) -> Registration:
    """RFC 7591 §3: validate, then store the client and issue its credentials.

    ``read_body`` parses the request (raising ``invalid_client_metadata``); it is called only
    once the request is admitted, so that a request is refused for the first reason in the
    stack, and a malformed body from an address over its limit still counts against it."""
    if not settings.enabled:
        raise AccessDeniedError(DISABLED)
    check_rate_limits(ctx, actor, limits)
    # A token presented where none is required is checked too: it may carry an operator's
    # grant (client_credentials access), and a client that sends one should learn it is bad.
    initial = (
        runtime_settings.check_initial_access_token(ctx, initial_access_token)
        if settings.initial_access_token_required or initial_access_token is not None
        else None
    )
    parsed = parse_metadata(ctx, read_body(), settings)
    metadata = parsed.metadata
    _purge_now_and_then(ctx, settings)
    _check_cap(ctx, settings)
    now = ctx.clock.now()
    token = secrets.generate(REGISTRATION_TOKEN_KIND)
    app = App(
        id=str(uuid.uuid4()),
        require_pkce=True,
        first_party=False,
        dynamically_registered=True,
        created_at=now,
        updated_at=now,
        registration_token_hash=token.hash,
        service_access=_granted_access(metadata, initial),
        **app_fields(metadata),
    )
    ctx.store.create_app(app)
    try:
        secret = _finish_registration(ctx, actor, app, parsed, initial)
    except StoreUnavailableError:
        # The client never learns its credentials: take the app back rather than leave it
        # half-made (if the database is gone for good, the app is an unused registration,
        # which _purge_now_and_then removes).
        with contextlib.suppress(StoreUnavailableError):
            ctx.store.delete_app(app.id)
        raise
    return Registration(app, secret, token.value)


def _granted_access(
    metadata: ClientMetadata, initial: InitialAccessToken | None
) -> tuple[ServiceAccess, ...]:
    """A client registered by itself reaches nothing with client_credentials unless the
    initial access token it presented carries an operator's grant (RFC 6749 §4.4, "previously
    arranged with the authorization server"); an operator may also grant it later."""
    if initial is None or metadata.public or "client_credentials" not in metadata.grant_types:
        return ()
    return initial.service_access


def _finish_registration(
    ctx: Context,
    actor: Actor,
    app: App,
    parsed: Parsed,
    initial: InitialAccessToken | None,
) -> str | None:
    metadata = parsed.metadata
    as_client = actor.as_client(app.id)
    secret = None
    if metadata.token_endpoint_auth_method in SECRET_METHODS:
        _, secret = clients.create_secret(ctx, as_client, app.id)
    if initial is not None:
        runtime_settings.use_initial_access_token(ctx, initial.id)
    audit.record(
        ctx,
        as_client,
        "client.registered",
        target_type="app",
        target_id=app.id,
        initial_access_token_id=initial.id if initial is not None else None,
        dropped=negotiation.as_audit(parsed.dropped),
        **app_events.fields(app),
    )
    return secret


def registration_response(ctx: Context, registered: Registration) -> dict[str, Any]:
    info = client_information(ctx, registered.app)
    info["registration_access_token"] = registered.registration_access_token
    if registered.client_secret is not None:
        # RFC 7591 §3.2.1: "REQUIRED if client_secret is issued"; 0 = it does not expire.
        info["client_secret"] = registered.client_secret
        info["client_secret_expires_at"] = 0
    return info
