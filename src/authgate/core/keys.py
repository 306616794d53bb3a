"""Signing keys: creation, encryption at rest, rotation with overlap, and the JWKS (RFC 7517).

A key is published as *next* before it signs, signs while *active*, and stays published while
*retiring* until every token it signed has expired. Nodes cache keys for ``policy.cache_ttl``;
since a retiring key stays published, a node still signing with it for that long is harmless.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from authgate.core import audit
from authgate.core.context import SYSTEM, Actor, Context
from authgate.core.models import SigningAlg, SigningKey
from authgate.crypto import encryption, jose

# Tokens may be checked with this much clock skew; a retired key outlives its tokens by it.
LEEWAY = timedelta(minutes=5)
PURPOSE = "authgate signing keys v1"


def _encryption_key(ctx: Context) -> bytes:
    return encryption.derive_key(ctx.secret_key, PURPOSE)


def new_key(ctx: Context, alg: str) -> SigningKey:
    """Generate and store a *next* key (published, not yet signing)."""
    key = jose.generate_key(alg)
    kid = str(key.kid)
    sealed = encryption.encrypt(_encryption_key(ctx), jose.private_pem(key), kid.encode())
    signing_alg: SigningAlg = alg  # type: ignore[assignment]
    stored = SigningKey(
        kid=kid,
        alg=signing_alg,
        public_jwk=jose.public_jwk(key),
        private_key=sealed,
        created_at=ctx.clock.now(),
    )
    ctx.store.create_signing_key(stored)
    return stored


def published(keys: list[SigningKey], now: datetime) -> list[SigningKey]:
    return [k for k in keys if k.expires_at is None or k.expires_at > now]


def active(keys: list[SigningKey]) -> SigningKey | None:
    live = [k for k in keys if k.activated_at is not None and k.retired_at is None]
    return max(live, key=lambda k: k.activated_at or k.created_at, default=None)


def upcoming(keys: list[SigningKey]) -> SigningKey | None:
    pending = [k for k in keys if k.activated_at is None and k.retired_at is None]
    return min(pending, key=lambda k: (k.created_at, k.kid), default=None)


def _new_next_key(ctx: Context) -> SigningKey:
    """A new next key, unless another node made one at the same time: nodes that start
    together on an empty database (or rotate together) each create one, and a surplus next
    key would stay published and keep the following rotation from publishing a fresh one.
    The oldest next key (by creation time, then kid) stays; a node whose key is not that one
    deletes its own (never activated, so nothing was signed with it) and uses the other."""
    mine = new_key(ctx, ctx.policy.signing_alg)
    oldest = upcoming(list(ctx.store.list_signing_keys()))
    if oldest is None or oldest.kid == mine.kid:
        return mine
    ctx.store.delete_next_signing_key(mine.kid)
    return oldest


def max_token_ttl(ctx: Context) -> timedelta:
    """The longest access-token lifetime any resource uses: how long a retired key must stay."""
    ttls = [
        timedelta(seconds=r.access_token_ttl)
        for r in ctx.store.list_resources()
        if r.access_token_ttl
    ]
    return max([ctx.policy.access_token_ttl, *ttls])


def rotate(ctx: Context, actor: Actor) -> SigningKey:
    """Promote the next key (creating one if none is published), retire the active one until
    its tokens have expired, and publish a fresh next key."""
    now = ctx.clock.now()
    keys = list(ctx.store.list_signing_keys())
    previous = active(keys)
    candidate = upcoming(keys) or _new_next_key(ctx)
    retire_until = now + max_token_ttl(ctx) + LEEWAY
    if not ctx.store.activate_signing_key(candidate.kid, now, retire_until):
        # Another node rotated first: its result stands.
        current = active(list(ctx.store.list_signing_keys()))
        assert current is not None
        return current
    if upcoming(list(ctx.store.list_signing_keys())) is None:
        _new_next_key(ctx)
    removed = ctx.store.delete_expired_signing_keys(now)
    audit.record(
        ctx,
        actor,
        "signing_key.rotated",
        target_type="signing_key",
        target_id=candidate.kid,
        previous=previous.kid if previous else None,
        alg=candidate.alg,
        removed=removed,
    )
    return next(k for k in ctx.store.list_signing_keys() if k.kid == candidate.kid)


def _due(ctx: Context, keys: list[SigningKey], now: datetime) -> bool:
    interval = ctx.policy.key_rotation_interval
    current, pending = active(keys), upcoming(keys)
    if current is None:
        return True
    if not interval or current.activated_at is None:
        return False
    ready = pending is not None and pending.created_at + ctx.policy.key_prepublish <= now
    return current.activated_at + interval <= now and ready


def _refreshed(ctx: Context) -> list[SigningKey]:
    now = ctx.clock.now()
    keys = list(ctx.store.list_signing_keys())
    if _due(ctx, keys, now):
        rotate(ctx, SYSTEM)
        keys = list(ctx.store.list_signing_keys())
    if upcoming(keys) is None:
        _new_next_key(ctx)
        keys = list(ctx.store.list_signing_keys())
    return keys


def current_keys(ctx: Context) -> list[SigningKey]:
    """Every stored key as this node knows them (``caches.Keyring``, trusted for
    ``policy.cache_ttl``); a refresh rotates when due and makes sure a next key is published,
    so the first call on a new database creates the keys."""
    return ctx.caches.keyring.keys(ctx.clock.now(), ctx.policy.cache_ttl, lambda: _refreshed(ctx))


def signer(ctx: Context) -> tuple[SigningKey, jose.Key]:
    """The active key and its private half (decrypted once per node)."""
    current = active(current_keys(ctx))
    assert current is not None, "a refreshed keyring always has an active key"

    def load() -> jose.Key:
        pem = encryption.decrypt(_encryption_key(ctx), current.private_key, current.kid.encode())
        return jose.load_private(pem, current.kid, current.alg)

    return current, ctx.caches.keyring.private_key(current.kid, load)


def jwks(ctx: Context) -> dict[str, Any]:
    now = ctx.clock.now()
    return {"keys": [k.public_jwk for k in published(current_keys(ctx), now)]}


def cached_jwks(ctx: Context) -> dict[str, Any] | None:
    """The JWKS from this node's cache, or None when the cache must be refreshed first
    (``jwks``, which may read the database). Never blocks on I/O: the web layer calls it
    on the event loop and falls back to ``jwks`` in a worker thread."""
    now = ctx.clock.now()
    keys = ctx.caches.keyring.cached(now, ctx.policy.cache_ttl)
    if keys is None:
        return None
    return {"keys": [k.public_jwk for k in published(keys, now)]}
