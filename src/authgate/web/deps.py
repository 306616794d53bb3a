"""Per-request helpers: the core context, who is calling, and how they authenticated."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection

from authgate.config import Settings
from authgate.core import accounts, admin_scope, consent, tokens
from authgate.core.context import Actor, Context
from authgate.core.errors import Forbidden, OAuthError, Unauthenticated
from authgate.core.models import User
from authgate.web import cookies
from authgate.web.fairness import client_address

SESSION_COOKIE = cookies.SESSION  # the name over http; see web/cookies.py for https
ADMIN_SCOPE = admin_scope.ADMIN_SCOPE
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def ctx_of(conn: HTTPConnection) -> Context:
    ctx: Context = conn.app.state.ctx
    return ctx


def settings_of(conn: HTTPConnection) -> Settings:
    settings: Settings = conn.app.state.settings
    return settings


def request_id(conn: HTTPConnection) -> str:
    rid = conn.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else str(uuid.uuid4())


def client_ip(conn: HTTPConnection) -> str | None:
    trust = settings_of(conn).trust_proxy_headers
    return client_address(conn.scope, trust_proxy_headers=trust)


def actor_of(conn: HTTPConnection) -> Actor:
    return Actor(
        type="anonymous",
        ip=client_ip(conn),
        user_agent=conn.headers.get("user-agent"),
        request_id=request_id(conn),
    )


def signed_in(conn: HTTPConnection) -> accounts.SignedIn | None:
    value = cookies.read(conn, settings_of(conn), cookies.SESSION)
    return accounts.resolve_session(ctx_of(conn), value)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of the management API."""

    user: User
    via: Literal["api_token", "session", "oauth"]
    scope: tuple[str, ...] = ()
    # For an OAuth token: whether the app it was issued to may hold the admin scope now
    # (core/admin_scope.py), so a grant made before the app lost the mark counts for nothing.
    app_may_administer: bool = False

    @property
    def is_admin(self) -> bool:
        # An OAuth token acts for its user, but admin rights need the `admin` scope too, held
        # by an app an operator marked for it.
        if self.via == "oauth":
            return self.user.is_admin and ADMIN_SCOPE in self.scope and self.app_may_administer
        return self.user.is_admin


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("The Authorization header must be `Bearer <token>`")
    return value.strip()


def principal(conn: HTTPConnection) -> Principal:
    """Authenticate a management-API call: API token, OAuth access token or browser session."""
    ctx = ctx_of(conn)
    token = bearer_token(conn)
    if token is not None:
        try:
            if accounts.is_api_token(token):
                return Principal(accounts.resolve_api_token(ctx, token), "api_token")
            access = tokens.check_access_token(ctx, token, audience=ctx.policy.audience)
        except OAuthError as exc:
            raise Unauthenticated(exc.description) from exc
        user = ctx.store.get_user(access.user_id) if access.user_id else None
        if user is None or user.disabled:
            raise Unauthenticated("The access token does not act for a user")
        scope = tuple(access.scope.split())
        # The app, from this process's client cache: read only when it matters.
        app = ctx.store.get_app(access.app_id) if ADMIN_SCOPE in scope else None
        return Principal(user, "oauth", scope, admin_scope.may_administer(app))
    session = signed_in(conn)
    if session is None:
        raise Unauthenticated("Authentication required: send `Authorization: Bearer <token>`")
    # A browser session is sent by the browser on its own: a change made with it must also
    # carry the session's CSRF token, which another origin cannot read.
    if conn.scope.get("method", "GET") not in SAFE_METHODS and not consent.check_csrf(
        ctx, session.session.id, conn.headers.get("x-csrf-token")
    ):
        raise Forbidden("A change made with a browser session needs the X-CSRF-Token header")
    return Principal(session.user, "session")


def account_holder(conn: HTTPConnection) -> Principal:
    """The user themself, not an app acting for them: what manages the account's own
    credentials and the apps it authorized. An OAuth access token was delegated to an app,
    which must neither turn that revocable grant into a long-lived credential of the user
    nor see or disconnect the user's other apps; no scope lifts this."""
    return require_account_holder(principal(conn))


def require_account_holder(who: Principal) -> Principal:
    """``account_holder`` for a caller already authenticated."""
    if who.via == "oauth":
        raise Forbidden(
            "This needs your browser session or a personal API token: "
            "an app's OAuth access token cannot manage your account",
            insufficient_scope=False,
        )
    return who


def admin(conn: HTTPConnection) -> Principal:
    who = principal(conn)
    if not who.is_admin:
        raise Forbidden("This operation needs an administrator")
    return who


def actor_for(conn: HTTPConnection, who: Principal) -> Actor:
    return actor_of(conn).as_user(who.user.id)


def actor_for_user(conn: HTTPConnection, user_id: str) -> Actor:
    return actor_of(conn).as_user(user_id)
