"""Sign-in and sign-out pages. Only a local path is accepted as the return target."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authgate.core import accounts, consent, id_tokens, rate_limits, redirect_uris
from authgate.core import flows as core_flows
from authgate.core.context import Actor
from authgate.core.models import User
from authgate.core.rate_limits import RateLimitedError
from authgate.core.upstream import providers as upstream_providers
from authgate.crypto.secrets import constant_time_equal
from authgate.web import cookies, deps, explanations, flows
from authgate.web.middleware import note
from authgate.web.templating import render

MAX_RETURN_TO = 4096


def safe_return_to(value: str | None) -> str:
    """A local absolute path, or "/": never another origin (no open redirect)."""
    if (
        not value
        or len(value) > MAX_RETURN_TO
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 for c in value)
    ):
        return "/"
    return value


async def _login_page(
    request: Request,
    return_to: str,
    *,
    error: str | None,
    status: int,
    refused: str | None = None,
    username: str = "",
) -> Response:
    """The sign-in form; ``refused``: the reason code of a refusal core did not record;
    ``username``: the name the form is filled with (the OIDC ``login_hint``)."""
    token = secrets.token_urlsafe(32)
    buttons = await run_in_threadpool(upstream_providers.enabled_providers, deps.ctx_of(request))
    context: dict[str, object] = {
        "return_to": return_to,
        "csrf_token": token,
        "error": error,
        "username": username,
        # One button per enabled upstream provider; the form unless the operator switched it off.
        "providers": [(p.id, p.display_name) for p in buttons],
        "password_form": deps.settings_of(request).password_sign_in,
    }
    if error is not None:
        # The reference that finds this attempt in the flow of the authorization it serves.
        context["reference"] = explanations.reference(deps.request_id(request))
    if refused is not None:
        core_flows.step("sign_in", "refused", refused)
    # CSP form-action must allow the redirect that follows a provider's button: its issuer's
    # origin (where the authorization endpoints of the providers in the field live).
    origins = [redirect_uris.ascii_origin(p.issuer) for p in buttons]
    form_action = " ".join(["'self'", *dict.fromkeys(o for o in origins if o)])
    response = render(request, "login.html", context, status=status, form_action=form_action)
    cookies.put(response, deps.settings_of(request), cookies.LOGIN_CSRF, token)
    return response


def _sign_in(request: Request, actor: Actor, username: str, password: str) -> User | None:
    """Per source first, then the slow-down per source and username inside
    ``accounts.sign_in``: a refused attempt checks no password and starts no session."""
    ctx, settings = deps.ctx_of(request), deps.settings_of(request)
    rate_limits.enforce_sign_in_address(ctx, actor, settings.sign_in_rate_per_ip)
    return accounts.sign_in(
        ctx,
        actor,
        username,
        password,
        slow_down=settings.sign_in_attempts_per_user,
        sources_per_user=settings.sign_in_sources_per_user,
    )


async def _slowed_down(request: Request, return_to: str, exc: RateLimitedError) -> Response:
    minutes = max(1, -(-exc.retry_after // 60))
    if isinstance(exc, accounts.SignInBusyError):
        error = "Too many sign-ins are being checked right now. Please try again in a moment."
    else:
        error = (
            "Too many sign-in attempts. Please wait "
            f"{'a minute' if minutes == 1 else f'{minutes} minutes'} and try again."
        )
    response = await _login_page(
        request, return_to, error=error, status=429, refused="rate_limited"
    )
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def login_get(request: Request) -> Response:
    return_to = safe_return_to(request.query_params.get("return_to"))
    who = await run_in_threadpool(deps.signed_in, request)
    # prompt=login (authorize.py) asks for the form even when someone is signed in.
    if who is not None and request.query_params.get("prompt") != "login":
        return RedirectResponse(return_to, status_code=302)
    hint = id_tokens.check_login_hint(request.query_params.get("login_hint"))
    return await _login_page(request, return_to, error=None, status=200, username=hint or "")


async def login_post(request: Request) -> Response:
    form = await request.form()
    return_to = safe_return_to(str(form.get("return_to") or ""))
    # A sign-in on the way of an authorization request is a step of its flow.
    flow_id = flows.flow_of_return_to(request, return_to)
    if flow_id is None:
        return await _login_post(request, form, return_to)
    with flows.tracing(request, flow_id=flow_id):
        return await _login_post(request, form, return_to)


async def _login_post(request: Request, form: FormData, return_to: str) -> Response:
    cookie = cookies.read(request, deps.settings_of(request), cookies.LOGIN_CSRF) or ""
    sent = str(form.get("csrf_token") or "")
    if not cookie or not constant_time_equal(cookie, sent):
        expired = "Your sign-in form expired. Please try again."
        return await _login_page(
            request, return_to, error=expired, status=403, refused="sign_in_failed"
        )
    if not deps.settings_of(request).password_sign_in:
        off = "Signing in with a password is switched off here."
        return await _login_page(
            request, return_to, error=off, status=403, refused="sign_in_failed"
        )
    ctx = deps.ctx_of(request)
    actor = deps.actor_of(request)
    username = str(form.get("username") or "")
    password = str(form.get("password") or "")
    if "\x00" in username or "\x00" in password:
        # No account has one, and PostgreSQL refuses NUL in text: fail like a wrong password.
        wrong = "Incorrect username or password."
        return await _login_page(
            request, return_to, error=wrong, status=401, refused="sign_in_failed"
        )
    try:
        accounts.refuse_sign_in_if_busy()  # before any counting, lookup or thread
        user = await run_in_threadpool(_sign_in, request, actor, username, password)
    except RateLimitedError as exc:
        return await _slowed_down(request, return_to, exc)
    if user is None:
        # The same words whether the account exists or not.
        wrong = "Incorrect username or password."
        return await _login_page(request, return_to, error=wrong, status=401)
    note(request, user_id=user.id)
    _, value = await run_in_threadpool(accounts.start_session, ctx, actor.as_user(user.id), user)
    response = RedirectResponse(return_to, status_code=303)
    settings = deps.settings_of(request)
    cookies.put(response, settings, cookies.SESSION, value, max_age=settings.session_ttl_seconds)
    cookies.clear(response, settings, cookies.LOGIN_CSRF)
    return response


def _after_logout(return_to: str | None) -> str:
    """Where sign-out leads: the sign-in page, coming back to ``return_to`` (a local path,
    e.g. the authorization request of "Not you? Switch account") when one is given."""
    target = safe_return_to(return_to)
    return "/login" if target == "/" else f"/login?return_to={quote(target, safe='')}"


async def logout_get(request: Request) -> Response:
    return_to = request.query_params.get("return_to")
    who = await run_in_threadpool(deps.signed_in, request)
    if who is None:
        return RedirectResponse(_after_logout(return_to), status_code=302)
    token = consent.csrf_token(deps.ctx_of(request), who.session.id)
    context = {"user": who.user, "csrf_token": token, "return_to": safe_return_to(return_to)}
    return render(request, "logout.html", context)


async def logout_post(request: Request) -> Response:
    """Sign out with this session's CSRF token. Without it nothing changes (a cross-site form
    must not sign anyone out, nor clear the cookie while the session lives on): 403 and the
    sign-out form again, whose button does it."""
    who = await run_in_threadpool(deps.signed_in, request)
    form = await request.form()
    ctx = deps.ctx_of(request)
    sent = form.get("csrf_token")
    return_to = form.get("return_to")
    target = _after_logout(return_to if isinstance(return_to, str) else None)
    if who is None:
        return RedirectResponse(target, status_code=303)
    if not consent.check_csrf(ctx, who.session.id, sent if isinstance(sent, str) else None):
        context = {
            "user": who.user,
            "csrf_token": consent.csrf_token(ctx, who.session.id),
            "return_to": safe_return_to(return_to if isinstance(return_to, str) else None),
            "expired": True,
        }
        return render(request, "logout.html", context, status=403)
    await run_in_threadpool(
        accounts.end_session, ctx, deps.actor_for_user(request, who.user.id), who
    )
    response = RedirectResponse(target, status_code=303)
    cookies.clear(response, deps.settings_of(request), cookies.SESSION)
    return response


async def home(request: Request) -> Response:
    who = await run_in_threadpool(deps.signed_in, request)
    if who is None:
        return RedirectResponse("/login", status_code=302)
    token = consent.csrf_token(deps.ctx_of(request), who.session.id)
    return render(request, "home.html", {"user": who.user, "csrf_token": token})
