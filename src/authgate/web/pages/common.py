"""What every page handler shares: who is signed in, the admin check, the CSRF check on forms.

Pages are plain HTML forms that work without JavaScript. Every form that changes something is
a POST carrying the session-bound CSRF token (``core.consent.csrf_token``); a POST without it
changes nothing and answers 403. Handlers call the same core functions as the management API,
so a change made here is audited the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authgate.core import consent
from authgate.core.accounts import SignedIn
from authgate.core.context import Actor
from authgate.core.errors import AccessDeniedError, ManagementError, OAuthError
from authgate.web import deps
from authgate.web.errors import error_page
from authgate.web.templating import render

T = TypeVar("T")

# Words shown after a change, chosen by a fixed key: the query string never carries text.
NOTICES = {
    "app-created": "The app was created.",
    "app-saved": "The app was saved.",
    "app-deleted": "The app was deleted.",
    "secret-deleted": "The secret was deleted; tokens issued through it are revoked.",
    "access-granted": "The access was granted: client_credentials tokens for it from now on.",
    "access-revoked": "The access was revoked: no new client_credentials token for it; "
    "tokens already issued live until they expire.",
    "user-created": "The user was created.",
    "user-disabled": (
        "The user was disabled: their sessions ended, and their apps' refresh tokens and "
        "codes no longer work and their access tokens show as inactive. JWT access tokens "
        "already issued stay valid at resource servers that check them offline until they expire."
    ),
    "user-deleted": (
        "The user was deleted with their sessions, API tokens and their apps' grants. JWT "
        "access tokens already issued stay valid at resource servers that check them offline "
        "until they expire."
    ),
    "user-enabled": "The user was enabled.",
    "email-verified": "The email address is marked verified: ID tokens say email_verified true.",
    "email-unverified": "The email address is marked unverified.",
    "resource-created": "The resource was registered.",
    "resource-saved": "The resource was saved.",
    "resource-deleted": "The resource was deleted.",
    "keys-rotated": "The signing key was rotated.",
    "settings-saved": "The settings were saved.",
    "profile-saved": "The client profile was saved.",
    "profile-pinned": "The document was pinned.",
    "profile-deleted": "The operator's profile was removed.",
    "provider-created": "The identity provider was added: its button is on the sign-in page "
    "while it is enabled.",
    "provider-saved": "The identity provider was saved.",
    "provider-key-rotated": "A new key signs the client assertions: give the provider its "
    "certificate, or let it read the JWKS URL again.",
    "provider-enabled": "The identity provider was enabled: its button is on the sign-in page.",
    "provider-disabled": "The identity provider was disabled: its button is gone from the "
    "sign-in page and sign-ins through it are refused.",
    "provider-deleted": "The identity provider was deleted with the identities linked through "
    "it; the users stay.",
    "disconnected": "The app was disconnected: its access and refresh tokens no longer work.",
}


_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


def whole_number(value: str) -> int | None:
    """``value`` as a whole number when it is one in ASCII digits (at most nine), else None.

    Strict on purpose: ``str.isdigit`` also accepts "²" and other digits that ``int`` refuses,
    which made odd input a 500; every number a page reads goes through here."""
    return int(value) if _WHOLE_NUMBER.fullmatch(value) else None


async def current(request: Request) -> SignedIn | None:
    return await run_in_threadpool(deps.signed_in, request)


def to_login(request: Request) -> Response:
    target = request.url.path + ("?" + request.url.query if request.url.query else "")
    return RedirectResponse(f"/login?return_to={quote(target, safe='')}", status_code=302)


def error(request: Request, exc: OAuthError, status: int) -> Response:
    return error_page(request, exc, status=status)


def forbidden(request: Request, message: str) -> Response:
    return error(request, AccessDeniedError(message), 403)


def csrf_refused(request: Request) -> Response:
    return forbidden(request, "The form expired or was not sent by this site. Please try again.")


async def signed_in_page(request: Request) -> SignedIn | Response:
    """The signed-in person, or the way to the sign-in page (and back here)."""
    who = await current(request)
    if who is not None:
        return who
    if request.method == "GET":
        return to_login(request)
    return RedirectResponse("/login", status_code=303)


async def admin_page(request: Request) -> SignedIn | Response:
    """A signed-in administrator, or the sign-in page, or 403 for anyone else."""
    who = await signed_in_page(request)
    if isinstance(who, SignedIn) and not who.user.is_admin:
        return forbidden(request, "This page is for administrators of this server.")
    return who


def actor(request: Request, who: SignedIn) -> Actor:
    return deps.actor_for_user(request, who.user.id)


async def checked_form(request: Request, who: SignedIn) -> FormData | None:
    """The posted form, or None when its CSRF token is not this session's."""
    form = await request.form()
    token = form.get("csrf_token")
    ok = consent.check_csrf(
        deps.ctx_of(request), who.session.id, token if isinstance(token, str) else None
    )
    return form if ok else None


async def admin_form(request: Request) -> tuple[SignedIn, FormData] | Response:
    """An administrator's form post whose CSRF token is theirs, or the answer to send instead
    (the sign-in page, 403 for non-administrators, or the expired-form page)."""
    who = await admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    form = await checked_form(request, who)
    if form is None:
        return csrf_refused(request)
    return who, form


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def lines(form: FormData, name: str) -> list[str]:
    return [line.strip() for line in text(form, name).splitlines() if line.strip()]


def page(
    request: Request,
    template: str,
    who: SignedIn | None,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    """Render a page for a signed-in person: their account, the CSRF token, a notice."""
    values: dict[str, Any] = {"notice": NOTICES.get(request.query_params.get("notice", ""))}
    if who is not None:
        ctx = deps.ctx_of(request)
        values |= {"user": who.user, "csrf_token": consent.csrf_token(ctx, who.session.id)}
    return render(request, template, values | context, status=status)


def done(path: str, notice: str) -> Response:
    """Post/redirect/get: back to a page that says what happened."""
    return RedirectResponse(f"{path}?notice={notice}", status_code=303)


async def attempt(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | ManagementError:
    """Run a core function in the thread pool; a refusal comes back as the error to show."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except ManagementError as exc:
        return exc
