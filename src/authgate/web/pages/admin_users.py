"""Admin console: users. Create, disable or enable, reset a password, and delete.

The rules are ``core.accounts`` (as ``/api/v2/users``); the one rule of this page is the API's
too: an administrator cannot disable or delete themself. A password the server generates is
shown once.
"""

from __future__ import annotations

import secrets

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from authgate.core import accounts
from authgate.core.accounts import SignedIn
from authgate.core.errors import InvalidRequestError, ManagementError, ValidationFailed
from authgate.core.models import User
from authgate.web import deps
from authgate.web.pages import common


def generated_password() -> str:
    return secrets.token_urlsafe(15)


async def _users_page(
    request: Request,
    who: SignedIn,
    *,
    failure: ManagementError | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    users = await run_in_threadpool(deps.ctx_of(request).store.list_users)
    return common.page(
        request,
        "admin_users.html",
        who,
        status=failure.status if failure else 200,
        users=users,
        failure=failure,
        values=values or {},
    )


async def list_users(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    return await _users_page(request, who)


def _password_page(
    request: Request, who: SignedIn, user: User, password: str, *, new: bool
) -> Response:
    return common.page(
        request,
        "admin_password_shown.html",
        who,
        status=201 if new else 200,
        target=user,
        password=password,
        new=new,
    )


def email_verified(form: FormData) -> bool:
    """The "email verified" box: unticked (absent) or "on"; anything else is refused."""
    values = form.getlist("email_verified")
    if values and values != ["on"]:
        raise ValidationFailed(
            "Invalid email_verified", validations={"email_verified": "a box is ticked or not"}
        )
    return bool(values)


async def create_user(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    try:
        verified = email_verified(form)
    except ValidationFailed as exc:
        return await _users_page(request, who, failure=exc, values=_typed(form))
    typed = form.get("password")
    password = typed if isinstance(typed, str) and typed else generated_password()
    made = await common.attempt(
        accounts.create_user,
        deps.ctx_of(request),
        common.actor(request, who),
        username=common.text(form, "username"),
        password=password,
        email=common.text(form, "email"),
        email_verified=verified,
        name=common.text(form, "name"),
        is_admin=form.get("is_admin") == "on",
    )
    if isinstance(made, ManagementError):
        return await _users_page(request, who, failure=made, values=_typed(form))
    if typed:
        return common.done("/admin/users", "user-created")
    return _password_page(request, who, made, password, new=True)


def _typed(form: FormData) -> dict[str, str]:
    """The new-user form sent back after a refusal (never the password)."""
    return {k: common.text(form, k) for k in ("username", "email", "name")}


async def _target(request: Request) -> User | Response:
    user_id = request.path_params["user_id"]
    user = await run_in_threadpool(deps.ctx_of(request).store.get_user, user_id)
    if user is None:
        return common.error(request, InvalidRequestError("No such user"), 404)
    return user


async def _set_disabled(request: Request, disabled: bool) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    target = await _target(request)
    if not isinstance(target, User):
        return target
    if disabled and target.id == who.user.id:
        failure = ManagementError("An administrator cannot disable themself")
        return await _users_page(request, who, failure=failure)
    ctx = deps.ctx_of(request)
    await common.attempt(
        accounts.update_user, ctx, common.actor(request, who), target.id, disabled=disabled
    )
    return common.done("/admin/users", "user-disabled" if disabled else "user-enabled")


async def disable_user(request: Request) -> Response:
    return await _set_disabled(request, True)


async def enable_user(request: Request) -> Response:
    return await _set_disabled(request, False)


async def set_email_verified(request: Request) -> Response:
    """Mark the user's address verified (``email_verified=on``) or not (absent): what
    authgate's ID tokens and UserInfo say of it."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    target = await _target(request)
    if not isinstance(target, User):
        return target
    try:
        verified = email_verified(form)
    except ValidationFailed as exc:
        return await _users_page(request, who, failure=exc)
    ctx = deps.ctx_of(request)
    updated = await common.attempt(
        accounts.update_user, ctx, common.actor(request, who), target.id, email_verified=verified
    )
    if isinstance(updated, ManagementError):
        return await _users_page(request, who, failure=updated)
    return common.done("/admin/users", "email-verified" if verified else "email-unverified")


async def reset_password(request: Request) -> Response:
    """A new generated password, shown once; the user's sessions end (core.accounts)."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    target = await _target(request)
    if not isinstance(target, User):
        return target
    password = generated_password()
    ctx = deps.ctx_of(request)
    updated = await common.attempt(
        accounts.update_user, ctx, common.actor(request, who), target.id, password=password
    )
    if isinstance(updated, ManagementError):
        return await _users_page(request, who, failure=updated)
    return _password_page(request, who, updated, password, new=False)


async def delete_user(request: Request) -> Response:
    """Delete a user (a ticked box confirms it); their grants end first (core.accounts)."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    target = await _target(request)
    if not isinstance(target, User):
        return target
    if target.id == who.user.id:
        failure = ManagementError("An administrator cannot delete themself")
        return await _users_page(request, who, failure=failure)
    if form.get("confirm") != "on":
        failure = ManagementError(f"Tick the box to confirm that {target.username} be deleted")
        return await _users_page(request, who, failure=failure)
    ctx = deps.ctx_of(request)
    deleted = await common.attempt(accounts.delete_user, ctx, common.actor(request, who), target.id)
    if isinstance(deleted, ManagementError):
        return await _users_page(request, who, failure=deleted)
    return common.done("/admin/users", "user-deleted")
