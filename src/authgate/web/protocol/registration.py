"""POST /oauth2/register (RFC 7591) and GET/PUT/DELETE /oauth2/clients/{client_id} (RFC 7592):
read the JSON body and the bearer token, call one core function, render JSON.

Tokens travel only in the ``Authorization`` header: one in the query string is refused
(DESIGN.md §7), as URLs end up in logs and Referer headers.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from authgate.core import client_configuration as configuration
from authgate.core import flows as core_flows
from authgate.core import registration
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import Context
from authgate.core.errors import (
    InvalidClientMetadataError,
    InvalidRequestError,
    InvalidTokenError,
    OAuthError,
)
from authgate.core.models import RegistrationSettings
from authgate.core.rate_limits import RateLimitedError
from authgate.web import deps, errors, flows
from authgate.web.cors import CORS_HEADERS, PREFLIGHT_HEADERS

MAX_BODY = 64 * 1024
JSON_TYPES = ("application/json",)
CONFIGURATION_PREFLIGHT = {
    **PREFLIGHT_HEADERS,
    "Access-Control-Allow-Methods": "GET, PUT, DELETE, OPTIONS",
}


def registration_settings(conn: HTTPConnection) -> RegistrationSettings:
    return runtime_settings.current(deps.ctx_of(conn))


def rate_limits(conn: HTTPConnection) -> registration.RateLimits:
    settings = deps.settings_of(conn)
    return registration.RateLimits(
        per_ip=settings.registration_rate_per_ip, overall=settings.registration_rate_global
    )


def _error(exc: OAuthError) -> Response:
    response = errors.oauth_json(exc)
    if isinstance(exc, InvalidTokenError):
        # RFC 6750 §3: a request without valid bearer credentials says how to authenticate.
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if isinstance(exc, RateLimitedError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _no_query_token(request: Request) -> None:
    if "access_token" in request.query_params:
        raise InvalidRequestError("Send the token in the Authorization header, not in the URL")


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate member")
    return dict(pairs)


def _parse_json(content_type: str, raw: bytes) -> dict[str, Any]:
    if content_type.split(";")[0].strip().lower() not in JSON_TYPES:
        raise InvalidClientMetadataError("The request body must be application/json")
    if len(raw) > MAX_BODY:
        raise InvalidClientMetadataError(f"The request body must be at most {MAX_BODY} bytes")
    if b"\x00" in raw or b"\\u0000" in raw:
        # No metadata value may hold a NUL (PostgreSQL refuses it in text and JSON).
        raise InvalidClientMetadataError("The request body must not contain NUL characters")
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: deeply nested arrays or objects ("[[[[…"), which fit in MAX_BODY.
        raise InvalidClientMetadataError("The request body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidClientMetadataError("The request body must be a JSON object")
    return value


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=errors.NO_STORE)


def _register(ctx: Context, request: Request, raw: bytes) -> registration.Registration:
    content_type = request.headers.get("content-type", "")
    return registration.register(
        ctx,
        deps.actor_of(request),
        lambda: _parse_json(content_type, raw),
        settings=registration_settings(request),
        limits=rate_limits(request),
        initial_access_token=_bearer(request),
    )


async def register(request: Request) -> Response:
    """RFC 7591 §3.1; 201 with the client information (§3.2.1). A flow step either way: a
    registration starts the new client's first flow; a refusal, before any client exists,
    one of its own (flood-bounded, web/flow_writer.py)."""
    with flows.tracing(request):
        return await _register_request(request)


async def _register_request(request: Request) -> Response:
    ctx = deps.ctx_of(request)
    try:
        _no_query_token(request)
        raw = await request.body()
        registered = await run_in_threadpool(_register, ctx, request, raw)
    except OAuthError as exc:
        flows.refused("registration", exc)
        return _error(exc)
    app = registered.app
    core_flows.note(client_id=app.id)
    core_flows.step(
        "registration",
        token_endpoint_auth_method=app.token_endpoint_auth_method,
        grant_types=list(app.grant_types),
        initial_access_token=_bearer(request) is not None,
    )
    return _json(registration.registration_response(ctx, registered), 201)


def _configure(ctx: Context, request: Request, token: str, raw: bytes) -> dict[str, Any] | None:
    app = configuration.authenticate(ctx, request.path_params["client_id"], token)
    actor = deps.actor_of(request)
    if request.method == "DELETE":
        configuration.delete_client(ctx, actor, app)
        return None
    if request.method == "PUT":
        body = _parse_json(request.headers.get("content-type", ""), raw)
        app = configuration.update_client(ctx, actor, app, body, registration_settings(request))
    return configuration.client_information(ctx, app)


async def client_configuration(request: Request) -> Response:
    """RFC 7592 §2: read, update or delete a dynamically registered client. Works while
    registration is switched off: clients already registered keep managing themselves."""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=CONFIGURATION_PREFLIGHT)
    ctx = deps.ctx_of(request)
    try:
        _no_query_token(request)
        token = _bearer(request)
        if token is None:
            raise InvalidTokenError("A registration access token is required")
        raw = await request.body() if request.method == "PUT" else b""
        info = await run_in_threadpool(_configure, ctx, request, token, raw)
    except OAuthError as exc:
        response = _error(exc)
    else:
        response = Response(status_code=204) if info is None else _json(info)
    response.headers.update(CORS_HEADERS)
    return response
