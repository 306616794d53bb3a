"""Token revocation (RFC 7009).

"The authorization server first validates the client credentials (in case of a confidential
client) and then verifies whether the token was issued to the client making the revocation
request. If this validation fails, the request is refused" — silently: "invalid tokens do not
cause an error response" (§2.2), so a caller learns nothing about other clients' tokens.
Revoking a refresh token ends its whole grant family, access tokens included (§2.1).
"""

from __future__ import annotations

from authgate.core import audit, client_auth, client_credentials, flows, tokens
from authgate.core.client_auth import AuthenticatedClient
from authgate.core.context import Actor, Context
from authgate.core.models import AccessToken, AuditEvent, RefreshToken
from authgate.core.params import Params


def revoke(ctx: Context, params: Params, authorization: str | None, actor: Actor) -> None:
    creds = client_credentials.parse_credentials(authorization, params)
    client = client_auth.authenticate(ctx, creds, actor)
    actor = actor.as_client(client.app.id)
    value = params.require("token")
    hint = params.get("token_type_hint")
    finders = [_revoke_refresh, _revoke_access]
    if hint == "access_token":
        finders.reverse()
    for finder in finders:
        if finder(ctx, client, value, actor):
            return


def _refused(ctx: Context, actor: Actor, kind: str, owner: str, token_id: str) -> bool:
    audit.record(
        ctx,
        actor,
        "token.revocation_refused",
        target_type=kind,
        target_id=token_id,
        owner_client_id=owner,
    )
    return True


def _revoked(
    ctx: Context,
    actor: Actor,
    target_type: str,
    target_id: str,
    kind: str,
    token: AccessToken | RefreshToken,
) -> AuditEvent:
    """The ``token.revoked`` event, written with the revocation (only if it revokes)."""
    return audit.new_event(
        ctx,
        actor,
        "token.revoked",
        target_type=target_type,
        target_id=target_id,
        kind=kind,
        prefix=token.prefix,
        user_id=token.user_id,
    )


def _revoke_refresh(ctx: Context, client: AuthenticatedClient, value: str, actor: Actor) -> bool:
    token = tokens.find_refresh_token(ctx, value)
    if token is None:
        return False
    if token.app_id != client.app.id:
        return _refused(ctx, actor, "refresh_token", token.app_id, token.id)
    _note_flow(ctx, client, token)
    event = _revoked(ctx, actor, "grant", token.grant_id, "refresh_token", token)
    ctx.store.revoke_grant(token.grant_id, event.at, event)  # the event only if it revoked
    return True


def _revoke_access(ctx: Context, client: AuthenticatedClient, value: str, actor: Actor) -> bool:
    token = tokens.find_access_token(ctx, value)
    if token is None:
        return False
    if token.app_id != client.app.id:
        return _refused(ctx, actor, "access_token", token.app_id, token.id)
    _note_flow(ctx, client, token)
    event = _revoked(ctx, actor, "access_token", token.id, "access_token", token)
    ctx.store.revoke_access_token(token.id, event.at, event)  # the event only if it revoked
    return True


def _note_flow(
    ctx: Context, client: AuthenticatedClient, token: AccessToken | RefreshToken
) -> None:
    """Tie the revocation (which says how the client authenticated) to the flow of the
    token's grant (only while a flow is recorded). A revocation that revokes nothing records
    nothing: it would be a flow of one step per call."""
    if flows.current() is None or token.grant_id is None:
        return
    grant = ctx.store.get_grant(token.grant_id)
    flows.note(
        flow_id=grant.flow_id if grant else None,
        user_id=token.user_id,
        resource=token.audience,
    )
    flows.authenticated(client.method)
    flows.step("revocation", token_prefix=token.prefix)
