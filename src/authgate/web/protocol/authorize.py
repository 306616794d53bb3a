"""GET/POST /oauth2/authorize: validate, sign in if needed, show consent, act on the decision.

The consent form posts back to the same URL (query kept) with a CSRF token bound to the
session; the decision never depends on Referer or Origin.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authgate.core import authorize, consent, registration, scopes
from authgate.core.context import Context
from authgate.core.errors import AccessDeniedError, InvalidRequestError, OAuthError
from authgate.core.models import App, ScopeInfo
from authgate.core.params import Params
from authgate.web import deps, errors
from authgate.web.templating import render


def _params(request: Request) -> Params:
    return Params.from_pairs(request.query_params.multi_items())


def _login_redirect(request: Request) -> Response:
    target = request.url.path + ("?" + request.url.query if request.url.query else "")
    return RedirectResponse(f"/login?return_to={quote(target, safe='')}", status_code=302)


def _form_action_source(redirect_uri: str) -> str:
    """CSP form-action must allow the redirect that follows the consent POST."""
    parts = urlsplit(redirect_uri)
    if parts.scheme in ("http", "https"):
        return f"'self' {parts.scheme}://{parts.netloc}"
    return f"'self' {parts.scheme}:"


def _identity(ctx: Context, app: App) -> dict[str, str]:
    """How far authgate can vouch for who the client is (shown on the consent page)."""
    if app.metadata_document:
        return {"kind": "verified", "host": urlsplit(app.id).netloc}
    if app.dynamically_registered:
        kind = "impersonating" if registration.name_collides(ctx, app) else "unverified"
        return {"kind": kind, "host": ""}
    return {"kind": "operator", "host": ""}


def _described(req: authorize.AuthorizationRequest) -> list[ScopeInfo]:
    """The requested scopes with the plain-language words the resource gave them."""
    known = {s.name: s for s in req.resource.scopes}
    return [known.get(name, ScopeInfo(name, "")) for name in scopes.parse_scope(req.scope)]


async def authorize_get(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    who = await run_in_threadpool(deps.signed_in, request)
    try:
        req = await run_in_threadpool(authorize.validate, ctx, _params(request))
    except (OAuthError, authorize.AuthorizationRedirect) as exc:
        return errors.authorize_error(request, exc, signed_in=who is not None)
    if who is None:
        return _login_redirect(request)
    redirect = urlsplit(req.redirect_uri)
    context = {
        "app": req.app,
        "user": who.user,
        "scopes": _described(req),
        "resource": req.resource,
        "redirect_host": redirect.netloc or f"{redirect.scheme}:",
        "redirect_scheme": redirect.scheme,
        "identity": await run_in_threadpool(_identity, ctx, req.app),
        "csrf_token": consent.csrf_token(ctx, who.session.id),
        "action": request.url.path + "?" + request.url.query,
    }
    return render(
        request,
        "consent.html",
        context,
        form_action=_form_action_source(req.redirect_uri),
    )


async def authorize_post(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    try:
        req = await run_in_threadpool(authorize.validate, ctx, _params(request))
    except (OAuthError, authorize.AuthorizationRedirect) as exc:
        return errors.authorize_error(request, exc)
    who = await run_in_threadpool(deps.signed_in, request)
    if who is None:
        return _login_redirect(request)
    form = await request.form()
    token = form.get("csrf_token")
    decision = form.get("decision")
    if not consent.check_csrf(ctx, who.session.id, token if isinstance(token, str) else None):
        # No code, no redirect: a forged consent must change nothing.
        failure = AccessDeniedError("The consent form expired or was not sent by this site")
        return errors.error_page(request, failure, status=403)
    if decision not in ("allow", "deny"):
        return errors.error_page(request, InvalidRequestError("Choose Allow or Deny"))
    url = await run_in_threadpool(
        consent.decide, ctx, deps.actor_for_user(request, who.user.id), req, who,
        allow=decision == "allow",
    )  # fmt: skip
    return RedirectResponse(url, status_code=302)
