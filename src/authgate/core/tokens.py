"""Minting and checking the tokens authgate hands out (RFC 6749 §5.1, RFC 6750).

Access tokens are RFC 9068 JWTs (the resource's default) or opaque ``agat_…`` strings; either
way a row keyed by the prefix / ``jti`` backs introspection and revocation.
Refresh tokens are opaque ``agrt_…`` strings, rotated on every use (OAuth 2.1 §4.3.1).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authgate.core import keys
from authgate.core.context import Context
from authgate.core.errors import InvalidTokenError
from authgate.core.models import AccessToken, Grant, RefreshToken, Resource
from authgate.crypto import ids, jose, secrets

ACCESS_KIND = "at"
REFRESH_KIND = "rt"
JTI_LEN = 22


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """The successful token response body (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    token_type: str = "Bearer"
    # OIDC Core §3.1.3.3: with the ``openid`` scope (core/id_tokens.py).
    id_token: str | None = None
    # A refresh that handed the family's current refresh token out again (a retry, or another
    # process of the same client: core/grants/refresh_token.py); not part of the body.
    continued: bool = False

    def as_dict(self) -> dict[str, str | int]:
        body: dict[str, str | int] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        # RFC 6749 §5.1 / §3.3: an empty scope is not a scope; send it whenever there is one,
        # so MCP clients see exactly what they hold.
        if self.scope:
            body["scope"] = self.scope
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


@dataclass(frozen=True, slots=True)
class Minted:
    access: AccessToken
    access_value: str
    refresh: RefreshToken | None
    refresh_value: str | None

    def response(
        self, now: datetime, *, continued: bool = False, id_token: str | None = None
    ) -> TokenResponse:
        return TokenResponse(
            access_token=self.access_value,
            expires_in=max(0, int((self.access.expires_at - now).total_seconds())),
            scope=self.access.scope,
            refresh_token=self.refresh_value,
            continued=continued,
            id_token=id_token,
        )


def access_token_ttl(ctx: Context, resource: Resource) -> timedelta:
    if resource.access_token_ttl:
        return timedelta(seconds=resource.access_token_ttl)
    return ctx.policy.access_token_ttl


def _access_value(
    ctx: Context, grant: Grant, resource: Resource, scope: str, now: datetime, expires: datetime
) -> tuple[str, str]:
    """(prefix, value): an opaque `agat_` token, or an RFC 9068 JWT whose `jti` is the prefix."""
    if resource.token_format == "opaque":
        opaque = secrets.generate(ACCESS_KIND)
        return opaque.prefix, opaque.value
    jti = secrets.random_string(JTI_LEN)
    claims: dict[str, Any] = {
        "iss": ctx.policy.issuer,
        "sub": grant.user_id or grant.app_id,
        "aud": resource.identifier,
        "client_id": grant.app_id,
        "jti": jti,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }
    if scope:
        claims["scope"] = scope
    if grant.auth_time is not None:
        claims["auth_time"] = int(grant.auth_time.timestamp())
    _, key = keys.signer(ctx)
    return jti, jose.sign(key, claims)


def mint(
    ctx: Context,
    grant: Grant,
    resource: Resource,
    *,
    secret_id: str | None,
    with_refresh: bool,
    scope: str,
    family: bool = True,
    predecessor: str | None = None,
) -> Minted:
    """Create (unsaved) access and refresh tokens for ``grant`` with ``scope``. ``family``:
    the tokens belong to the stored grant ``grant`` (else the access token belongs to no grant,
    as a client_credentials token; there is then no refresh token). ``predecessor``: the
    refresh token this one replaces, from which it is derived (``successor``)."""
    assert family or not with_refresh
    now = ctx.clock.now()
    expires = now + access_token_ttl(ctx, resource)
    prefix, value = _access_value(ctx, grant, resource, scope, now, expires)
    access = AccessToken(
        id=ids.time_ordered_id(),
        prefix=prefix,
        token_hash=secrets.sha256_hex(value),
        grant_id=grant.id if family else None,
        app_id=grant.app_id,
        user_id=grant.user_id,
        secret_id=secret_id,
        audience=resource.identifier,
        scope=scope,
        created_at=now,
        expires_at=expires,
    )
    if not with_refresh:
        return Minted(access, value, None, None)
    rt = successor(ctx, predecessor) if predecessor else secrets.generate(REFRESH_KIND)
    refresh = RefreshToken(
        id=ids.time_ordered_id(),
        prefix=rt.prefix,
        token_hash=rt.hash,
        grant_id=grant.id,
        app_id=grant.app_id,
        user_id=grant.user_id,
        secret_id=secret_id,
        audience=resource.identifier,
        scope=scope,
        created_at=now,
        expires_at=now + ctx.policy.refresh_token_ttl,
    )
    return Minted(access, value, refresh, rt.value)


def successor(ctx: Context, predecessor: str) -> secrets.PrefixedSecret:
    """The refresh token that rotating ``predecessor`` issues: derived from it under the
    server's key, so the server can hand a family's current token to a client that proves it
    held an earlier one of the chain, while only hashes are stored."""
    return secrets.derive(REFRESH_KIND, _successor_key(ctx), predecessor)


def _successor_key(ctx: Context) -> bytes:
    return hmac.new(ctx.secret_key, b"authgate refresh-token successor", hashlib.sha256).digest()


def find_access_token(ctx: Context, value: str) -> AccessToken | None:
    """The stored row of an access token we issued (opaque or JWT), whatever its state.

    The row is found by prefix or ``jti`` and proven by the SHA-256 of the whole value, so a
    JWT needs no signature check here: only a token we stored can match."""
    parsed = secrets.parse(value, ACCESS_KIND)
    if parsed is not None:
        prefix = parsed.prefix
    else:
        claims = jose.unverified_claims(value)
        jti = claims.get("jti") if claims else None
        if not isinstance(jti, str) or len(jti) != JTI_LEN:
            return None
        prefix = jti
    token = ctx.store.get_access_token_by_prefix(prefix)
    if token is None or not secrets.constant_time_equal(
        token.token_hash, secrets.sha256_hex(value)
    ):
        return None
    return token


def find_refresh_token(ctx: Context, value: str) -> RefreshToken | None:
    """The stored row of a refresh token we issued, whatever its state."""
    parsed = secrets.parse(value, REFRESH_KIND)
    token = ctx.store.get_refresh_token_by_prefix(parsed.prefix) if parsed else None
    if parsed is None or token is None:
        return None
    return token if secrets.constant_time_equal(token.token_hash, parsed.hash) else None


def find_refresh_token_and_grant(
    ctx: Context, value: str
) -> tuple[RefreshToken, Grant | None, bool] | None:
    """``find_refresh_token``, the token's grant (None if it is gone) and whether the grant's
    user is disabled, read in one go."""
    parsed = secrets.parse(value, REFRESH_KIND)
    if parsed is None:
        return None
    token, grant, user_disabled = ctx.store.get_refresh_token_and_grant(parsed.prefix)
    if token is None or not secrets.constant_time_equal(token.token_hash, parsed.hash):
        return None
    return token, grant, user_disabled


def is_live(ctx: Context, token: AccessToken) -> bool:
    return token.revoked_at is None and token.expires_at > ctx.clock.now()


#: The operator-only ``debug`` of a token that is not live (read by core/flow_reasons.py).
ACCESS_TOKEN_EXPIRED = "access token expired"
ACCESS_TOKEN_REVOKED = "access token revoked"


def check_access_token(ctx: Context, value: str, *, audience: str) -> AccessToken:
    """Validate a presented access token for ``audience`` (RFC 6750 §3.1 errors)."""
    token = find_access_token(ctx, value)
    if token is None:
        raise InvalidTokenError("The access token is invalid")
    if not is_live(ctx, token):
        why = ACCESS_TOKEN_REVOKED if token.revoked_at is not None else ACCESS_TOKEN_EXPIRED
        raise InvalidTokenError("The access token is expired or revoked", debug=why)
    if token.audience != audience:
        raise InvalidTokenError("The access token was not issued for this audience")
    return token
