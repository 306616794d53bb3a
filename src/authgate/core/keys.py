"""Signing keys: creation, encryption at rest, rotation with overlap, and the JWKS (RFC 7517).

A key is published as *next* before it signs, signs while *active*, and stays published while
*retiring* until every token it signed has expired. Nodes cache keys for ``policy.cache_ttl``;
since a retiring key stays published, a node still signing with it for that long is harmless.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
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
    return min(pending, key=lambda k: k.created_at, default=None)


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
    candidate = upcoming(keys) or new_key(ctx, ctx.policy.signing_alg)
    retire_until = now + max_token_ttl(ctx) + LEEWAY
    if not ctx.store.activate_signing_key(candidate.kid, now, retire_until):
        # Another node rotated first: its result stands.
        current = active(list(ctx.store.list_signing_keys()))
        assert current is not None
        return current
    if upcoming(list(ctx.store.list_signing_keys())) is None:
        new_key(ctx, ctx.policy.signing_alg)
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


@dataclass
class Keyring:
    """A node's cache of signing keys: the decrypted active key and the published set."""

    _keys: list[SigningKey] = field(default_factory=list)
    _loaded_at: datetime | None = None
    _private: dict[str, jose.Key] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self, ctx: Context) -> list[SigningKey]:
        now = ctx.clock.now()
        with self._lock:
            if not self._fresh(ctx, now):
                self._refresh(ctx, now)
            return self._keys

    def _fresh(self, ctx: Context, now: datetime) -> bool:
        # Loaded "in the future" (the clock went back since) is stale, not fresh.
        age = now - self._loaded_at if self._loaded_at is not None else None
        return age is not None and timedelta(0) <= age < ctx.policy.cache_ttl

    def _refresh(self, ctx: Context, now: datetime) -> None:
        keys = list(ctx.store.list_signing_keys())
        if _due(ctx, keys, now):
            rotate(ctx, SYSTEM)
            keys = list(ctx.store.list_signing_keys())
        if upcoming(keys) is None:
            new_key(ctx, ctx.policy.signing_alg)
            keys = list(ctx.store.list_signing_keys())
        self._keys, self._loaded_at = keys, now

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def signer(self, ctx: Context) -> tuple[SigningKey, jose.Key]:
        current = active(self.keys(ctx))
        assert current is not None, "a refreshed keyring always has an active key"
        private = self._private.get(current.kid)
        if private is None:
            pem = encryption.decrypt(
                _encryption_key(ctx), current.private_key, current.kid.encode()
            )
            private = jose.load_private(pem, current.kid, current.alg)
            self._private[current.kid] = private
        return current, private

    def jwks(self, ctx: Context) -> dict[str, Any]:
        now = ctx.clock.now()
        return {"keys": [k.public_jwk for k in published(self.keys(ctx), now)]}

    def cached_jwks(self, ctx: Context) -> dict[str, Any] | None:
        """The JWKS from this node's cache, or None when the cache must be refreshed first
        (``jwks``, which may read the database). Never blocks on I/O: the web layer calls it
        on the event loop and falls back to ``jwks`` in a worker thread."""
        now = ctx.clock.now()
        # A refresh holds the lock across database reads: never wait for it here.
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if not self._fresh(ctx, now):
                return None
            keys = self._keys
        finally:
            self._lock.release()
        return {"keys": [k.public_jwk for k in published(keys, now)]}
