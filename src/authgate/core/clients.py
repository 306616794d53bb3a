"""OAuth clients ("apps") and their secrets: one behaviour for the admin API, the CLI and the
pages, with one audit trail.

A new secret is returned in full exactly once; afterwards only its last 6 characters are shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from authgate.core import app_events, audit, client_metadata, redirect_uris, scopes
from authgate.core.client_credentials import SECRET_KIND
from authgate.core.context import Actor, Context
from authgate.core.errors import NotFound, OAuthError, ValidationFailed
from authgate.core.models import App, AppSecret, AuthMethod, ClientType, GrantType
from authgate.crypto import secrets

DEFAULT_GRANTS: tuple[GrantType, ...] = ("authorization_code", "refresh_token")
SUPPORTED_GRANTS = frozenset({"authorization_code", "refresh_token", "client_credentials"})
AUTH_METHODS = frozenset({"client_secret_basic", "client_secret_post", "none"})
MAX_NAME = 64
MAX_ICON = 2048
# UUIDs for registered clients; https URLs (up to 2048 characters) for metadata documents.
MAX_CLIENT_ID = 2048


@dataclass(frozen=True, slots=True)
class AppFields:
    """What an operator may set on an app; None means "keep" on update, default on create."""

    name: str | None = None
    icon: str | None = None
    redirect_uris: Sequence[str] | None = None
    client_type: ClientType | None = None
    require_pkce: bool | None = None
    token_endpoint_auth_method: AuthMethod | None = None
    grant_types: Sequence[str] | None = None
    scope: str | None = None
    first_party: bool | None = None
    # Whether authgate's own administrative scope may be granted to the app (admin_scope.py).
    admin_access: bool | None = None


DEFAULTS = AppFields(
    name="",
    icon="",
    redirect_uris=(),
    client_type="confidential",
    require_pkce=True,
    grant_types=DEFAULT_GRANTS,
    first_party=False,
    admin_access=False,
)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {field}: {message}", validations={field: message})


def _check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= MAX_NAME or any(ord(c) < 0x20 for c in name):
        raise _invalid("name", f"1 to {MAX_NAME} printable characters")
    return name


def _check_icon(icon: str | None) -> str:
    icon = (icon or "").strip()
    if not icon:
        return ""
    parts = urlsplit(icon)
    if len(icon) > MAX_ICON or parts.scheme not in ("https", "http") or not parts.netloc:
        raise _invalid("icon", "an http(s) URL of at most 2048 characters")
    return icon


def _check_grants(grants: Sequence[str]) -> tuple[GrantType, ...]:
    if not grants or any(g not in SUPPORTED_GRANTS for g in grants):
        raise _invalid("grant_types", f"a non-empty subset of {sorted(SUPPORTED_GRANTS)}")
    return tuple(dict.fromkeys(grants))  # type: ignore[arg-type]


def _check_scope(scope: str | None) -> str | None:
    if scope is None:
        return None
    try:
        return scopes.format_scope(scopes.parse_scope(scope.strip())) or None
    except OAuthError as exc:
        raise _invalid("scope", exc.description) from exc


def _merged(fields: AppFields, base: App | None) -> dict[str, Any]:
    """Every field of the app: the request's value, else the stored one, else the default."""
    values: dict[str, Any] = {}
    for name in AppFields.__dataclass_fields__:
        value = getattr(fields, name)
        if value is None:
            value = getattr(base, name) if base is not None else getattr(DEFAULTS, name)
        values[name] = value
    return values


def _validated(fields: AppFields, base: App | None) -> dict[str, Any]:
    values = _merged(fields, base)
    client_type = values["client_type"]
    public = client_type == "public"
    if client_type not in ("confidential", "public"):
        raise _invalid("client_type", "confidential or public")
    if base is not None and client_type != base.client_type:
        raise _invalid("client_type", "cannot change once the app exists")
    grants = _check_grants(list(values["grant_types"]))
    if public and "client_credentials" in grants:
        raise _invalid("grant_types", "client_credentials is only for confidential clients")
    try:
        # A client that never sends a user anywhere (client_credentials only) needs no URI.
        uris = (
            redirect_uris.validate_redirect_uris(list(values["redirect_uris"]), public=public)
            if "authorization_code" in grants or values["redirect_uris"]
            else ()
        )
    except OAuthError as exc:
        raise _invalid("redirect_uris", exc.description) from exc
    method = values["token_endpoint_auth_method"]
    # private_key_jwt comes with the keys a client registered itself; an operator cannot
    # set it, but editing such a client (its name, its scope) keeps it.
    kept = base is not None and method == base.token_endpoint_auth_method == "private_key_jwt"
    if method is not None and method not in AUTH_METHODS and not kept:
        raise _invalid("token_endpoint_auth_method", f"one of {sorted(AUTH_METHODS)}")
    if public and method not in (None, "none"):
        raise _invalid("token_endpoint_auth_method", "a public client authenticates with none")
    if not public and method == "none":
        raise _invalid("token_endpoint_auth_method", "a confidential client needs a secret")
    if public and not values["require_pkce"]:
        raise _invalid("require_pkce", "public clients always use PKCE")
    admin_access = bool(values["admin_access"])
    if (
        admin_access
        and base is not None
        and (base.dynamically_registered or base.metadata_document)
    ):
        # DESIGN.md §7: authgate's own admin scopes "never for self-registered or document
        # clients": they chose their own name and redirect URIs.
        raise _invalid("admin_access", "only for apps an operator created")
    return values | {
        "name": _check_name(values["name"]),
        "icon": _check_icon(values["icon"]),
        "redirect_uris": uris,
        "require_pkce": public or bool(values["require_pkce"]),
        "token_endpoint_auth_method": "none" if public else method,
        "grant_types": grants,
        "scope": _check_scope(values["scope"]),
        "first_party": bool(values["first_party"]),
        "admin_access": admin_access,
    }


def create_app(ctx: Context, actor: Actor, fields: AppFields) -> App:
    now = ctx.clock.now()
    values = _validated(fields, None)
    app = App(
        id=str(uuid.uuid4()),
        dynamically_registered=False,
        created_at=now,
        updated_at=now,
        **values,
    )
    ctx.store.create_app(app)
    audit.record(
        ctx, actor, "app.created", target_type="app", target_id=app.id, **app_events.fields(app)
    )
    return app


def update_app(ctx: Context, actor: Actor, app_id: str, fields: AppFields) -> App:
    app = get_app(ctx, app_id)
    updated = replace(app, updated_at=ctx.clock.now(), **_validated(fields, app))
    ctx.store.update_app(updated)
    audit.record(
        ctx, actor, "app.updated", target_type="app", target_id=app.id, **app_events.fields(updated)
    )
    return updated


def get_app(ctx: Context, app_id: str) -> App:
    app = ctx.store.get_app(app_id) if len(app_id) <= MAX_CLIENT_ID else None
    if app is None:
        raise NotFound("No such app")
    return app


def find_client(ctx: Context, client_id: str, actor: Actor | None = None) -> App | None:
    """The client a protocol request names: a Client ID Metadata Document client for an https
    URL (fetched and validated, under the operator's controls; ``invalid_client`` if that
    fails), else a registered app. ``actor``: who asks (the limits on new documents)."""
    return find_client_and_secret(ctx, client_id, None, actor)[0]


def find_client_and_secret(
    ctx: Context, client_id: str, secret_prefix: str | None, actor: Actor | None = None
) -> tuple[App | None, AppSecret | None]:
    """``find_client``, and the stored secret with this prefix (whichever app it belongs to;
    the caller checks) read with it in one go when a prefix is given."""
    if ctx.fetcher is not None and client_metadata.is_document_url(client_id):
        return client_metadata.load_document_client(ctx, client_id, actor), None
    if len(client_id) > MAX_CLIENT_ID:
        return None, None
    if secret_prefix is None:
        app, secret = ctx.store.get_app(client_id), None
    else:
        app, secret = ctx.store.get_app_and_secret(client_id, secret_prefix)
    # With documents switched off, the stored copy of one is no longer a client.
    return (None, None) if app is not None and app.metadata_document else (app, secret)


def delete_app(ctx: Context, actor: Actor, app_id: str) -> None:
    app = get_app(ctx, app_id)
    ctx.store.delete_app(app.id)
    audit.record(ctx, actor, "app.deleted", target_type="app", target_id=app.id, name=app.name)


def create_secret(ctx: Context, actor: Actor, app_id: str) -> tuple[AppSecret, str]:
    app = get_app(ctx, app_id)
    if app.is_public:
        raise ValidationFailed("Public clients have no secrets")
    if app.token_endpoint_auth_method == "private_key_jwt":
        raise ValidationFailed("A private_key_jwt client authenticates with its keys, not a secret")
    value = secrets.generate(SECRET_KIND)
    secret = AppSecret(
        id=str(uuid.uuid4()),
        app_id=app.id,
        prefix=value.prefix,
        secret_hash=value.hash,
        display_secret=value.last6,
        created_at=ctx.clock.now(),
    )
    ctx.store.create_secret(secret)
    audit.record(
        ctx,
        actor,
        "secret.created",
        target_type="secret",
        target_id=secret.id,
        app_id=app.id,
        prefix=secret.prefix,
    )
    return secret, value.value


def list_secrets(ctx: Context, app_id: str) -> Sequence[AppSecret]:
    return ctx.store.list_secrets(get_app(ctx, app_id).id)


def delete_secret(ctx: Context, actor: Actor, app_id: str, secret_id: str) -> None:
    app = get_app(ctx, app_id)
    if secret_id not in {s.id for s in ctx.store.list_secrets(app.id)}:
        raise NotFound("No such secret for this app")
    ctx.store.delete_secret(secret_id, ctx.clock.now())
    audit.record(
        ctx, actor, "secret.deleted", target_type="secret", target_id=secret_id, app_id=app.id
    )
