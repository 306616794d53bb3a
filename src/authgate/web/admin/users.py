"""Management API for users (Coder's ``/users``, ``/users/me``) and a user's authorized apps.

Accounts rules live in ``core.accounts``. The one rule enforced here is about the caller, not
the account: an administrator cannot disable, demote or delete themself, so a deployment always
keeps the admin who is making the change.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from authgate.core import accounts, clients, consent
from authgate.core.errors import ValidationFailed
from authgate.core.models import User
from authgate.schemas import AppOut, UserCreate, UserOut, UserPatch
from authgate.web.admin.apps import authorized_apps
from authgate.web.admin.auth import AccountHolder, Admin, Ctx, CurrentPrincipal, actor
from authgate.web.deps import Principal

router = APIRouter(prefix="/users", tags=["users"])


def check_not_self_lockout(who: Principal, target: User, body: UserPatch) -> None:
    if target.id != who.user.id:
        return
    if body.disabled is True:
        raise ValidationFailed(
            "An administrator cannot disable themself",
            validations={"disabled": "cannot disable your own account"},
        )
    if body.is_admin is False:
        raise ValidationFailed(
            "An administrator cannot demote themself",
            validations={"is_admin": "cannot remove your own administrator rights"},
        )


@router.get("/me", response_model=UserOut)
def get_me(who: CurrentPrincipal) -> UserOut:
    return UserOut.of(who.user)


@router.get("/me/apps", response_model=list[AppOut], tags=["apps"])
def list_my_apps(ctx: Ctx, who: AccountHolder) -> list[AppOut]:
    """Apps the caller has authorized and still holds a live token for (with the browser
    session or a personal API token: an app's OAuth token may not see the others)."""
    return authorized_apps(ctx, who.user.id)


@router.delete("/me/apps/{app}", status_code=204, response_class=Response, tags=["apps"])
def withdraw_my_app(ctx: Ctx, who: AccountHolder, request: Request, app: str) -> None:
    """Withdraw consent: revoke every code, grant and token the caller gave ``app`` (with
    the browser session or a personal API token, never an app's OAuth token)."""
    consent.withdraw(ctx, actor(request, who), who.user.id, clients.get_app(ctx, app).id)


@router.get("", response_model=list[UserOut])
def list_users(ctx: Ctx, who: Admin) -> list[UserOut]:
    return [UserOut.of(user) for user in ctx.store.list_users()]


@router.post("", status_code=201, response_model=UserOut)
def create_user(ctx: Ctx, who: Admin, request: Request, body: UserCreate) -> UserOut:
    user = accounts.create_user(
        ctx,
        actor(request, who),
        username=body.username,
        password=body.password,
        email=body.email,
        email_verified=body.email_verified,
        name=body.name,
        is_admin=body.is_admin,
    )
    return UserOut.of(user)


@router.get("/{user}", response_model=UserOut)
def get_user(ctx: Ctx, who: Admin, user: str) -> UserOut:
    return UserOut.of(accounts.find_user(ctx, user))


@router.patch("/{user}", response_model=UserOut)
def update_user(ctx: Ctx, who: Admin, request: Request, user: str, body: UserPatch) -> UserOut:
    target = accounts.find_user(ctx, user)
    check_not_self_lockout(who, target, body)
    updated = accounts.update_user(
        ctx,
        actor(request, who),
        target.id,
        password=body.password,
        is_admin=body.is_admin,
        disabled=body.disabled,
        email=body.email,
        email_verified=body.email_verified,
        name=body.name,
    )
    return UserOut.of(updated)


@router.delete("/{user}", status_code=204, response_class=Response)
def delete_user(ctx: Ctx, who: Admin, request: Request, user: str) -> None:
    """Delete a user with their sessions, API tokens, codes, grants and tokens: their apps'
    refresh tokens and codes stop working and introspection says inactive at once (JWT access
    tokens already issued stay valid until they expire)."""
    target = accounts.find_user(ctx, user)
    if target.id == who.user.id:
        raise ValidationFailed(
            "An administrator cannot delete themself",
            validations={"user": "cannot delete your own account"},
        )
    accounts.delete_user(ctx, actor(request, who), target.id)
