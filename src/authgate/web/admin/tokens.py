"""Management API for personal API tokens (``/users/me/tokens``).

Only a caller who signed in (browser session) or holds an API token may manage API tokens: an
OAuth access token was delegated to a client, and a client must not turn a revocable,
scoped grant into a long-lived credential of the user.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from authgate.core import accounts
from authgate.schemas import ApiTokenCreate, ApiTokenCreated, ApiTokenOut
from authgate.web.admin.auth import AccountHolder as Owner
from authgate.web.admin.auth import Ctx, actor, no_store

router = APIRouter(prefix="/users/me/tokens", tags=["tokens"])


@router.get("", response_model=list[ApiTokenOut])
def list_tokens(ctx: Ctx, who: Owner) -> list[ApiTokenOut]:
    return [ApiTokenOut.of(token) for token in ctx.store.list_api_tokens(who.user.id)]


@router.post("", status_code=201, response_model=ApiTokenCreated)
def create_token(
    ctx: Ctx, who: Owner, request: Request, response: Response, body: ApiTokenCreate
) -> ApiTokenCreated:
    lifetime = timedelta(seconds=body.lifetime_seconds) if body.lifetime_seconds else None
    token, value = accounts.create_api_token(
        ctx, actor(request, who), who.user, body.name, lifetime
    )
    no_store(response)
    return ApiTokenCreated.of(token, value)


@router.delete("/{token_id}", status_code=204, response_class=Response)
def delete_token(ctx: Ctx, who: Owner, request: Request, token_id: str) -> None:
    accounts.delete_api_token(ctx, actor(request, who), who.user, token_id)
