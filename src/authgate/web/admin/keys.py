"""Management API for the JWS signing keys: list them (public halves only) and rotate.

Rotation is ``core.keys.rotate``; this node's key cache is then dropped so it signs with the
new key at once (other nodes follow within ``policy.cache_ttl``; the old key stays published
while it is retiring, so their tokens still verify).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from authgate.core import keys
from authgate.schemas import SigningKeyOut
from authgate.web.admin.auth import Admin, Ctx, actor

router = APIRouter(prefix="/keys", tags=["keys"])


@router.get("", response_model=list[SigningKeyOut])
def list_keys(ctx: Ctx, who: Admin) -> list[SigningKeyOut]:
    """The published keys (next, active, retiring), oldest first, as the JWKS has them."""
    keys.current_keys(ctx)  # like a JWKS fetch: creates the keys on a new database
    published = keys.published(list(ctx.store.list_signing_keys()), ctx.clock.now())
    return [SigningKeyOut.of(key) for key in published]


@router.post("/rotate", response_model=SigningKeyOut)
def rotate_keys(ctx: Ctx, who: Admin, request: Request) -> SigningKeyOut:
    """Promote the next key to active now, retire the active one, publish a new next key."""
    rotated = keys.rotate(ctx, actor(request, who))
    ctx.caches.keyring.invalidate()
    return SigningKeyOut.of(rotated)
