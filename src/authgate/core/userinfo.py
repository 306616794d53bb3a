"""The UserInfo endpoint's rule (OpenID Connect Core 1.0 §5.3, RFC 6750 §3.1).

"The UserInfo Endpoint is an OAuth 2.0 Protected Resource that returns Claims about the
authenticated End-User" (§5.3). Which access tokens it serves: a live token of authgate's that
acts for a person (not a client_credentials token), whose audience is authgate itself (the
issuer's own API, the default audience of a token request without ``resource``: RFC 8707
keeps a token for an MCP server away from every other resource, this one included), and whose
scope holds ``openid``. The claims are those its scope releases (``id_tokens.user_claims``).
"""

from __future__ import annotations

from typing import Any

from authgate.core import id_tokens, scopes, tokens
from authgate.core.context import Context
from authgate.core.errors import InsufficientScopeError, InvalidTokenError


def claims(ctx: Context, access_token: str) -> dict[str, Any]:
    """The claims for the person ``access_token`` acts for; ``invalid_token`` (401) for a
    token that is unknown, expired, revoked, for another audience or for no person (or a
    disabled one), ``insufficient_scope`` (403) without ``openid``."""
    token = tokens.check_access_token(ctx, access_token, audience=ctx.policy.audience)
    if token.user_id is None:
        raise InvalidTokenError("The access token does not act for a person")
    granted = scopes.parse_scope(token.scope)
    if id_tokens.OPENID not in granted:
        raise InsufficientScopeError("The access token was not issued with the openid scope")
    user = ctx.store.get_user(token.user_id)
    if user is None or user.disabled:
        raise InvalidTokenError("The access token does not act for an active person")
    return id_tokens.user_claims(user, granted)
