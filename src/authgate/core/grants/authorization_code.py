"""The authorization_code grant (RFC 6749 §4.1.3, RFC 7636 §4.5–4.6, RFC 8707 §2.2).

"The authorization server MUST ... ensure that the authorization code was issued to the
authenticated confidential client ... ensure that the "redirect_uri" parameter is present if
the "redirect_uri" parameter was included in the initial authorization request ... and if
included ensure that their values are identical." Validation happens before the code is
consumed, so a failed request never burns it; the consumption itself is atomic.
"""

from __future__ import annotations

from authgate.core import audit, flows, id_tokens, pkce, resources
from authgate.core.client_auth import AuthenticatedClient
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidGrantError, InvalidTargetError
from authgate.core.models import AuthorizationCode, Grant
from authgate.core.params import Params
from authgate.core.tokens import TokenResponse, mint
from authgate.crypto import ids, secrets

CODE_KIND = "ac"
INVALID_CODE = "The authorization code is invalid or expired"


class AuthorizationCodeGrant:
    grant_type = "authorization_code"

    def handle(
        self, ctx: Context, client: AuthenticatedClient, params: Params, actor: Actor
    ) -> TokenResponse:
        code = _find_code(ctx, params.require("code"))
        flows.note(flow_id=code.flow_id, user_id=code.user_id, resource=code.resource)
        if code.consumed_at is not None:
            _revoke_replayed(ctx, code, actor)
            raise InvalidGrantError(INVALID_CODE, debug="authorization code replayed")
        if code.app_id != client.app.id:
            raise InvalidGrantError(INVALID_CODE, debug="code was issued to another client")
        now = ctx.clock.now()
        if code.expires_at <= now:
            raise InvalidGrantError(INVALID_CODE, debug="code expired")
        _check_redirect_uri(code, params.get("redirect_uri"))
        pkce.check_verifier(params.get("code_verifier"), code.code_challenge)
        _check_resource(code, params.get("resource"))
        # A `scope` sent here is ignored: the token carries what was consented (DESIGN.md §7).
        grant = Grant(
            id=ids.time_ordered_id(),
            app_id=code.app_id,
            user_id=code.user_id,
            resource=code.resource,
            scope=code.scope,
            auth_time=code.auth_time,
            created_at=now,
            flow_id=flows.current_flow_id(),
            amr=code.amr,
            idp=code.idp,
        )
        secret_id = client.secret.id if client.secret else None
        with_refresh = "refresh_token" in client.app.grant_types
        resource = resources.lookup(ctx, code.resource)
        minted = mint(
            ctx, grant, resource, secret_id=secret_id, with_refresh=with_refresh, scope=grant.scope
        )
        # Signed before the code is consumed: nothing can fail between redemption and response.
        id_token = id_tokens.for_grant(
            ctx, grant, minted.access_value, grant.scope, nonce=code.nonce
        )
        if not ctx.store.redeem_code(code.id, now, grant, minted.access, minted.refresh):
            # Lost a race with another redemption of the same code: that is a replay too.
            _revoke_replayed(ctx, ctx.store.get_code_by_prefix(code.prefix) or code, actor)
            raise InvalidGrantError(INVALID_CODE, debug="authorization code redeemed concurrently")
        return minted.response(now, id_token=id_token)


def _find_code(ctx: Context, value: str) -> AuthorizationCode:
    parsed = secrets.parse(value, CODE_KIND)
    code = ctx.store.get_code_by_prefix(parsed.prefix) if parsed else None
    if parsed is None or code is None:
        raise InvalidGrantError(INVALID_CODE, debug="unknown or malformed code")
    if not secrets.constant_time_equal(code.code_hash, parsed.hash):
        raise InvalidGrantError(INVALID_CODE, debug="code hash mismatch")
    return code


def _revoke_replayed(ctx: Context, code: AuthorizationCode, actor: Actor) -> None:
    """ "If an authorization code is used more than once, the authorization server MUST deny the
    request and SHOULD revoke (when possible) all tokens previously issued based on that
    authorization code" (RFC 6749 §4.1.2)."""
    revoked = code.grant_id is not None and ctx.store.revoke_grant(code.grant_id, ctx.clock.now())
    audit.record(
        ctx,
        actor,
        "authorization_code.replayed",
        target_type="grant",
        target_id=code.grant_id,
        app_id=code.app_id,
        user_id=code.user_id,
        code_prefix=code.prefix,
        tokens_revoked=revoked,
    )


def _check_redirect_uri(code: AuthorizationCode, sent: str | None) -> None:
    if sent is None:
        if code.redirect_uri_provided:
            raise InvalidGrantError(
                "redirect_uri is required: it was sent in the authorization request"
            )
        return
    if sent != code.redirect_uri:
        raise InvalidGrantError("redirect_uri does not match the authorization request")


def _check_resource(code: AuthorizationCode, sent: str | None) -> None:
    # Omitting resource here is fine: the audience is the code's (DESIGN.md §7).
    if sent is not None and not resources.same_resource(
        resources.canonical_resource(sent), code.resource
    ):
        raise InvalidTargetError("The resource parameter is invalid", debug="resource mismatch")
