"""The one place that turns errors into HTTP (DESIGN.md §3).

OAuth errors become RFC 6749 §5.2 JSON with ``Cache-Control: no-store``; authorization-endpoint
errors become a redirect (only to a verified redirect_uri) or an HTML page; management errors
become RFC 9457 ``application/problem+json``; anything unexpected is a bare 500 whose details
go to the log under the request id.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from authgate.core.authorize import AuthorizationRedirect, error_redirect_url
from authgate.core.errors import (
    Forbidden,
    InsufficientScopeError,
    InvalidClientError,
    InvalidRequestError,
    ManagementError,
    OAuthError,
    ServerError,
    TemporarilyUnavailableError,
    Unauthenticated,
    ValidationFailed,
)
from authgate.core.ports import StoreUnavailableError
from authgate.core.rate_limits import RateLimitedError
from authgate.resource_server.challenge import bearer_challenge
from authgate.web import deps, explanations, health
from authgate.web.templating import render

log = logging.getLogger("authgate.errors")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Seconds a client should wait after a 503 (the database is unavailable).
UNAVAILABLE_RETRY_AFTER = 5


def oauth_json(exc: OAuthError) -> JSONResponse:
    if exc.debug:
        log.info("oauth error %s: %s (%s)", exc.error, exc.description, exc.debug)
    headers = dict(NO_STORE)
    if isinstance(exc, InvalidClientError) and exc.basic:
        headers["WWW-Authenticate"] = 'Basic realm="authgate", charset="UTF-8"'
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)  # RFC 6585 §4
    body = {"error": exc.error, "error_description": exc.description}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def bearer_error(request: Request, exc: OAuthError | None) -> Response:
    """An error of a protected resource of authgate's own (RFC 6750 §3): 401 without an error
    code when no token was sent ("the resource server SHOULD NOT include an error code or
    other error information"), else the error's status and JSON body, with the challenge that
    names it (``insufficient_scope`` names the scope needed: ``openid``, at UserInfo)."""
    realm = deps.ctx_of(request).policy.issuer
    if exc is None:
        challenge = f'Bearer realm="{realm}"'
        return Response(status_code=401, headers={**NO_STORE, "WWW-Authenticate": challenge})
    if exc.debug:
        log.info("bearer error %s: %s (%s)", exc.error, exc.description, exc.debug)
    scopes = ("openid",) if isinstance(exc, InsufficientScopeError) else ()
    challenge = bearer_challenge(error=exc.error, description=exc.description, scopes=scopes)
    challenge = challenge.replace("Bearer ", f'Bearer realm="{realm}", ', 1)
    body = {"error": exc.error, "error_description": exc.description}
    headers = {**NO_STORE, "WWW-Authenticate": challenge}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def error_page(
    request: Request,
    exc: OAuthError,
    *,
    status: int | None = None,
    back: tuple[str, str] = ("/", "Go to the start page"),
) -> Response:
    """An HTML page for a person: plain words on what went wrong and what to do, a link
    ``back`` (URL, label), the reference to give the operator; the RFC error and its
    client-safe description under "details" (``debug`` is logged, never shown)."""
    if exc.debug:
        log.info("page error %s: %s (%s)", exc.error, exc.description, exc.debug)
    status = status or exc.status_code
    context = {
        "error": exc.error,
        "description": exc.description,
        "status": status,
        "explanation": explanations.explain(exc),
        "reference": explanations.reference(request.scope.get("state", {}).get("request_id")),
        "back_url": back[0],
        "back_label": back[1],
    }
    return render(request, "error.html", context, status=status)


def authorize_error(request: Request, exc: Exception, *, redirect: bool) -> Response:
    """Authorization endpoint: redirect only to a verified redirect_uri, and only when
    ``redirect`` (``core.authorize.may_redirect``) says so; else show a page."""
    if isinstance(exc, AuthorizationRedirect) and not redirect:
        return error_page(request, exc.error, status=400 if exc.error.status_code < 500 else None)
    if isinstance(exc, AuthorizationRedirect):
        issuer = deps.ctx_of(request).policy.issuer
        return RedirectResponse(error_redirect_url(exc, issuer), status_code=302)
    if isinstance(exc, RateLimitedError):
        response = error_page(request, exc, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)  # RFC 6585 §4
        return response
    if isinstance(exc, OAuthError):
        return error_page(request, exc, status=400 if exc.status_code < 500 else exc.status_code)
    raise exc


def problem(exc: ManagementError, request: Request) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
    }
    if exc.validations:
        body["validations"] = exc.validations
    headers: dict[str, str] = {}
    issuer = deps.ctx_of(request).policy.issuer.rstrip("/")
    metadata = f'resource_metadata="{issuer}/.well-known/oauth-protected-resource"'
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = f"Bearer {metadata}"
    elif isinstance(exc, Forbidden) and exc.insufficient_scope and _oauth_bearer(request):
        # RFC 6750 §3.1: the token is fine but lacks the scope this call needs.
        headers["WWW-Authenticate"] = (
            f'Bearer error="insufficient_scope", scope="{deps.ADMIN_SCOPE}", {metadata}'
        )
    return JSONResponse(
        body, status_code=exc.status, headers=headers, media_type="application/problem+json"
    )


def _oauth_bearer(request: Request) -> bool:
    """Whether the caller used an OAuth access token (not a personal API token)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and not value.strip().startswith("agpat_")


async def _management_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ManagementError)
    return problem(exc, request)


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    validations = {
        ".".join(str(p) for p in err.get("loc", ())[1:]) or "body": str(err.get("msg", "invalid"))
        for err in exc.errors()
    }
    return problem(
        ValidationFailed("The request body is invalid", validations=validations), request
    )


async def _oauth_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    if request.url.path.startswith("/api/"):
        error = Unauthenticated(exc.description) if exc.status_code == 401 else None
        if error is not None:
            return problem(error, request)
    return oauth_json(exc)


async def _unavailable_handler(request: Request, exc: Exception) -> Response:
    """The database failed: 503 with ``Retry-After`` (RFC 9110 §10.2.3) in the shape of the
    surface that was called: OAuth JSON, problem+json for ``/api/``, a page for a person."""
    log.warning("database unavailable (request %s): %s", deps.request_id(request), exc)
    health.storage_failed(request)
    error = TemporarilyUnavailableError("The service is temporarily unavailable")
    retry = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
    path = request.url.path
    if path.startswith("/api/"):
        body = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": error.description,
        }
        headers = {**NO_STORE, **retry}
        return JSONResponse(
            body, status_code=503, headers=headers, media_type="application/problem+json"
        )
    if not _is_page(path):
        response: Response = oauth_json(error)
    else:
        response = error_page(request, error)
    response.headers.update(retry)
    return response


_MACHINE_PATHS = ("/api/", "/healthz", "/readyz", "/metrics", "/static/")


def _is_page(path: str) -> bool:
    """Whether a person's browser asked for ``path`` (so an error is a page): not the
    management API (its reference page aside), not an OAuth or discovery endpoint other than
    the authorization one, not an operations endpoint or a static file."""
    if path == "/api/v2/docs":
        return True
    if path.startswith(_MACHINE_PATHS) or path == "/branding.css":
        return False
    return not path.startswith(("/oauth2/", "/.well-known/")) or path == "/oauth2/authorize"


def unexpected(request_id: str, exc: Exception, request: Request | None = None) -> Response:
    """An unexpected exception: logged in full under the request id, answered with no detail —
    as RFC 6749 JSON, or for a person's browser (``request`` on a page path) as the error page
    with the reference to quote."""
    log.error("unexpected error (request %s)", request_id, exc_info=exc)
    error = ServerError("The server encountered an unexpected error")
    if request is not None and _is_page(request.url.path):
        try:
            return error_page(request, error)
        except Exception:  # the page itself failed: the bare answer still goes out
            log.exception("error page failed (request %s)", request_id)
    return oauth_json(error)


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    return unexpected(deps.request_id(request), exc, request)


async def _http_handler(request: Request, exc: Exception) -> Response:
    """The framework's own errors (a body that is not JSON, a form that cannot be read, an
    unknown path, a wrong method): problem+json under ``/api/`` like every management error, the
    error page for a form a page could not read, FastAPI's default otherwise."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api/"):
        if exc.status_code == 400:  # only pages read forms with the framework (request.form())
            return error_page(request, InvalidRequestError("The form could not be read"))
        return await http_exception_handler(request, exc)
    body = {
        "type": "about:blank",
        "title": HTTPStatus(exc.status_code).phrase,
        "status": exc.status_code,
        "detail": str(exc.detail),
    }
    return JSONResponse(
        body,
        status_code=exc.status_code,
        headers=exc.headers,
        media_type="application/problem+json",
    )


EXCEPTION_HANDLERS = {
    ManagementError: _management_handler,
    RequestValidationError: _validation_handler,
    OAuthError: _oauth_handler,
    StoreUnavailableError: _unavailable_handler,
    HTTPException: _http_handler,
    Exception: _unexpected_handler,
}
