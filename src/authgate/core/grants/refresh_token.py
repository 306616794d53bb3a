"""The refresh_token grant with rotation and reuse detection (RFC 6749 §6, OAuth 2.1 §4.3.1).

"The authorization server MUST ensure that refresh tokens cannot be used more than once ...
if a refresh token is compromised and subsequently used by both the attacker and the legitimate
client, one of them will present an invalidated refresh token, which will inform the
authorization server of the breach." What a used token presented again means (a retry or a
sibling process, or a theft) is decided in ``refresh_reuse.py``.
"""

from __future__ import annotations

from authgate.core import admin_scope, flows, id_tokens, resources, scopes
from authgate.core.client_auth import AuthenticatedClient
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidGrantError, InvalidTargetError
from authgate.core.grants import refresh_reuse
from authgate.core.grants.refresh_reuse import INVALID_REFRESH
from authgate.core.models import Grant, RefreshToken
from authgate.core.params import Params
from authgate.core.tokens import TokenResponse, find_refresh_token_and_grant, mint


class RefreshTokenGrant:
    grant_type = "refresh_token"

    def handle(
        self, ctx: Context, client: AuthenticatedClient, params: Params, actor: Actor
    ) -> TokenResponse:
        presented = params.require("refresh_token")
        token, grant, user_disabled = _find_refresh_token(ctx, presented)
        flows.note(
            flow_id=grant.flow_id if grant else None,
            user_id=token.user_id,
            resource=token.audience,
        )
        if token.app_id != client.app.id:
            refresh_reuse.refuse_other_client(ctx, token, grant, actor)
        now = ctx.clock.now()
        if token.revoked_at is not None or grant is None or grant.revoked_at is not None:
            raise InvalidGrantError(INVALID_REFRESH, debug="refresh token revoked")
        # Disabling a user revokes their grants (core/accounts.py); should one survive (a
        # revocation that failed half way), the user row still says no.
        if user_disabled:
            raise InvalidGrantError(INVALID_REFRESH, debug="the user is disabled")
        if token.expires_at <= now:
            raise InvalidGrantError(INVALID_REFRESH, debug="refresh token expired")
        resource = params.get("resource")
        # A refresh may narrow the audience, never change it; with one audience, that is "same".
        if resource is not None and not resources.same_resource(
            resources.canonical_resource(resource), token.audience
        ):
            raise InvalidTargetError("The resource parameter is invalid")
        requested = params.get("scope")
        target = resources.lookup(ctx, token.audience)
        scope = scopes.narrow(requested, token.scope, resources.scope_names(target))
        # A grant that holds the admin scope of an app that may not (any more) have it.
        scope = admin_scope.withhold(ctx, client.app, token.audience, scope, requested=requested)
        if token.consumed_at is None:
            secret_id = client.secret.id if client.secret else token.secret_id
            minted = mint(
                ctx,
                grant,
                target,
                secret_id=secret_id,
                with_refresh=True,
                scope=scope,
                predecessor=presented,
            )
            assert minted.refresh is not None
            id_token = id_tokens.for_grant(ctx, grant, minted.access_value, scope)
            if ctx.store.rotate_refresh_token(token.id, now, minted.access, minted.refresh):
                return minted.response(now, id_token=id_token)
        # Already used (or lost a race to another request rotating it): reuse handling.
        current = ctx.store.get_refresh_token_by_prefix(token.prefix) or token
        return refresh_reuse.continue_or_refuse(
            ctx, client, current, presented, grant, params, actor
        )


def _find_refresh_token(ctx: Context, value: str) -> tuple[RefreshToken, Grant | None, bool]:
    found = find_refresh_token_and_grant(ctx, value)
    if found is None:
        raise InvalidGrantError(INVALID_REFRESH, debug="unknown or malformed refresh token")
    return found
