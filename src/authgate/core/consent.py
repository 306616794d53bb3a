"""Consent: the user's decisions, what they remember, and the CSRF token that guards them.

The consent form is a POST carrying a CSRF token bound to the browser session (an HMAC of the
session id under the server key), so a page on another origin cannot make a signed-in user
approve a client. No decision depends on Referer or Origin.

Remembered consent (DESIGN.md §6: "per user × app × scopes × resource and can be withdrawn")
is derived, not stored: the page is skipped only while the user holds a *live grant* of that
app for that resource whose scope covers the request (``store.list_live_grants``: unrevoked,
with a live token). A grant exists only once the app redeemed the code the decision issued, so
a decision counts from then on and for as long as that grant lives. Withdrawing
the app (``withdraw``), a refresh-token reuse or a deleted secret revokes the grant and the
page is shown again.

Who may skip the page:

- *first party*: an app an operator marked ``first_party`` — never a dynamically registered or
  a metadata-document client, whatever its flag says (they chose their own name and URIs);
- *remembered*: any client, including self-registered ones, when the user allowed the same or
  more before; for a client that registered itself the earlier decision must also have sent
  the browser to the same redirect URI (loopback ports aside, RFC 8252 §7.3), since such a
  client can change its URIs (RFC 7592) without an operator seeing it;
- never with ``prompt=consent``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from authgate.core import audit, authorize, redirect_uris, scopes
from authgate.core.accounts import SignedIn
from authgate.core.context import Actor, Context
from authgate.core.models import App, User
from authgate.crypto import secrets

SkipReason = Literal["first_party", "remembered"]
# A prompt=login request must be answered by a sign-in within this long.
FRESH_LOGIN_WINDOW = timedelta(minutes=10)


def csrf_token(ctx: Context, session_id: str) -> str:
    return secrets.hmac_sha256(ctx.secret_key, f"csrf:{session_id}")


def check_csrf(ctx: Context, session_id: str, presented: str | None) -> bool:
    return presented is not None and secrets.constant_time_equal(
        csrf_token(ctx, session_id), presented
    )


# prompt=login: "The Authorization Server SHOULD prompt the End-User for reauthentication"
# (OIDC Core §3.1.2.1). The sign-in page is sent back to the request with a signed moment; the
# request then proceeds only with a session that started after that moment.


def login_marker(ctx: Context) -> str:
    moment = str(int(ctx.clock.now().timestamp() * 1000))
    return f"{moment}.{secrets.hmac_sha256(ctx.secret_key, f'login:{moment}')}"


def fresh_login(ctx: Context, marker: str | None, session_started: datetime) -> bool:
    moment, _, mac = (marker or "").partition(".")
    if not moment.isdigit() or len(moment) > 15:
        return False
    if not secrets.constant_time_equal(secrets.hmac_sha256(ctx.secret_key, f"login:{moment}"), mac):
        return False
    asked = int(moment) / 1000
    age = ctx.clock.now().timestamp() - asked
    return asked < session_started.timestamp() and age <= FRESH_LOGIN_WINDOW.total_seconds()


@dataclass(frozen=True, slots=True)
class ActiveGrant:
    """One live consent of a user: an unrevoked grant the app obtained with it."""

    app_id: str
    resource: str
    scope: tuple[str, ...]
    redirect_uri: str | None
    since: datetime
    last_used_at: datetime | None


#: Remembered consent looks at this many of the newest matching grants: a user who authorized
#: one app thousands of times must not make every later authorization read them all.
REMEMBERED_LOOKBACK = 20


def active_grants(
    ctx: Context,
    user_id: str,
    app_id: str | None = None,
    *,
    resource: str | None = None,
    limit: int | None = None,
) -> list[ActiveGrant]:
    """The user's live grants (of one app and resource, or all), newest first."""
    found = ctx.store.list_live_grants(
        user_id, ctx.clock.now(), app_id=app_id, resource=resource, limit=limit
    )
    return [
        ActiveGrant(
            app_id=live.grant.app_id,
            resource=live.grant.resource,
            scope=scopes.parse_scope(live.grant.scope),
            redirect_uri=live.redirect_uri,
            since=live.grant.created_at,
            last_used_at=live.last_used_at,
        )
        for live in found
    ]


def _self_registered(app: App) -> bool:
    return app.dynamically_registered or app.metadata_document


def may_skip_as_first_party(app: App) -> bool:
    """Operator-marked first-party apps skip consent; self-registered clients never do."""
    return app.first_party and not _self_registered(app)


def _same_redirect(a: str, b: str) -> bool:
    return a == b or redirect_uris.matches(a, b)  # loopback: the port may differ


def remembered(ctx: Context, request: authorize.AuthorizationRequest, user: User) -> bool:
    """Whether the user already allowed this app everything this request asks for."""
    wanted = set(scopes.parse_scope(request.scope))
    candidates = active_grants(
        ctx,
        user.id,
        request.app.id,
        resource=request.resource.identifier,
        limit=REMEMBERED_LOOKBACK,
    )
    for grant in candidates:
        if grant.resource != request.resource.identifier or not wanted <= set(grant.scope):
            continue
        if _self_registered(request.app) and not (
            grant.redirect_uri and _same_redirect(grant.redirect_uri, request.redirect_uri)
        ):
            continue
        return True
    return False


def skip_reason(
    ctx: Context, request: authorize.AuthorizationRequest, user: User
) -> SkipReason | None:
    """Why the consent page need not be shown, or None when it must be."""
    if "consent" in request.prompt:
        return None
    if may_skip_as_first_party(request.app):
        return "first_party"
    if remembered(ctx, request, user):
        return "remembered"
    return None


def _code_prefix(url: str) -> str | None:
    codes = [v for k, v in parse_qsl(urlsplit(url).query) if k == "code"]
    parsed = secrets.parse(codes[-1], authorize.CODE_KIND) if codes else None
    return parsed.prefix if parsed else None


def decide(
    ctx: Context,
    actor: Actor,
    request: authorize.AuthorizationRequest,
    signed_in: SignedIn,
    *,
    allow: bool,
    skipped: SkipReason | None = None,
) -> str:
    """Record the user's decision and return where the browser goes next. ``skipped`` says
    why an approval was given without showing the page."""
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
    url = authorize.issue_code(ctx, request, signed_in.session)
    audit.record(
        ctx,
        actor,
        "consent.granted",
        target_type="app",
        target_id=request.app.id,
        user_id=user.id,
        code_prefix=_code_prefix(url),
        decided_by=skipped or "user",
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


@dataclass(frozen=True, slots=True)
class ConnectedApp:
    """An app on the user's "connected apps" page: what it may do, and since when."""

    app: App
    grants: Sequence[ActiveGrant]

    @property
    def since(self) -> datetime | None:
        return min((g.since for g in self.grants), default=None)

    @property
    def last_authorized(self) -> datetime | None:
        return max((g.since for g in self.grants), default=None)

    @property
    def last_used(self) -> datetime | None:
        return max((g.last_used_at for g in self.grants if g.last_used_at), default=None)

    def scopes_by_resource(self) -> dict[str, tuple[str, ...]]:
        merged: dict[str, list[str]] = {}
        for grant in self.grants:
            have = merged.setdefault(grant.resource, [])
            have.extend(s for s in grant.scope if s not in have)
        return {resource: tuple(names) for resource, names in merged.items()}


def connected_apps(ctx: Context, user_id: str) -> list[ConnectedApp]:
    """Every app the user holds a live grant for, with the grants behind it."""
    grants = active_grants(ctx, user_id)
    return [
        ConnectedApp(app, [g for g in grants if g.app_id == app.id])
        for app in ctx.store.list_apps_authorized_by(user_id, ctx.clock.now())
    ]
