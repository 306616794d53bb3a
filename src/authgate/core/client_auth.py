"""Client authentication at the token endpoint (RFC 6749 §2.3.1, §3.2.1; OAuth 2.1 §2.4).

Methods: ``client_secret_basic``, ``client_secret_post``, ``private_key_jwt`` (RFC 7523 §2.2,
checked in ``client_assertion``) and ``none`` (public clients, PKCE only). "The client MUST
NOT use more than one authentication method in each request" (RFC 6749 §2.3). The revocation
and introspection endpoints authenticate the same way.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote_plus

from authgate.core import client_assertion
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidClientError, InvalidRequestError
from authgate.core.models import App, AppSecret, AuthMethod
from authgate.core.params import Params
from authgate.crypto import jose, secrets

SECRET_KIND = "cs"
TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str | None
    client_secret: str | None
    method: AuthMethod
    client_assertion: str | None = None


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    app: App
    secret: AppSecret | None
    method: AuthMethod


def accepted_methods(app: App) -> tuple[AuthMethod, ...]:
    """The methods the token endpoint accepts from ``app``, its registered one first.

    An operator's app that pins no method takes either secret method; otherwise the registered
    method is the only one (DESIGN.md §7) -- except that a client that registered itself with
    ``private_key_jwt`` beside another method (OpenID Connect RP Metadata Choices,
    ``token_endpoint_auth_methods_supported``; core/negotiation.py) has its keys stored, and may
    present an assertion or use its registered method, per request. Only such a client stores
    keys without being ``private_key_jwt``."""
    method = app.token_endpoint_auth_method
    if app.is_public:
        methods: tuple[AuthMethod, ...] = ("none",)
    elif method is None:
        methods = ("client_secret_basic", "client_secret_post")
    else:
        methods = (method,)
    self_registered = app.dynamically_registered or app.metadata_document
    has_keys = app.jwks is not None or bool(app.jwks_uri)
    if self_registered and has_keys and "private_key_jwt" not in methods:
        methods += ("private_key_jwt",)
    return methods


def _describe(methods: tuple[AuthMethod, ...]) -> str:
    if methods == ("client_secret_basic", "client_secret_post"):
        return "a client secret"
    return " or ".join(methods)


def _check_client_id(client_id: str | None, *, basic: bool) -> None:
    """No client_id holds a control character (they are UUIDs or https URLs), and PostgreSQL
    cannot even compare text with a NUL: such a name is refused here, before any lookup or rate
    limit reads the database, as the unknown client it is (``invalid_client``, 401)."""
    if client_id is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in client_id):
        raise InvalidClientError(debug="control character in client_id", basic=basic)


def _parse_basic(header: str) -> tuple[str, str]:
    _scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClientError(debug="malformed Basic header", basic=True) from exc
    client_id, sep, client_secret = decoded.partition(":")
    if not sep or not client_id:
        raise InvalidClientError(debug="Basic header without client_id:secret", basic=True)
    # RFC 6749 §2.3.1: both are form-urlencoded before being joined.
    client_id = unquote_plus(client_id)
    _check_client_id(client_id, basic=True)
    return client_id, unquote_plus(client_secret)


def _parse_assertion(params: Params, body_id: str | None) -> ClientCredentials:
    """RFC 7523 §2.2: ``client_assertion_type`` + ``client_assertion``; ``client_id`` optional."""
    assertion_type = params.get("client_assertion_type")
    assertion = params.get("client_assertion")
    if assertion_type != client_assertion.ASSERTION_TYPE:
        raise InvalidClientError(
            f"client_assertion_type must be {client_assertion.ASSERTION_TYPE}",
            debug=f"client_assertion_type {assertion_type!r}",
        )
    if not assertion:
        raise InvalidClientError("client_assertion is missing")
    # The client is named by the assertion's sub (§3 item 2; the signature is checked later
    # against that client's keys, and iss/sub/client_id must all agree).
    claims = jose.unverified_claims(assertion)
    subject = claims.get("sub") if claims is not None else None
    if not isinstance(subject, str) or not subject:
        raise InvalidClientError("The client assertion must name the client in sub")
    if body_id is not None and body_id != subject:
        raise InvalidClientError("client_id does not match the client assertion")
    _check_client_id(subject, basic=False)
    return ClientCredentials(subject, None, "private_key_jwt", assertion)


def parse_credentials(authorization: str | None, params: Params) -> ClientCredentials:
    body_id = params.get("client_id")
    body_secret = params.get("client_secret")
    if params.get("client_assertion") is not None or params.get("client_assertion_type"):
        basic = authorization is not None and authorization.lower().startswith("basic ")
        if basic or body_secret is not None:
            raise InvalidRequestError("Use one client authentication method")
        return _parse_assertion(params, body_id)
    if authorization and authorization.split(" ", 1)[0].lower() == "basic":
        client_id, client_secret = _parse_basic(authorization)
        if body_secret is not None:
            raise InvalidRequestError("Use one client authentication method: Basic or the body")
        if body_id is not None and body_id != client_id:
            raise InvalidRequestError("client_id in the body does not match the Basic header")
        return ClientCredentials(client_id, client_secret or None, "client_secret_basic")
    _check_client_id(body_id, basic=False)
    if body_secret is not None:
        return ClientCredentials(body_id, body_secret, "client_secret_post")
    return ClientCredentials(body_id, None, "none")


def authenticate(
    ctx: Context, creds: ClientCredentials, actor: Actor | None = None
) -> AuthenticatedClient:
    """Authenticate the client or raise ``invalid_client`` (401). ``actor``: who asks, from
    where (a metadata document not stored yet counts against that address's limit)."""
    from authgate.core.clients import find_client_and_secret  # deferred: clients imports us

    basic = creds.method == "client_secret_basic"
    if creds.client_id is None:
        raise InvalidClientError("Client authentication is required", basic=basic)
    presented = secrets.parse(creds.client_secret, SECRET_KIND) if creds.client_secret else None
    # The app and the stored secret the presented one names, in one read.
    app, stored = find_client_and_secret(
        ctx, creds.client_id, presented.prefix if presented else None, actor
    )
    if app is None:
        raise InvalidClientError(debug="unknown client_id", basic=basic)
    accepted = accepted_methods(app)
    # Each request is judged by the method it uses, which must be one the client registered:
    # an assertion from a secret client, or a secret (or nothing) from a client that has only
    # private_key_jwt, is refused.
    if creds.method == "private_key_jwt" or accepted == ("private_key_jwt",):
        if creds.method not in accepted:
            raise InvalidClientError(
                f"This client must authenticate with {_describe(accepted)}", basic=basic
            )
        assert creds.client_assertion is not None
        client_assertion.verify(ctx, app, creds.client_assertion)
        return AuthenticatedClient(app, None, "private_key_jwt")
    if app.is_public:
        if creds.client_secret is not None:
            raise InvalidClientError(debug="public client presented a secret", basic=basic)
        return AuthenticatedClient(app, None, "none")
    if creds.client_secret is None:
        raise InvalidClientError("Client authentication is required", basic=basic)
    # An app that pins a method (or a dynamically registered client) accepts only that one.
    if creds.method not in accepted:
        raise InvalidClientError(
            f"This client must authenticate with {_describe(accepted)}", basic=basic
        )
    secret = _check_secret(app, presented, stored)
    if secret is None:
        raise InvalidClientError(debug="secret mismatch", basic=basic)
    now = ctx.clock.now()
    # last_used_at is informational: refresh it at most once a minute, off the hot path.
    if secret.last_used_at is None or now - secret.last_used_at > TOUCH_INTERVAL:
        ctx.store.touch_secret(secret.id, now)
    return AuthenticatedClient(app, secret, creds.method)


def _check_secret(
    app: App, presented: secrets.PrefixedSecret | None, stored: AppSecret | None
) -> AppSecret | None:
    """The stored secret if the presented one is well formed, is this app's, and matches."""
    if presented is None or stored is None or stored.app_id != app.id:
        return None
    if not secrets.constant_time_equal(stored.secret_hash, presented.hash):
        return None
    return stored
