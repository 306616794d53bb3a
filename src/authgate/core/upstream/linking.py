"""Which local user an upstream sign-in is, by the operator's rules for the provider.

- A person is found by (provider, subject) only (OpenID Connect Core 1.0 §5.7: "The sub
  (subject) and iss (issuer) Claims, used together, are the only Claims that an RP can rely
  upon as a stable identifier for the End-User").
- An existing user is linked by email only when the provider allows linking by verified email
  and the provider says ``email_verified`` true; never on a bare match.
- Otherwise a user is created just in time when the provider allows it and the email domain
  and the required claim fit.
- The administrator role follows the configured claim, when one is configured.
- A disabled user stays out whatever the provider says.
Every decision is audited; a refusal raises ``UpstreamRefusedError`` with its reason.
"""

from __future__ import annotations

import re
from typing import Any

from authgate.core import accounts, audit
from authgate.core.context import Actor, Context
from authgate.core.errors import Conflict
from authgate.core.models import UpstreamIdentity, UpstreamProvider, User
from authgate.core.ports import DuplicateKeyError
from authgate.core.upstream.errors import Reason, UpstreamRefusedError
from authgate.crypto import secrets

NOT_ALLOWED = "Your account at the identity provider may not sign in here."
_NAME_JUNK = re.compile(r"[^a-z0-9._-]+")


def _refused(reason: Reason, debug: str) -> UpstreamRefusedError:
    if reason == "user_disabled":
        return UpstreamRefusedError("This account is disabled.", reason=reason, debug=debug)
    return UpstreamRefusedError(NOT_ALLOWED, reason=reason, debug=debug)


def claim_holds(claims: dict[str, Any], claim: str, values: tuple[str, ...]) -> bool:
    """Whether ``claim`` (a string, or a list of strings such as ``groups``) holds a value."""
    found = claims.get(claim)
    held = [found] if isinstance(found, str) else found if isinstance(found, list) else []
    return any(isinstance(v, str) and v in values for v in held)


def _text(claims: dict[str, Any], name: str, limit: int) -> str:
    """A claim as stored on a user: a printable string within ``limit``, else empty."""
    value = claims.get(name)
    if not isinstance(value, str) or not value.isprintable() or len(value) > limit:
        return ""
    return value.strip()


def verified_email(claims: dict[str, Any]) -> str | None:
    """The address, when the provider says it is verified (a JSON true; some providers send
    the string "true")."""
    email = _text(claims, "email", 256)
    verified = claims.get("email_verified") in (True, "true")
    return email if email and verified else None


def _link(
    ctx: Context, actor: Actor, provider: UpstreamProvider, subject: str, user: User, how: str
) -> None:
    identity = UpstreamIdentity(provider.id, subject, user.id, ctx.clock.now())
    try:
        ctx.store.create_upstream_identity(identity)
    except DuplicateKeyError:
        return  # a concurrent callback for the same person linked it first
    audit.record(
        ctx,
        actor.as_user(user.id),
        "upstream_identity.linked",
        target_type="user",
        target_id=user.id,
        provider=provider.id,
        subject=subject,
        method=how,
    )


def _by_email(ctx: Context, provider: UpstreamProvider, claims: dict[str, Any]) -> User | None:
    email = _text(claims, "email", 256)
    if not provider.link_by_verified_email or not email:
        return None
    found = ctx.store.find_users_by_email(email)
    if not found:
        return None
    if verified_email(claims) is None:
        raise _refused("email_not_verified", "an account has this address; it is not verified")
    if len(found) > 1:
        raise _refused("email_ambiguous", "several accounts have this address")
    return found[0]


def _check_creation(provider: UpstreamProvider, claims: dict[str, Any]) -> None:
    if not provider.jit_create:
        raise _refused("account_not_linked", "no linked account and no just-in-time creation")
    if provider.allowed_domains:
        email = verified_email(claims)
        if email is None:
            raise _refused("email_not_verified", "allowed domains need a verified address")
        if email.rpartition("@")[2].lower() not in provider.allowed_domains:
            raise _refused("domain_not_allowed", "the address is outside the allowed domains")
    if provider.required_claim and not claim_holds(
        claims, provider.required_claim, provider.required_values
    ):
        raise _refused("claim_missing", f"{provider.required_claim} lacks a required value")


def _username_base(claims: dict[str, Any]) -> str:
    for source in (claims.get("preferred_username"), claims.get("email")):
        if isinstance(source, str) and source.strip():
            base = _NAME_JUNK.sub("-", source.split("@")[0].lower()).strip("-._")[:48]
            if base:
                return base
    return "user"


def _is_admin(provider: UpstreamProvider, claims: dict[str, Any]) -> bool | None:
    """The role the claim maps to, or None when the provider maps no role."""
    if not provider.admin_claim:
        return None
    return claim_holds(claims, provider.admin_claim, provider.admin_values)


def _create(ctx: Context, actor: Actor, provider: UpstreamProvider, claims: dict[str, Any]) -> User:
    base = _username_base(claims)
    email, name = _text(claims, "email", 256), _text(claims, "name", 128)
    for attempt in range(4):
        username = base if attempt == 0 else f"{base}-{secrets.random_string(6).lower()}"
        try:
            return accounts.create_user(
                ctx,
                actor,
                username=username,
                password=None,
                email=email,
                email_verified=verified_email(claims) is not None,
                name=name,
                is_admin=bool(_is_admin(provider, claims)),
            )
        except Conflict:
            continue
    raise _refused("account_not_linked", "no free username for the new account")


def _map_role(
    ctx: Context, actor: Actor, provider: UpstreamProvider, user: User, claims: dict[str, Any]
) -> User:
    wanted = _is_admin(provider, claims)
    if wanted is None or wanted == user.is_admin:
        return user
    mapped = accounts.update_user(ctx, actor, user.id, is_admin=wanted)
    audit.record(
        ctx,
        actor.as_user(user.id),
        "user.role_mapped",
        target_type="user",
        target_id=user.id,
        provider=provider.id,
        claim=provider.admin_claim,
        is_admin=wanted,
    )
    return mapped


def resolve_user(
    ctx: Context, actor: Actor, provider: UpstreamProvider, claims: dict[str, Any]
) -> User:
    """The local user this sign-in is (module doc), linked and with the mapped role."""
    subject = str(claims["sub"])
    identity = ctx.store.get_upstream_identity(provider.id, subject)
    user = ctx.store.get_user(identity.user_id) if identity is not None else None
    if user is None:
        user = _by_email(ctx, provider, claims)
        how = "verified_email"
        if user is None:
            _check_creation(provider, claims)
            user = _create(ctx, actor, provider, claims)
            how = "created"
        if user.disabled:
            raise _refused("user_disabled", "the account is disabled")
        _link(ctx, actor, provider, subject, user, how)
    if user.disabled:
        raise _refused("user_disabled", "the account is disabled")
    ctx.store.touch_upstream_identity(provider.id, subject, ctx.clock.now())
    return _map_role(ctx, actor, provider, user, claims)
