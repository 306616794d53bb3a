"""GET and POST /oauth2/userinfo (OpenID Connect Core 1.0 §5.3, RFC 6750 §2-3).

The token comes in the ``Authorization: Bearer`` header, or for POST in the form body
(``access_token``, RFC 6750 §2.2); never in the URL, where logs keep it, and never in two
places at once (RFC 6750 §2: "Clients MUST NOT use more than one method"). Errors answer with
``WWW-Authenticate: Bearer`` (RFC 6750 §3) and a JSON body; the rule is ``core/userinfo.py``.
Each refusal is a step of the flow timeline (core/flows.py); an answer is not.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate.core import flow_log, userinfo
from authgate.core import flows as core_flows
from authgate.core.errors import InvalidRequestError, OAuthError
from authgate.web import deps, errors, flows, threads
from authgate.web.protocol.forms import read_form


async def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if "access_token" in request.query_params:
        raise InvalidRequestError("The access token must not be sent in the URL")
    from_header: str | None = None
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise InvalidRequestError("The Authorization header must be `Bearer <token>`")
        from_header = value.strip()
    if request.method != "POST":
        return from_header
    has_form = request.headers.get("content-type") is not None
    from_body = (await read_form(request)).get("access_token") if has_form else None
    if from_header is not None and from_body is not None:
        raise InvalidRequestError("Send the access token in one place only")
    return from_header or from_body


async def userinfo_endpoint(request: Request) -> Response:
    presented: str | None = None
    try:
        presented = await _presented(request)
        if presented is None:
            await _record_refusal(request, None, None)
            return errors.bearer_error(request, None)
        ctx = deps.ctx_of(request)
        body = await threads.run(request, userinfo.claims, ctx, presented)
    except OAuthError as exc:
        await _record_refusal(request, exc, presented)
        return errors.bearer_error(request, exc)
    return JSONResponse(body, headers=errors.NO_STORE)


async def _record_refusal(request: Request, exc: OAuthError | None, presented: str | None) -> None:
    """A refusal is a step of the flow of the token's grant when the token is one authgate
    issued (read again only for a refusal, so an answer that succeeds pays nothing), else of
    a flow of its own; ``exc`` None: no token was sent."""
    # Bounded even when tied: nothing rate-limits UserInfo, and a client polling it with a
    # dead token would write a step per call into the grant's flow.
    with flows.tracing(request, bounded=True) as trace:
        if trace is None:
            return
        if exc is None:
            core_flows.step("userinfo", "refused", "token_missing")
            return
        if presented is not None:
            await threads.run(request, flow_log.tie_refused_bearer, deps.ctx_of(request), presented)
        flows.refused("userinfo", exc)
