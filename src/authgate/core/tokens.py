"""Minting and checking the tokens authgate hands out (RFC 6749 §5.1, RFC 6750).

Access tokens are opaque ``agat_…`` strings in this version; their prefix is the ``jti``.
Refresh tokens are opaque ``agrt_…`` strings, rotated on every use (OAuth 2.1 §4.3.1).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from authgate.core.context import Context
from authgate.core.errors import InvalidTokenError
from authgate.core.models import AccessToken, Grant, RefreshToken
from authgate.crypto import secrets

ACCESS_KIND = "at"
REFRESH_KIND = "rt"


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """The successful token response body (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - RFC 6750 token type

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
        return body


@dataclass(frozen=True, slots=True)
class Minted:
    access: AccessToken
    access_value: str
    refresh: RefreshToken | None
    refresh_value: str | None

    def response(self, now: datetime) -> TokenResponse:
        return TokenResponse(
            access_token=self.access_value,
            expires_in=max(0, int((self.access.expires_at - now).total_seconds())),
            scope=self.access.scope,
            refresh_token=self.refresh_value,
        )


def mint(
    ctx: Context, grant: Grant, *, secret_id: str | None, with_refresh: bool, scope: str
) -> Minted:
    """Create (unsaved) access and refresh tokens for ``grant`` with ``scope``."""
    now = ctx.clock.now()
    at = secrets.generate(ACCESS_KIND)
    access = AccessToken(
        id=str(uuid.uuid4()),
        prefix=at.prefix,
        token_hash=at.hash,
        grant_id=grant.id,
        app_id=grant.app_id,
        user_id=grant.user_id,
        secret_id=secret_id,
        audience=grant.resource,
        scope=scope,
        created_at=now,
        expires_at=now + ctx.policy.access_token_ttl,
    )
    if not with_refresh:
        return Minted(access, at.value, None, None)
    rt = secrets.generate(REFRESH_KIND)
    refresh = RefreshToken(
        id=str(uuid.uuid4()),
        prefix=rt.prefix,
        token_hash=rt.hash,
        grant_id=grant.id,
        app_id=grant.app_id,
        user_id=grant.user_id,
        secret_id=secret_id,
        audience=grant.resource,
        scope=scope,
        created_at=now,
        expires_at=now + ctx.policy.refresh_token_ttl,
    )
    return Minted(access, at.value, refresh, rt.value)


def check_access_token(ctx: Context, value: str, *, audience: str) -> AccessToken:
    """Validate a presented access token for ``audience`` (RFC 6750 §3.1 errors)."""
    parsed = secrets.parse(value, ACCESS_KIND)
    token = ctx.store.get_access_token_by_prefix(parsed.prefix) if parsed else None
    if parsed is None or token is None:
        raise InvalidTokenError("The access token is invalid")
    if not secrets.constant_time_equal(token.token_hash, parsed.hash):
        raise InvalidTokenError("The access token is invalid")
    if token.revoked_at is not None or token.expires_at <= ctx.clock.now():
        raise InvalidTokenError("The access token is expired or revoked")
    if token.audience != audience:
        raise InvalidTokenError("The access token was not issued for this audience")
    return token
