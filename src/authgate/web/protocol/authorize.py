"""GET/POST /oauth2/authorize: validate, sign in if needed, show consent, act on the decision.

The consent form posts back to the same URL (query kept) with a CSRF token bound to the
session; the decision never depends on Referer or Origin. ``prompt`` (OIDC Core §3.1.2.1):
``none`` answers ``login_required`` / ``consent_required`` instead of showing a page,
``login`` sends the person through the sign-in form even when a session exists, ``consent``
shows the consent page even when the decision is remembered (core/consent.py).
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authgate.core import (
    authorize,
    client_identity,
    client_metadata,
    consent,
    redirect_uris,
    scopes,
)
from authgate.core import flows as core_flows
from authgate.core.accounts import SignedIn
from authgate.core.context import Context
from authgate.core.errors import AccessDeniedError, InvalidRequestError, OAuthError
from authgate.core.models import ScopeInfo
from authgate.core.params import Params
from authgate.web import deps, errors, flows, threads
from authgate.web.middleware import note
from authgate.web.templating import render


def _params(request: Request) -> Params:
    return Params.from_pairs(request.query_params.multi_items())


# Added to the request's own query by prompt=login: proof that the sign-in came after it.
LOGIN_MARKER = flows.LOGIN_MARKER


def _login_redirect(request: Request, *, force: bool = False) -> Response:
    target = request.url.path + ("?" + request.url.query if request.url.query else "")
    if force:
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k != LOGIN_MARKER]
        pairs.append((LOGIN_MARKER, consent.login_marker(deps.ctx_of(request))))
        target = request.url.path + "?" + urlencode(pairs)
    suffix = "&prompt=login" if force else ""
    return RedirectResponse(f"/login?return_to={quote(target, safe='')}{suffix}", status_code=302)


async def _error(request: Request, exc: Exception, who: SignedIn | None) -> Response:
    """An authorization error: redirected or shown as a page, as ``authorize.may_redirect``
    decides for the person (if any) who is signed in."""
    error = exc.error if isinstance(exc, authorize.AuthorizationRedirect) else exc
    if isinstance(error, OAuthError):
        flows.refused("authorize", error)
    redirect = False
    if isinstance(exc, authorize.AuthorizationRedirect):
        user_id = who.user.id if who else None
        ctx = deps.ctx_of(request)
        redirect = await run_in_threadpool(authorize.may_redirect, ctx, exc, user_id)
    return errors.authorize_error(request, exc, redirect=redirect)


async def _needs_sign_in(
    request: Request, req: authorize.AuthorizationRequest, who: SignedIn | None
) -> Response | None:
    """The sign-in step: prompt=none may not show it, prompt=login always does."""
    ctx = deps.ctx_of(request)
    if who is None:
        if "none" in req.prompt:
            error = authorize.LoginRequiredError("The user is not signed in")
            return await _error(request, authorize.prompt_error(req, error), who)
        return _login_redirect(request, force="login" in req.prompt)
    marker = request.query_params.get(LOGIN_MARKER)
    if "login" in req.prompt and not consent.fresh_login(ctx, marker, who.session.created_at):
        return _login_redirect(request, force=True)
    return None


def _without_marker(request: Request) -> str:
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k != LOGIN_MARKER]
    return request.url.path + "?" + urlencode(pairs)


def _form_action_source(redirect_uri: str) -> str:
    """CSP form-action must allow the redirect that follows the consent POST: its origin in
    ASCII (``authorize.verify_client`` refused a redirect URI without one)."""
    origin = redirect_uris.ascii_origin(redirect_uri)
    return f"'self' {origin}" if origin else "'self'"


def _redirect_context(redirect_uri: str) -> dict[str, str]:
    """Where the person goes after deciding, as the consent page names it: a private-use
    scheme by its scheme (``cursor:``), a loopback URI as a program on this device, a host
    also in ASCII when it is written in other letters (an IDN may imitate another name)."""
    parts = urlsplit(redirect_uri)
    origin = redirect_uris.ascii_origin(redirect_uri) or ""
    if parts.scheme.lower() not in ("http", "https"):
        kind = "scheme"
    elif redirect_uris.is_loopback(redirect_uri):
        kind = "loopback"
    else:
        kind = "web"
    ascii_host = origin.split("://", 1)[-1]
    return {
        "redirect_kind": kind,
        "redirect_host": parts.netloc or f"{parts.scheme}:",
        "redirect_scheme": parts.scheme.lower(),
        "redirect_ascii": ascii_host if kind == "web" and ascii_host != parts.netloc else "",
    }


def _described(req: authorize.AuthorizationRequest) -> list[ScopeInfo]:
    """The requested scopes with the plain-language words the resource gave them."""
    known = {s.name: s for s in req.resource.scopes}
    return [known.get(name, ScopeInfo(name, "")) for name in scopes.parse_scope(req.scope)]


async def _validate(request: Request, ctx: Context) -> authorize.AuthorizationRequest:
    """``authorize.validate``; apart (web/threads.py) when it names a new metadata document."""
    params = _params(request)
    if client_metadata.names_new_document(ctx, params.get("client_id")):
        actor = deps.actor_of(request)
        return await threads.run_apart(request, authorize.validate, ctx, params, actor)
    return await run_in_threadpool(authorize.validate, ctx, params, deps.actor_of(request))


def _tracing(request: Request) -> contextlib.AbstractContextManager[object]:
    """This request's steps, in the flow of the authorization request its query describes."""
    flow_id = flows.authorization_flow(request, request.query_params.multi_items())
    client_id = (request.query_params.get("client_id") or "")[:256] or None
    return flows.tracing(request, flow_id=flow_id, client_id=client_id)


def _accepted(request: Request, req: authorize.AuthorizationRequest, who: SignedIn | None) -> None:
    """The flow steps of a valid authorization request: who and what it is about, and the
    scope narrowed if it was (not a refusal, but often why a client later fails)."""
    core_flows.note(
        client_id=req.app.id,
        user_id=who.user.id if who else None,
        resource=req.resource.identifier,
    )
    requested = request.query_params.get("scope")
    core_flows.step("authorize", scope=req.scope, prompt=" ".join(req.prompt))
    if requested is not None and set(scopes.parse_scope(requested)) != set(
        scopes.parse_scope(req.scope)
    ):
        core_flows.step(
            "authorize", "narrowed", "scope_narrowed", requested=requested[:512], granted=req.scope
        )


async def authorize_get(request: Request) -> Response:
    with _tracing(request):
        return await _authorize_get(request)


async def _authorize_get(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    who = await run_in_threadpool(deps.signed_in, request)
    note(request, user_id=who.user.id if who else None)
    try:
        req = await _validate(request, ctx)
    except (OAuthError, authorize.AuthorizationRedirect) as exc:
        return await _error(request, exc, who)
    note(request, client_id=req.app.id)
    _accepted(request, req, who)
    sign_in = await _needs_sign_in(request, req, who)
    if sign_in is not None or who is None:
        return sign_in or _login_redirect(request)
    skip = await run_in_threadpool(consent.skip_reason, ctx, req, who.user)
    if skip is not None:
        core_flows.step("consent", decided_by=skip)
        url = await run_in_threadpool(
            consent.decide, ctx, deps.actor_for_user(request, who.user.id), req, who,
            allow=True, skipped=skip,
        )  # fmt: skip
        return RedirectResponse(url, status_code=302)
    if "none" in req.prompt:
        error = authorize.ConsentRequiredError("The user has not consented to this request")
        return await _error(request, authorize.prompt_error(req, error), who)
    context = {
        "app": req.app,
        "user": who.user,
        "scopes": _described(req),
        "resource": req.resource,
        **_redirect_context(req.redirect_uri),
        "identity": await run_in_threadpool(client_identity.identity, ctx, req.app),
        "csrf_token": consent.csrf_token(ctx, who.session.id),
        "action": request.url.path + "?" + request.url.query,
        # "Not you? Switch account" signs out and comes back to this request, without the
        # prompt=login marker (the new person's sign-in is fresh anyway).
        "switch_return_to": _without_marker(request),
    }
    return render(
        request,
        "consent.html",
        context,
        form_action=_form_action_source(req.redirect_uri),
    )


async def authorize_post(request: Request) -> Response:
    with _tracing(request):
        return await _authorize_post(request)


async def _authorize_post(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    who = await run_in_threadpool(deps.signed_in, request)
    try:
        req = await _validate(request, ctx)
    except (OAuthError, authorize.AuthorizationRedirect) as exc:
        return await _error(request, exc, who)
    note(request, client_id=req.app.id)
    if who is None:
        return _login_redirect(request)
    note(request, user_id=who.user.id)
    core_flows.note(client_id=req.app.id, user_id=who.user.id, resource=req.resource.identifier)
    form = await request.form()
    token = form.get("csrf_token")
    decision = form.get("decision")
    if not consent.check_csrf(ctx, who.session.id, token if isinstance(token, str) else None):
        # No code, no redirect: a forged consent must change nothing.
        failure = AccessDeniedError("The consent form expired or was not sent by this site")
        core_flows.step("consent", "refused", "consent_form_invalid")
        return errors.error_page(request, failure, status=403)
    if decision not in ("allow", "deny"):
        core_flows.step("consent", "refused", "consent_form_invalid")
        return errors.error_page(request, InvalidRequestError("Choose Allow or Deny"))
    if decision == "deny":
        core_flows.step("consent", "refused", "user_denied")
    else:
        core_flows.step("consent", decided_by="user")
    url = await run_in_threadpool(
        consent.decide, ctx, deps.actor_for_user(request, who.user.id), req, who,
        allow=decision == "allow",
    )  # fmt: skip
    return RedirectResponse(url, status_code=302)
