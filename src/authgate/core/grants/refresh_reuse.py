"""A used refresh token presented again: the same installation continuing, or a theft
(OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).

A client that lost a refresh response retries with the token it sent; several processes of one
CLI sharing a credential store each present the token they last read, up to minutes after
another process rotated it. Within ``policy.refresh_reuse_grace`` of the rotation, a presenter
that is the same client (and, for a confidential client, authenticates with the secret the
chain was last rotated with) gets the family's *current* refresh token again, with a fresh
access token: the chain never forks into two live branches. The current token's value is not
stored; it is re-derived from the presented one (``tokens.successor``) step by step, and each
step proves itself against a stored hash.

Anything that can only be theft revokes the whole family: the window has passed, the clock
went back past the rotation, another client, or another secret. When the chain cannot be
followed (tokens rotated before successors were derived, a changed server key) the request is
refused and the family left alone. Each refusal is audited with its reason and counted
(web/metrics.py reads the reason from the error's ``debug``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, NoReturn

from authgate.core import admin_scope, audit, id_tokens, resources, scopes
from authgate.core.client_auth import AuthenticatedClient
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidGrantError
from authgate.core.models import Grant, RefreshToken
from authgate.core.params import Params
from authgate.core.tokens import Minted, TokenResponse, find_refresh_token, mint, successor

INVALID_REFRESH = "The refresh token is invalid or expired"

RefusalReason = Literal[
    "window_passed", "clock_went_back", "other_client", "other_secret", "chain_unknown"
]
REFUSAL_REASONS: tuple[RefusalReason, ...] = (
    "window_passed",
    "clock_went_back",
    "other_client",
    "other_secret",
    "chain_unknown",
)
#: The refusals that revoke the family: those a legitimate client cannot cause.
REVOKING: frozenset[RefusalReason] = frozenset(
    {"window_passed", "clock_went_back", "other_client", "other_secret"}
)
#: The start of an ``InvalidGrantError.debug`` that is a reuse refusal; the reason follows.
REFUSED_DEBUG = "refresh token reuse refused: "
#: How far apart two nodes' clocks (or a request's start and a racing rotation) may be before a
#: rotation "in the future" means the clock went back.
CLOCK_SKEW = timedelta(seconds=5)
#: How many rotations a presented token may lag behind the chain's head and still continue it.
MAX_STEPS = 32


def refusal_reason(debug: str | None) -> RefusalReason | None:
    """The reason of a reuse refusal, from the ``debug`` of the error it raised."""
    if debug is None or not debug.startswith(REFUSED_DEBUG):
        return None
    reason = debug.removeprefix(REFUSED_DEBUG)
    return next((r for r in REFUSAL_REASONS if r == reason), None)


def refuse_other_client(
    ctx: Context, token: RefreshToken, grant: Grant | None, actor: Actor
) -> NoReturn:
    """Another client presents this token. Once the chain moved on, only a thief can hold a
    used token of a family that is not theirs: the family ends."""
    if token.consumed_at is not None and grant is not None and grant.revoked_at is None:
        _refuse(ctx, grant, token, actor, "other_client")
    raise InvalidGrantError(INVALID_REFRESH, debug="refresh token of another client")


def continue_or_refuse(
    ctx: Context,
    client: AuthenticatedClient,
    token: RefreshToken,
    presented: str,
    grant: Grant,
    params: Params,
    actor: Actor,
) -> TokenResponse:
    """``token`` (the row of ``presented``) was used already: hand out the family's current
    refresh token and a new access token, or refuse."""
    if token.revoked_at is not None or token.consumed_at is None:
        raise InvalidGrantError(INVALID_REFRESH, debug="refresh token revoked")
    # A fresh reading: a rotation that raced this request may be later than its start.
    age = ctx.clock.now() - token.consumed_at
    grace = ctx.policy.refresh_reuse_grace
    if age < -CLOCK_SKEW:
        # How long ago it was used is unknown: treated as the reuse it may be.
        _refuse(ctx, grant, token, actor, "clock_went_back")
    if not grace or age > grace:
        _refuse(ctx, grant, token, actor, "window_passed")
    found = _head(ctx, grant, presented)
    if found is None:
        _refuse(ctx, grant, token, actor, "chain_unknown")
    head, head_value = found
    # "... the presenter is the same client": for a confidential client, the same credential.
    if client.secret is not None and head.secret_id not in (None, client.secret.id):
        _refuse(ctx, grant, token, actor, "other_secret")
    requested = params.get("scope")
    target = resources.lookup(ctx, head.audience)
    scope = scopes.narrow(requested, head.scope, resources.scope_names(target))
    scope = admin_scope.withhold(ctx, client.app, head.audience, scope, requested=requested)
    secret_id = client.secret.id if client.secret else head.secret_id
    minted = mint(ctx, grant, target, secret_id=secret_id, with_refresh=False, scope=scope)
    # Only an access token is added: the family keeps its one live refresh token.
    if not ctx.store.issue_in_family(grant.id, minted.access, None):
        raise InvalidGrantError(INVALID_REFRESH, debug="refresh token revoked")
    audit.record(
        ctx,
        actor,
        "refresh_token.continued",
        target_type="grant",
        target_id=grant.id,
        app_id=grant.app_id,
        user_id=grant.user_id,
        refresh_token_prefix=token.prefix,
        current_prefix=head.prefix,
        seconds_since_rotation=max(0, int(age.total_seconds())),
    )
    now = ctx.clock.now()
    handed = Minted(minted.access, minted.access_value, None, head_value)
    id_token = id_tokens.for_grant(ctx, grant, minted.access_value, scope)
    return handed.response(now, continued=True, id_token=id_token)


def _head(ctx: Context, grant: Grant, presented: str) -> tuple[RefreshToken, str] | None:
    """The family's live refresh token and its value, followed from ``presented`` through the
    successors it derives, each of which must be a stored, used token of this family."""
    value = presented
    for _ in range(MAX_STEPS):
        value = successor(ctx, value).value
        row = find_refresh_token(ctx, value)
        if row is None or row.grant_id != grant.id or row.revoked_at is not None:
            return None
        if row.consumed_at is None:
            return (row, value) if row.expires_at > ctx.clock.now() else None
    return None


def _refuse(
    ctx: Context, grant: Grant, token: RefreshToken, actor: Actor, reason: RefusalReason
) -> NoReturn:
    revoking = reason in REVOKING
    if revoking:
        ctx.store.revoke_grant(grant.id, ctx.clock.now())
    audit.record(
        ctx,
        actor,
        "refresh_token.reused" if revoking else "refresh_token.reuse_refused",
        target_type="grant",
        target_id=grant.id,
        app_id=grant.app_id,
        user_id=grant.user_id,
        refresh_token_prefix=token.prefix,
        reason=reason,
    )
    raise InvalidGrantError(INVALID_REFRESH, debug=REFUSED_DEBUG + reason)
