"""FastAPI dependencies of the management API: the core context and who is calling.

They wrap ``authgate.web.deps`` (which does the authentication) and declare the two ways to
authenticate as OpenAPI security schemes, so the published document says how to call the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from authgate.core.context import Actor, Context
from authgate.web import deps
from authgate.web.deps import Principal

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A personal API token (`agpat_…`) or an OAuth access token for authgate's API",
)
_session = APIKeyCookie(
    name=deps.SESSION_COOKIE,
    auto_error=False,
    scheme_name="session",
    description="The browser session of a signed-in user (`__Host-authgate_session` when the "
    "issuer is https)",
)

# Declared for OpenAPI only; web.deps reads the request itself.
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
SessionCookie = Annotated[str | None, Depends(_session)]


def _authenticated(request: Request, _bearer: Bearer, _session: SessionCookie) -> Principal:
    return deps.principal(request)


def _account_holder(request: Request, _bearer: Bearer, _session: SessionCookie) -> Principal:
    return deps.account_holder(request)


def _administrator(request: Request, _bearer: Bearer, _session: SessionCookie) -> Principal:
    return deps.admin(request)


def _context(request: Request) -> Context:
    return deps.ctx_of(request)


CurrentPrincipal = Annotated[Principal, Depends(_authenticated)]
# The user's browser session or personal API token: never an app's OAuth access token.
AccountHolder = Annotated[Principal, Depends(_account_holder)]
Admin = Annotated[Principal, Depends(_administrator)]
Ctx = Annotated[Context, Depends(_context)]


def actor(request: Request, who: Principal) -> Actor:
    """The audit actor for a call made by ``who``."""
    return deps.actor_for(request, who)


def no_store(response: Response) -> None:
    """Mark a response that carries a one-time secret as never to be cached (RFC 9111 §5.2.2.5)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
