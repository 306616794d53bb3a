"""Client authentication at the token endpoint (RFC 6749 §2.3.1, §3.2.1; OAuth 2.1 §2.4).

Methods: ``client_secret_basic``, ``client_secret_post``, ``private_key_jwt`` (RFC 7523 §2.2,
checked in ``client_assertion``) and ``none`` (public clients, PKCE only); the credentials are
read by ``client_credentials``. The revocation and introspection endpoints authenticate the
same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from authgate.core import client_assertion
from authgate.core.client_credentials import SECRET_KIND, ClientCredentials, accepted_methods
from authgate.core.clients import find_client_and_secret
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidClientError
from authgate.core.models import App, AppSecret, AuthMethod
from authgate.crypto import secrets

TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    app: App
    secret: AppSecret | None
    method: AuthMethod


def _describe(methods: tuple[AuthMethod, ...]) -> str:
    if methods == ("client_secret_basic", "client_secret_post"):
        return "a client secret"
    return " or ".join(methods)


def authenticate(
    ctx: Context, creds: ClientCredentials, actor: Actor | None = None
) -> AuthenticatedClient:
    """Authenticate the client or raise ``invalid_client`` (401). ``actor``: who asks, from
    where (a metadata document not stored yet counts against that address's limit)."""
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
