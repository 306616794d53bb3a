"""Token introspection (RFC 7662).

Only an authenticated confidential client may ask, and it learns about a token only if the
token was issued to it or for a resource that lists it as an introspector; otherwise the answer
is ``{"active": false}``, exactly as for an unknown token ("the authorization server MAY respond
differently to different protected resources making the same request", §2.2).
"""

from __future__ import annotations

from typing import Any

from authgate.core import client_auth, client_credentials, tokens
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidClientError
from authgate.core.models import AccessToken, RefreshToken
from authgate.core.params import Params

INACTIVE: dict[str, Any] = {"active": False}


def _may_see(ctx: Context, client_id: str, app_id: str, audience: str) -> bool:
    if app_id == client_id:
        return True
    resource = ctx.store.get_resource_by_identifier(audience)
    return resource is not None and client_id in resource.introspectors


def _subject_fields(ctx: Context, user_id: str | None, app_id: str) -> dict[str, Any] | None:
    """``sub`` (and ``username``); None when the token acts for a user who is disabled or
    gone: their grants were ended (core/accounts.py), and should a token have survived that,
    the user row still says no."""
    if user_id is None:
        return {"sub": app_id}
    user = ctx.store.get_user(user_id)
    if user is None or user.disabled:
        return None
    return {"sub": user_id, "username": user.username}


def _common(ctx: Context, token: AccessToken | RefreshToken) -> dict[str, Any]:
    subject = _subject_fields(ctx, token.user_id, token.app_id)
    if subject is None:
        return INACTIVE
    body: dict[str, Any] = {
        "active": True,
        "client_id": token.app_id,
        "aud": token.audience,
        "iss": ctx.policy.issuer,
        "iat": int(token.created_at.timestamp()),
        "exp": int(token.expires_at.timestamp()),
        **subject,
    }
    if token.scope:
        body["scope"] = token.scope
    return body


def _refresh_live(ctx: Context, token: RefreshToken) -> bool:
    if token.revoked_at is not None or token.consumed_at is not None:
        return False
    grant = ctx.store.get_grant(token.grant_id)
    return grant is not None and grant.revoked_at is None and token.expires_at > ctx.clock.now()


def introspect(
    ctx: Context, params: Params, authorization: str | None, actor: Actor | None = None
) -> dict[str, Any]:
    """``actor``: who asks, from where (a metadata document not stored yet counts against the
    limits of that source network, and its fetch against that source's share of the pool)."""
    creds = client_credentials.parse_credentials(authorization, params)
    client = client_auth.authenticate(ctx, creds, actor)
    if client.app.is_public:
        raise InvalidClientError("Public clients may not introspect tokens")
    value = params.require("token")
    params.get("token_type_hint")  # a hint only: both kinds are searched (§2.1)
    access = tokens.find_access_token(ctx, value)
    if access is not None:
        if not tokens.is_live(ctx, access) or not _may_see(
            ctx, client.app.id, access.app_id, access.audience
        ):
            return INACTIVE
        body = _common(ctx, access)
        return {**body, "token_type": "Bearer", "jti": access.prefix} if body["active"] else body
    refresh = tokens.find_refresh_token(ctx, value)
    if refresh is None or refresh.app_id != client.app.id or not _refresh_live(ctx, refresh):
        return INACTIVE
    body = _common(ctx, refresh)
    # Named explicitly, so that a resource server never mistakes it for a bearer token.
    return {**body, "token_type": "refresh_token"} if body["active"] else body
