"""Sign-in through an upstream OpenID Provider: the button's POST starts it, the provider's
redirect finishes it (``core/upstream/sign_in.py``). Errors are pages with a reference, never
a 500; only a local path is ever the return target. ``jwks`` publishes authgate's
``private_key_jwt`` key for one provider, to be given to that provider as a JWKS URL.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from authgate.core.errors import OAuthError
from authgate.core.upstream import client_assertion, providers, sign_in
from authgate.core.upstream.transactions import TTL
from authgate.crypto.secrets import constant_time_equal
from authgate.web import cookies, deps, flows
from authgate.web.errors import error_page
from authgate.web.middleware import note
from authgate.web.pages.login import safe_return_to

#: Refused at once: the provider's redirect carries a few short parameters.
MAX_QUERY = 8192
#: A provider reads the JWKS again when it meets an unknown ``kid``; a rotation shows within
#: five minutes even to one that does not.
JWKS_CACHE = "public, max-age=300"


def _back(return_to: str) -> tuple[str, str]:
    target = "/login" if return_to == "/" else f"/login?return_to={quote(return_to, safe='')}"
    return target, "Back to sign-in"


async def start(request: Request) -> Response:
    """POST /login/upstream/{provider}: the sign-in page's button (its CSRF token checked)."""
    form = await request.form()
    return_to = safe_return_to(str(form.get("return_to") or ""))
    settings = deps.settings_of(request)
    cookie = cookies.read(request, settings, cookies.LOGIN_CSRF) or ""
    sent = str(form.get("csrf_token") or "")
    if not cookie or not constant_time_equal(cookie, sent):
        # The form expired: the sign-in page again, with a fresh one.
        return RedirectResponse(_back(return_to)[0], status_code=303)
    provider_id = request.path_params["provider"]
    ctx, actor = deps.ctx_of(request), deps.actor_of(request)
    # A sign-in on the way of an authorization request is a step of its flow (as the form's).
    with flows.tracing(
        request, flow_id=flows.flow_of_return_to(request, return_to), tied_only=True
    ):
        try:
            started = await run_in_threadpool(sign_in.begin, ctx, actor, provider_id, return_to)
        except OAuthError as exc:
            return error_page(request, exc, back=_back(return_to))
    response = RedirectResponse(started.url, status_code=303)
    ttl = int(TTL.total_seconds())
    cookies.put(response, settings, cookies.UPSTREAM_STATE, started.state, max_age=ttl)
    return response


async def callback(request: Request) -> Response:
    """GET /login/upstream/{provider}/callback: the provider's authorization response."""
    settings = deps.settings_of(request)
    browser_state = cookies.read(request, settings, cookies.UPSTREAM_STATE)
    params = {k: v for k, v in request.query_params.items() if len(v) <= MAX_QUERY}
    provider_id = request.path_params["provider"]
    ctx, actor = deps.ctx_of(request), deps.actor_of(request)
    # Tied to the authorization the transaction returns to, once it is known (callback.py).
    with flows.tracing(request, tied_only=True):
        try:
            done = await run_in_threadpool(
                sign_in.finish, ctx, actor, provider_id, params, browser_state
            )
        except OAuthError as exc:
            response = error_page(request, exc, back=_back("/"))
            cookies.clear(response, settings, cookies.UPSTREAM_STATE)
            return response
    note(request, user_id=done.user.id)
    response = RedirectResponse(safe_return_to(done.return_to), status_code=303)
    cookies.put(
        response, settings, cookies.SESSION, done.cookie, max_age=settings.session_ttl_seconds
    )
    cookies.clear(response, settings, cookies.UPSTREAM_STATE)
    cookies.clear(response, settings, cookies.LOGIN_CSRF)
    return response


async def jwks(request: Request) -> Response:
    """GET /login/upstream/{provider}/jwks: the public key of authgate's client assertions to
    this provider (RFC 7517 §5); 404 when the provider does not use ``private_key_jwt``."""
    found = await run_in_threadpool(
        providers.find, deps.ctx_of(request), request.path_params["provider"]
    )
    document = client_assertion.published_jwks(found) if found is not None else None
    if document is None:
        return JSONResponse(
            {"error": "not_found", "error_description": "No such key set"},
            status_code=404,
            headers={"Cache-Control": "no-store"},
        )
    return JSONResponse(document, headers={"Cache-Control": JWKS_CACHE})
