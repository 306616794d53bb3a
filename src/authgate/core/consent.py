"""Consent decisions and the CSRF token that guards them.

The consent form is a POST carrying a CSRF token bound to the browser session (an HMAC of the
session id under the server key), so a page on another origin cannot make a signed-in user
approve a client. No decision depends on Referer or Origin.
"""

from __future__ import annotations

from authgate.core import audit, authorize
from authgate.core.accounts import SignedIn
from authgate.core.context import Actor, Context
from authgate.crypto import secrets


def csrf_token(ctx: Context, session_id: str) -> str:
    return secrets.hmac_sha256(ctx.secret_key, f"csrf:{session_id}")


def check_csrf(ctx: Context, session_id: str, presented: str | None) -> bool:
    return presented is not None and secrets.constant_time_equal(
        csrf_token(ctx, session_id), presented
    )


def decide(
    ctx: Context,
    actor: Actor,
    request: authorize.AuthorizationRequest,
    signed_in: SignedIn,
    *,
    allow: bool,
) -> str:
    """Record the user's decision and return where the browser goes next."""
    user = signed_in.user
    details = {
        "app_id": request.app.id,
        "scope": request.scope,
        "resource": request.resource.identifier,
        "redirect_uri": request.redirect_uri,
    }
    if not allow:
        audit.record(
            ctx,
            actor,
            "consent.denied",
            target_type="app",
            target_id=request.app.id,
            user_id=user.id,
            **details,
        )
        return authorize.deny_url(ctx, request)
    url = authorize.issue_code(ctx, request, user, signed_in.session.created_at)
    audit.record(
        ctx,
        actor,
        "consent.granted",
        target_type="app",
        target_id=request.app.id,
        user_id=user.id,
        **details,
    )
    return url


def withdraw(ctx: Context, actor: Actor, user_id: str, app_id: str) -> int:
    """A user withdraws every code, grant and token of one app (Coder's DELETE /oauth2/tokens)."""
    count = ctx.store.revoke_user_app(user_id, app_id, ctx.clock.now())
    audit.record(
        ctx,
        actor,
        "grant.revoked",
        target_type="app",
        target_id=app_id,
        user_id=user_id,
        grants=count,
    )
    return count
