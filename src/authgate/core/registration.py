"""Dynamic client registration (RFC 7591) and client configuration (RFC 7592), with the abuse
controls of DESIGN.md §6: an off switch, rate limits, an optional initial access token, a
redirect-host allow-list, a cap on registered clients and the expiry of unused ones.

``register`` is a stack of checks, in this order, and nothing is stored until all have passed:
switched on → rate limits (per source IP, then overall) → initial access token (if required)
→ the metadata (``parse_metadata``) → the cap. A registered client is public (``none``) or
confidential and pinned to the one method it registered (DESIGN.md §7), always uses PKCE and is
never first party.

RFC 7592 calls authenticate with the registration access token (``agrat_…``, shown once, stored
as its SHA-256 only). Every failure — no token, a wrong one, an unknown client, or an app an
operator created (which has no such token) — is the same 401 ``invalid_token``, so the endpoint
tells nobody which client ids exist. The token is kept across updates (not rotated).
"""

from __future__ import annotations

import contextlib
import ipaddress
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from authgate.core import (
    app_events,
    audit,
    client_expiry,
    client_metadata,
    clients,
    confusables,
    negotiation,
    rate_limits,
    redirect_uris,
    scopes,
    service_access,
)
from authgate.core import settings as runtime_settings
from authgate.core.client_credentials import SECRET_KIND, accepted_methods
from authgate.core.context import SYSTEM, Actor, Context
from authgate.core.errors import (
    AccessDeniedError,
    InvalidClientMetadataError,
    InvalidRedirectUriError,
    InvalidTokenError,
    OAuthError,
)
from authgate.core.models import (
    App,
    ApplicationType,
    AuthMethod,
    GrantType,
    RegistrationSettings,
    ServiceAccess,
)
from authgate.core.ports import StoreUnavailableError
from authgate.core.rate_limits import Limit, RateLimitedError
from authgate.core.settings import InitialAccessToken
from authgate.crypto import secrets

REGISTRATION_TOKEN_KIND = "rat"
AUTH_METHODS: tuple[AuthMethod, ...] = (
    "none",
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
)
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
DEFAULT_METHOD: AuthMethod = "client_secret_basic"
DEFAULT_GRANTS: tuple[GrantType, ...] = ("authorization_code", "refresh_token")
GRANTS = frozenset({"authorization_code", "refresh_token", "client_credentials"})
MAX_NAME = 64
MAX_URL = 2048
MAX_TEXT = 255
MAX_CONTACTS = 10
MAX_CONTACT = 320
PURGE_KEY = "registration:purge"
DISABLED = "Dynamic client registration is disabled on this server"
INVALID_TOKEN = "The registration access token is invalid for this client"


class UnapprovedSoftwareStatementError(OAuthError):
    """RFC 7591 §3.2.2: authgate approves no software statement issuer, so it refuses any."""

    error = "unapproved_software_statement"
    redirectable = False


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Registrations per source IP and overall, per hour (0 = unlimited)."""

    per_ip: int = 10
    overall: int = 100


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """Validated RFC 7591 §2 client metadata (empty string / None = not registered)."""

    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: AuthMethod
    grant_types: tuple[GrantType, ...]
    application_type: ApplicationType
    client_name: str
    client_uri: str = ""
    logo_uri: str = ""
    tos_uri: str = ""
    policy_uri: str = ""
    contacts: tuple[str, ...] = ()
    scope: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str = ""
    software_id: str = ""
    software_version: str = ""

    @property
    def public(self) -> bool:
        return self.token_endpoint_auth_method == "none"


@dataclass(frozen=True, slots=True)
class Registration:
    """A new client and its one-time secrets (RFC 7591 §3.2.1)."""

    app: App
    client_secret: str | None
    registration_access_token: str


def _bad(message: str) -> InvalidClientMetadataError:
    return InvalidClientMetadataError(message)


# The metadata checks, one per field (RFC 7591 §2).


def _text(body: Mapping[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    if len(value) > limit:
        raise _bad(f"{name} must be at most {limit} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise _bad(f"{name} must not contain control characters")
    return value.strip()


def _https_url(body: Mapping[str, Any], name: str) -> str:
    """``client_uri``, ``logo_uri``, ``tos_uri``, ``policy_uri``, ``jwks_uri``: https only."""
    value = _text(body, name, MAX_URL)
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc or parts.fragment:
        raise _bad(f"{name} must be an https URL with a host and no user information")
    return value


def _method_refusal(method: str) -> str:
    return f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}"


def _negotiate(ctx: Context, body: Mapping[str, Any]) -> negotiation.Negotiated:
    """Grant types, response types and auth methods (core/negotiation.py)."""
    rules = negotiation.Rules(
        grants=GRANTS,
        starting_grants=frozenset({"authorization_code", "client_credentials"}),
        default_grants=DEFAULT_GRANTS,
        grants_refusal=(
            "grant_types must include authorization_code or client_credentials "
            f"(this server supports {', '.join(sorted(GRANTS))})"
        ),
        methods=AUTH_METHODS,
        # RFC 7591 §2: "If unspecified or omitted, the default is client_secret_basic".
        default_method=DEFAULT_METHOD,
        method_refusal=_method_refusal,
        keys=lambda b: _keys(ctx, b),
    )
    try:
        return negotiation.negotiate(body, rules)
    except negotiation.Unusable as exc:
        raise _bad(str(exc)) from exc


def _application_type(body: Mapping[str, Any]) -> ApplicationType | None:
    value = body.get("application_type")
    if value is not None and value not in ("web", "native"):
        raise _bad("application_type must be web or native")
    return value


def _is_native_only(uri: str) -> bool:
    """A loopback http URI (RFC 8252 §7.3) or a private-use scheme (RFC 8252 §7.1)."""
    scheme = urlsplit(uri).scheme.lower()
    return redirect_uris.is_loopback(uri) or scheme not in ("http", "https")


def _is_local_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_application_type(uris: tuple[str, ...], kind: ApplicationType) -> None:
    """OpenID Connect Registration §2: "Web Clients using the OAuth Implicit Grant Type MUST
    only register URLs using the https scheme as redirect_uris; they MUST NOT use localhost as
    the hostname." authgate holds every web client to it; a native client may use loopback http,
    a private-use scheme, or a claimed https URI (RFC 8252 §7.2, as VS Code registers)."""
    if kind != "web":
        return
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme.lower() != "https" or _is_local_host((parts.hostname or "").lower()):
            raise InvalidRedirectUriError(
                "A web client's redirect URIs must be https on a host other than localhost; "
                f"register {uri} with application_type native"
            )


def _redirect_uris(
    body: Mapping[str, Any],
    grants: tuple[GrantType, ...],
    public: bool,
    settings: RegistrationSettings,
) -> tuple[str, ...]:
    value = body.get("redirect_uris")
    if not value and "authorization_code" not in grants:
        return ()  # a client_credentials client sends nobody anywhere
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise InvalidRedirectUriError("redirect_uris must be a non-empty array of URIs")
    uris = redirect_uris.validate_redirect_uris(value, public=public)
    if settings.redirect_hosts:
        for uri in uris:
            if not runtime_settings.redirect_allowed(uri, settings.redirect_hosts):
                raise InvalidRedirectUriError(
                    f"The redirect URI {uri} is not on a host this server accepts for "
                    "dynamically registered clients"
                )
    return uris


def _name(body: Mapping[str, Any], uris: tuple[str, ...], client_uri: str) -> str:
    name = _text(body, "client_name", MAX_NAME)
    if name:
        return name
    source = client_uri or (uris[0] if uris else "")
    parts = urlsplit(source)
    host = parts.hostname or parts.scheme
    return f"Client ({host})"[:MAX_NAME] if host else "Client"


def _contacts(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("contacts")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_CONTACTS:
        raise _bad(f"contacts must be an array of at most {MAX_CONTACTS} strings")
    checked = []
    for contact in value:
        if (
            not isinstance(contact, str)
            or not 1 <= len(contact.strip()) <= MAX_CONTACT
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in contact)
        ):
            raise _bad(f"every contact must be 1 to {MAX_CONTACT} printable characters")
        checked.append(contact.strip())
    return tuple(checked)


def _scope(body: Mapping[str, Any]) -> str | None:
    value = body.get("scope")
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad("scope must be a space-separated string")
    try:
        return scopes.format_scope(scopes.parse_scope(value.strip())) or None
    except OAuthError as exc:
        raise _bad(f"scope: {exc.description}") from exc


def _keys(ctx: Context, body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """``private_key_jwt`` needs the client's public keys: ``jwks`` or ``jwks_uri``; raises
    ``negotiation.Unusable`` when they cannot be used (authgate encrypts nothing to clients, so
    a client without that method registers no keys)."""
    # RFC 7591 §2: "The jwks_uri and jwks parameters MUST NOT both be present".
    if (body.get("jwks") is None) == (body.get("jwks_uri") is None):
        raise negotiation.Unusable("private_key_jwt needs exactly one of jwks and jwks_uri")
    if body.get("jwks_uri") is not None:
        if ctx.fetcher is None:
            raise negotiation.Unusable(
                "this server does not fetch jwks_uri; register the keys as jwks"
            )
        try:
            return None, _https_url(body, "jwks_uri")
        except OAuthError as exc:
            raise negotiation.Unusable(exc.description) from exc
    try:
        return client_metadata.check_jwks(body["jwks"]), ""
    except client_metadata.InvalidDocument as exc:
        raise negotiation.Unusable(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Parsed:
    """The metadata to register, and what the client asked for and was not registered
    (core/negotiation.py), for the audit entry."""

    metadata: ClientMetadata
    dropped: Mapping[str, tuple[str, ...]]


def parse_metadata(ctx: Context, body: Mapping[str, Any], settings: RegistrationSettings) -> Parsed:
    """Validate a registration (or RFC 7592 update) request; unknown fields are ignored
    (RFC 7591 §2: "The authorization server MUST ignore any client metadata sent by the client
    that it does not understand")."""
    if body.get("software_statement") is not None:
        raise UnapprovedSoftwareStatementError(
            "This server does not accept software statements; register without one"
        )
    negotiated = _negotiate(ctx, body)
    public = negotiated.public
    grants = negotiated.grant_types
    stated = _application_type(body)
    uris = _redirect_uris(body, grants, public, settings)
    # Without application_type, the URIs say what the client is: many MCP clients on the
    # user's machine (loopback callbacks) omit it, and would be refused as "web" clients.
    kind: ApplicationType = stated or ("native" if any(_is_native_only(u) for u in uris) else "web")
    _check_application_type(uris, kind)
    client_uri = _https_url(body, "client_uri")
    metadata = ClientMetadata(
        redirect_uris=uris,
        token_endpoint_auth_method=negotiated.token_endpoint_auth_method,
        grant_types=grants,
        application_type=kind,
        client_name=_name(body, uris, client_uri),
        client_uri=client_uri,
        logo_uri=_https_url(body, "logo_uri"),
        tos_uri=_https_url(body, "tos_uri"),
        policy_uri=_https_url(body, "policy_uri"),
        contacts=_contacts(body),
        scope=_scope(body),
        jwks=negotiated.jwks,
        jwks_uri=negotiated.jwks_uri,
        software_id=_text(body, "software_id"),
        software_version=_text(body, "software_version"),
    )
    return Parsed(metadata, negotiated.dropped)


def _app_fields(metadata: ClientMetadata) -> dict[str, Any]:
    return {
        "name": metadata.client_name,
        "icon": metadata.logo_uri,
        "redirect_uris": metadata.redirect_uris,
        "client_type": "public" if metadata.public else "confidential",
        "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
        "grant_types": metadata.grant_types,
        "scope": metadata.scope,
        "application_type": metadata.application_type,
        "client_uri": metadata.client_uri,
        "tos_uri": metadata.tos_uri,
        "policy_uri": metadata.policy_uri,
        "contacts": metadata.contacts,
        "jwks": metadata.jwks,
        "jwks_uri": metadata.jwks_uri,
        "software_id": metadata.software_id,
        "software_version": metadata.software_version,
    }


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
            debug=f"registration_max_clients={settings.max_clients}",
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
        **_app_fields(metadata),
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


# RFC 7592: the client configuration endpoint.


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


def registration_response(ctx: Context, registered: Registration) -> dict[str, Any]:
    info = client_information(ctx, registered.app)
    info["registration_access_token"] = registered.registration_access_token
    if registered.client_secret is not None:
        # RFC 7591 §3.2.1: "REQUIRED if client_secret is issued"; 0 = it does not expire.
        info["client_secret"] = registered.client_secret
        info["client_secret_expires_at"] = 0
    return info


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
        raise _bad("client_secret does not match the client's secret")


def update_client(
    ctx: Context, actor: Actor, app: App, body: Mapping[str, Any], settings: RegistrationSettings
) -> App:
    """RFC 7592 §2.2: the request replaces the metadata (omitted fields take their defaults)."""
    # "The client MUST include its client_id field in the request, and it MUST be the same as
    # its currently issued client identifier."
    if body.get("client_id") != app.id:
        raise _bad("client_id must be the client's own client_id")
    if body.get("client_secret") is not None:
        _check_secret(ctx, app, body["client_secret"])
    parsed = parse_metadata(ctx, body, settings)
    metadata = parsed.metadata
    if _credential(metadata.token_endpoint_auth_method) != _credential(
        app.token_endpoint_auth_method
    ):
        raise _bad(
            "token_endpoint_auth_method cannot change between none, a client secret and "
            "private_key_jwt; register a new client instead"
        )
    updated = replace(app, updated_at=ctx.clock.now(), **_app_fields(metadata))
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


def _comparable(name: str) -> str:
    # Letters and digits only: "Acme  Console", "Acme\u200bConsole" and "Acme-Console" read
    # as "Acme Console" to a person, so they must compare equal to it too; and letters of
    # other scripts that look the same ("Acmе" with a Cyrillic е) as the letters they look
    # like (UTS #39 skeletons, which tell case apart: taken before and after case folding,
    # so "CIaude" with a capital I is "claude", and so is "CLAUDE").
    shown = confusables.skeleton(unicodedata.normalize("NFKC", name)).casefold()
    return "".join(c for c in confusables.skeleton(shown).casefold() if c.isalnum())


def name_collides(ctx: Context, app: App) -> bool:
    """Whether a client that named itself (dynamically registered, or a metadata document)
    carries the name of an app an operator registered — worth a warning on the consent page.
    Compared case-insensitively after Unicode NFKC normalisation, as confusable skeletons
    (UTS #39), letters and digits only; never true for an operator's own apps."""
    if not (app.dynamically_registered or app.metadata_document):
        return False
    name = _comparable(app.name)
    return any(
        other.id != app.id
        and not other.dynamically_registered
        and not other.metadata_document
        and _comparable(other.name) == name
        for other in ctx.store.list_apps()
    )
