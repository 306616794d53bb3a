"""Local users, browser sessions and personal API tokens.

Passwords are Argon2id hashes; session cookies and API tokens are prefixed secrets of which
only a SHA-256 is stored. A failed sign-in never says whether the account exists.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

from authgate.core import audit, flows, rate_limits
from authgate.core.context import Actor, Context
from authgate.core.errors import Conflict, InvalidTokenError, NotFound, ValidationFailed
from authgate.core.models import PASSWORD_AMR, ApiToken, Session, User
from authgate.core.ports import DuplicateKeyError
from authgate.crypto import ids, passwords, secrets

SESSION_KIND = "ses"
API_TOKEN_KIND = "pat"
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
#: Seconds a sign-in refused because the password checks are all taken is told to wait.
BUSY_RETRY_AFTER = 1


class SignInBusyError(rate_limits.RateLimitedError):
    """Every password check of this process is taken (``crypto/passwords.py``): 429 with a
    short ``Retry-After``; no password was checked, and nothing is audited."""


#: The scope that carries a user's administrator rights into an OAuth access token for
#: authgate's own API (web/deps.py ``Principal.is_admin``).
ADMIN_SCOPE = "admin"

#: Why a user's grants were ended (``user.grants_revoked``).
GrantsEndReason = Literal["disabled", "password_reset", "deleted", "admin_removed"]


def _check_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise ValidationFailed(
            "Invalid username",
            validations={"username": "1-64 characters: a-z, 0-9, '.', '_' or '-'"},
        )
    return name


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationFailed(
            "Invalid password",
            validations={"password": f"{MIN_PASSWORD} to {MAX_PASSWORD} characters"},
        )


def _check_verified(email: str, email_verified: bool) -> None:
    """Only an address can be verified: a user without one is never ``email_verified``."""
    if email_verified and not email.strip():
        raise ValidationFailed(
            "Invalid user", validations={"email_verified": "there is no email address to verify"}
        )


def create_user(
    ctx: Context,
    actor: Actor,
    *,
    username: str,
    password: str | None,
    email: str = "",
    email_verified: bool = False,
    name: str = "",
    is_admin: bool = False,
) -> User:
    """``email_verified``: the operator says the address reaches the person (OpenID Connect
    ``email_verified``); an address merely typed is not."""
    username = _check_username(username)
    _check_verified(email, email_verified)
    if password is not None:
        _check_password(password)
    if len(email) > 256 or len(name) > 128:
        raise ValidationFailed("Invalid user", validations={"email": "at most 256 characters"})
    now = ctx.clock.now()
    user = User(
        id=str(uuid.uuid4()),
        username=username,
        email=email.strip(),
        name=name.strip(),
        password_hash=passwords.hash_password(password) if password is not None else None,
        is_admin=is_admin,
        disabled=False,
        created_at=now,
        updated_at=now,
        email_verified=email_verified,
    )
    try:
        ctx.store.create_user(user)
    except DuplicateKeyError as exc:
        raise Conflict(f"A user named {username!r} already exists") from exc
    audit.record(
        ctx,
        actor,
        "user.created",
        target_type="user",
        target_id=user.id,
        username=username,
        is_admin=is_admin,
    )
    return user


def update_user(
    ctx: Context,
    actor: Actor,
    user_id: str,
    *,
    password: str | None = None,
    is_admin: bool | None = None,
    disabled: bool | None = None,
    email: str | None = None,
    email_verified: bool | None = None,
    name: str | None = None,
) -> User:
    """Change the fields given. A changed email address is unverified unless
    ``email_verified`` says otherwise in the same change."""
    user = ctx.store.get_user(user_id)
    if user is None:
        raise NotFound("No such user")
    changes: dict[str, object] = {}
    if password is not None:
        _check_password(password)
        changes["password_hash"] = passwords.hash_password(password)
    for field, value in (
        ("is_admin", is_admin),
        ("disabled", disabled),
        ("email", email),
        ("name", name),
    ):
        if value is not None:
            changes[field] = value
    if email_verified is not None:
        _check_verified(user.email if email is None else email, email_verified)
        changes["email_verified"] = email_verified
    elif email is not None and email.strip() != user.email:
        changes["email_verified"] = False
    updated = replace(user, updated_at=ctx.clock.now(), **changes)  # type: ignore[arg-type]
    ctx.store.update_user(updated)
    if disabled or password is not None:
        ctx.store.delete_user_sessions(user.id)
    fields = sorted(k if k != "password_hash" else "password" for k in changes)
    audit.record(ctx, actor, "user.updated", target_type="user", target_id=user.id, fields=fields)
    # After the change, so that no new grant can start from the old state meanwhile.
    reason = _grants_end_reason(user, password=password, is_admin=is_admin, disabled=disabled)
    if reason is not None:
        end_user_grants(ctx, actor, user.id, reason)
    return updated


def _grants_end_reason(
    user: User, *, password: str | None, is_admin: bool | None, disabled: bool | None
) -> GrantsEndReason | None:
    """Which change ends the user's grants: disabling, a new password, or (for the grants
    that carry it) the loss of administrator rights."""
    if disabled:
        return "disabled"
    if password is not None:
        return "password_reset"
    if user.is_admin and is_admin is False:
        return "admin_removed"
    return None


def end_user_grants(ctx: Context, actor: Actor, user_id: str, reason: GrantsEndReason) -> int:
    """End what the user's apps hold (DESIGN.md §7): every grant revoked with its refresh and
    access tokens, every unredeemed code deleted; for ``admin_removed`` only the grants and
    codes whose scope carries the administrator scope. On every node at once: refresh,
    redemption and introspection read these rows. JWT access tokens already handed out stay
    valid at resource servers that verify them offline until their ``exp``.

    Returns how many grants were ended; audited as ``user.grants_revoked`` with the count."""
    scope = ADMIN_SCOPE if reason == "admin_removed" else None
    grants, codes = ctx.store.revoke_user_grants(user_id, ctx.clock.now(), scope=scope)
    audit.record(
        ctx,
        actor,
        "user.grants_revoked",
        target_type="user",
        target_id=user_id,
        reason=reason,
        grants=grants,
        codes=codes,
    )
    return grants


def delete_user(ctx: Context, actor: Actor, user_id: str) -> None:
    """Delete the user with everything of theirs: sessions, API tokens, codes, grants and
    tokens. Their grants are ended (and audited) first, as for disabling; the audit trail
    keeps the user's id."""
    user = ctx.store.get_user(user_id)
    if user is None:
        raise NotFound("No such user")
    end_user_grants(ctx, actor, user.id, "deleted")
    if not ctx.store.delete_user(user.id, ctx.clock.now()):
        raise NotFound("No such user")
    audit.record(
        ctx, actor, "user.deleted", target_type="user", target_id=user.id, username=user.username
    )


def _busy() -> SignInBusyError:
    return SignInBusyError(
        "Too many sign-ins are being checked right now; try again in a moment",
        retry_after=BUSY_RETRY_AFTER,
        debug="password hashing queue full",
    )


def refuse_sign_in_if_busy() -> None:
    """``SignInBusyError`` at once when every password check of the process is taken: the
    attempt would check no password, so it is refused before anything else — before it is
    counted against its source, the account is looked up or a request thread is taken. A
    flood of sign-ins then costs the server little more than the 429 page. (``sign_in``
    still refuses the same way when the last place goes between the two.)"""
    try:
        passwords.refuse_if_full()
    except passwords.HashingBusyError as exc:
        raise _busy() from exc


def sign_in(
    ctx: Context,
    actor: Actor,
    username: str,
    password: str,
    *,
    slow_down: int = 0,
    sources_per_user: int = 0,
) -> User | None:
    """Check a username and password; audit success and failure alike.

    With ``slow_down`` (password checks per username per minute from one source, see
    ``rate_limits.slow_down_sign_in``) a username guessed too often from one source raises
    ``RateLimitedError`` there before its password is checked, whether or not the account
    exists: a short wait for that source, capped, never a lock-out of the user elsewhere;
    ``sources_per_user`` caps how many sources may be slowed down for one username."""
    name = username.strip().lower()
    rate_limits.slow_down_sign_in(
        ctx, actor, typed_name_digest(ctx, name[:64]), slow_down, sources_per_user
    )
    user = ctx.store.get_user_by_username(name) if len(name) <= 64 else None
    try:
        ok = passwords.verify_password(
            user.password_hash if user else None, password[:MAX_PASSWORD]
        )
    except passwords.HashingBusyError as exc:
        # The process's password checks are all taken: refuse at once rather than hold a
        # request thread (crypto/passwords.py); nothing was checked, so nothing is audited.
        raise _busy() from exc
    if user is None or not ok or user.disabled:
        reason = "unknown_user" if user is None else "disabled" if ok else "bad_password"
        # What was typed is recorded only when it names an account: people type their
        # password into the username field, and the audit trail is read by many.
        typed = (
            {"username": user.username}
            if user
            else {"username_hmac": typed_name_digest(ctx, name[:64])}
        )
        audit.record(
            ctx,
            actor,
            "user.login_failed",
            target_type="user",
            target_id=user.id if user else None,
            reason=reason,
            **typed,
        )
        flows.step("sign_in", "refused", "user_disabled" if ok else "sign_in_failed")
        return None
    audit.record(
        ctx, actor.as_user(user.id), "user.logged_in", target_type="user", target_id=user.id
    )
    flows.note(user_id=user.id)
    flows.step("sign_in")
    return user


def typed_name_digest(ctx: Context, name: str) -> str:
    """A keyed hash of a typed username: the same for the same text, so repeated attempts can
    be told apart and counted, but not reversible by guessing (the key is derived from
    ``AUTHGATE_SECRET_KEY``; a plain hash of a short password is found by brute force)."""
    return "hmac-sha256:" + secrets.hmac_sha256(ctx.secret_key, f"typed-username:{name}")[:32]


@dataclass(frozen=True, slots=True)
class SignedIn:
    session: Session
    user: User


def start_session(
    ctx: Context, actor: Actor, user: User, *, amr: str = PASSWORD_AMR, idp: str | None = None
) -> tuple[Session, str]:
    """Create a session; returns it and the cookie value (shown once, stored hashed).
    ``amr`` and ``idp``: how the person signed in (``models.Session``)."""
    now = ctx.clock.now()
    value = secrets.generate(SESSION_KIND)
    session = Session(
        id=ids.time_ordered_id(),
        user_id=user.id,
        token_hash=value.hash,
        created_at=now,
        expires_at=now + ctx.policy.session_ttl,
        ip=actor.ip,
        user_agent=actor.user_agent[:256] if actor.user_agent else None,
        amr=amr,
        idp=idp,
    )
    ctx.store.create_session(session)
    return session, value.value


def resolve_session(ctx: Context, cookie: str | None) -> SignedIn | None:
    parsed = secrets.parse(cookie, SESSION_KIND) if cookie else None
    if parsed is None:
        return None
    session = ctx.store.get_session_by_hash(parsed.hash)
    if session is None or session.expires_at <= ctx.clock.now():
        return None
    user = ctx.store.get_user(session.user_id)
    if user is None or user.disabled:
        return None
    return SignedIn(session, user)


def end_session(ctx: Context, actor: Actor, signed_in: SignedIn) -> None:
    ctx.store.delete_session(signed_in.session.id)
    audit.record(ctx, actor, "user.logged_out", target_type="user", target_id=signed_in.user.id)


def create_api_token(
    ctx: Context, actor: Actor, user: User, name: str, lifetime: timedelta | None
) -> tuple[ApiToken, str]:
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise ValidationFailed("Invalid token name", validations={"name": "1 to 64 characters"})
    now = ctx.clock.now()
    value = secrets.generate(API_TOKEN_KIND)
    token = ApiToken(
        id=str(uuid.uuid4()),
        user_id=user.id,
        name=name,
        prefix=value.prefix,
        token_hash=value.hash,
        created_at=now,
        expires_at=now + lifetime if lifetime else None,
    )
    ctx.store.create_api_token(token)
    audit.record(
        ctx,
        actor,
        "api_token.created",
        target_type="api_token",
        target_id=token.id,
        user_id=user.id,
        name=name,
        prefix=token.prefix,
    )
    return token, value.value


def delete_api_token(ctx: Context, actor: Actor, user: User, token_id: str) -> None:
    tokens = {t.id: t for t in ctx.store.list_api_tokens(user.id)}
    if token_id not in tokens or not ctx.store.delete_api_token(token_id):
        raise NotFound("No such API token")
    audit.record(
        ctx,
        actor,
        "api_token.deleted",
        target_type="api_token",
        target_id=token_id,
        user_id=user.id,
    )


def resolve_api_token(ctx: Context, value: str) -> User:
    parsed = secrets.parse(value, API_TOKEN_KIND)
    token = ctx.store.get_api_token_by_prefix(parsed.prefix) if parsed else None
    if parsed is None or token is None:
        raise InvalidTokenError("The API token is invalid")
    if not secrets.constant_time_equal(token.token_hash, parsed.hash):
        raise InvalidTokenError("The API token is invalid")
    now = ctx.clock.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise InvalidTokenError("The API token has expired")
    user = ctx.store.get_user(token.user_id)
    if user is None or user.disabled:
        raise InvalidTokenError("The API token is invalid")
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ctx.store.touch_api_token(token.id, now)
    return user


def is_api_token(value: str) -> bool:
    return value.startswith(f"ag{API_TOKEN_KIND}_")


def find_user(ctx: Context, user: str) -> User:
    """A user by id or by username."""
    found = ctx.store.get_user(user) if len(user) <= 64 else None
    if found is None and len(user) <= 64:
        found = ctx.store.get_user_by_username(user.strip().lower())
    if found is None:
        raise NotFound("No such user")
    return found
