"""Fixed-window rate limits, counted in the store so that every node shares them (DESIGN.md §6).

A window is aligned to the epoch (an hourly window starts on the hour), so every node agrees on
it without talking to the others. A limit of 0 means "no limit". Time comes from ``ctx.clock``:
tests move the clock into the next window instead of sleeping.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from authgate.core import audit, client_auth
from authgate.core.context import Actor, Context
from authgate.core.errors import OAuthError, TemporarilyUnavailableError
from authgate.core.params import Params

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
#: The sign-in slow-down per username: (window, multiple of the per-minute allowance). A
#: persistent guesser is held a minute, then up to 5, then up to 15 minutes: the cap.
SIGN_IN_TIERS = ((MINUTE, 1), (5 * MINUTE, 2), (15 * MINUTE, 3))
_MAX_KEY_PART = 128
#: Leases (below): a block is 1/LEASE_FRACTION of the limit, at most LEASE_MAX hits; a node
#: keeps blocks for at most MAX_LEASES keys.
LEASE_FRACTION = 20
LEASE_MAX = 50
MAX_LEASES = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RateLimitedError(TemporarilyUnavailableError):
    """Too many requests: 429 with ``Retry-After`` (RFC 6585 §4), body ``temporarily_unavailable``
    (the RFC 6749 code for "try again later"; there is no OAuth code for rate limits)."""

    status_code = 429
    redirectable = False

    def __init__(self, description: str, *, retry_after: int, debug: str | None = None) -> None:
        super().__init__(description, debug=debug)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``max_hits`` hits of ``key`` per ``window`` (0 = unlimited)."""

    key: str
    max_hits: int
    window: timedelta = HOUR


@dataclass(frozen=True, slots=True)
class Hit:
    """The outcome of counting one hit."""

    count: int
    window_start: datetime
    retry_after: int

    def over(self, limit: Limit) -> bool:
        return limit.max_hits > 0 and self.count > limit.max_hits

    def first_over(self, limit: Limit) -> bool:
        """The first refused hit of this window (worth one audit event, not one per hit)."""
        return limit.max_hits > 0 and self.count == limit.max_hits + 1


def window_start(now: datetime, window: timedelta) -> datetime:
    seconds = window.total_seconds()
    elapsed = (now - _EPOCH).total_seconds()
    return _EPOCH + timedelta(seconds=math.floor(elapsed / seconds) * seconds)


def block_size(limit: Limit) -> int:
    """Hits a node claims from the store at once: 1 under 40 (exact counting where a few hits
    matter), else 1/20 of the limit, at most 50."""
    return max(1, min(LEASE_MAX, limit.max_hits // LEASE_FRACTION))


@dataclass(slots=True)
class _Lease:
    window_start: datetime
    next: int  # the number the next local hit gets
    end: int  # the last number of the claimed block


class Leases:
    """A node's blocks of hit numbers, so that a busy limit costs one store write per block
    instead of one per request.

    A block is claimed with one atomic ``count = count + n`` in the store, so blocks never
    overlap across nodes and every hit still gets a unique number in its window: a limit is
    never exceeded, and exactly one hit is the first refused. What a node claimed and did not
    use only makes the others refuse a little early (at most one block per node per window).
    """

    def __init__(self) -> None:
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()

    def take(self, ctx: Context, limit: Limit, start: datetime, now: datetime) -> int:
        with self._lock:
            lease = self._leases.get(limit.key)
            if lease is not None and lease.window_start == start and lease.next <= lease.end:
                lease.next += 1
                return lease.next - 1
        size = block_size(limit)
        end = ctx.store.hit_rate_limit(limit.key, start, now, size)
        with self._lock:
            if len(self._leases) >= MAX_LEASES:
                # Forget the blocks of past windows (and, if that is not enough, all).
                stale = [k for k, v in self._leases.items() if v.window_start < start]
                for key in stale if len(stale) < len(self._leases) // 2 else list(self._leases):
                    del self._leases[key]
            if size > 1:
                self._leases[limit.key] = _Lease(start, end - size + 2, end)
        return end - size + 1


def hit(ctx: Context, limit: Limit) -> Hit:
    """Count one hit of ``limit.key`` in the current window (numbered by the store, in blocks;
    see ``Leases``)."""
    now = ctx.clock.now()
    start = window_start(now, limit.window)
    count = ctx.rate_leases.take(ctx, limit, start, now) if limit.max_hits > 0 else 1
    remaining = (start + limit.window - now).total_seconds()
    return Hit(count, start, max(1, math.ceil(remaining)))


def first_in_window(ctx: Context, key: str, window: timedelta = HOUR) -> bool:
    """Whether this is the first call for ``key`` in the current window, on any node: a way to
    run housekeeping at most once per window without a scheduler."""
    now = ctx.clock.now()
    return ctx.store.hit_rate_limit(key, window_start(now, window), now) == 1


def source(address: str) -> str:
    """The network a request comes from, as rate limits count it: an IPv4 address as it is, an
    IPv6 address by its /64 (one subscriber's prefix: a host picks any address in it), an
    IPv4-mapped IPv6 address as its IPv4 address. Anything that is not an address, as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def key_part(value: str | None) -> str:
    """A caller-chosen value (client_id, username, address) made safe for a key: short values
    as they are, long ones (a metadata-document URL, junk) by their SHA-256."""
    if value is None:
        return "unknown"
    if len(value) <= _MAX_KEY_PART:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def enforce(ctx: Context, actor: Actor, limit: Limit, *, scope: str, what: str) -> None:
    """Count one hit of ``limit``; over it, raise :class:`RateLimitedError`. The first refusal
    of a window is audited (``rate_limit.exceeded``), not every refused request."""
    counted = hit(ctx, limit)
    if not counted.over(limit):
        return
    if counted.first_over(limit):
        audit.record(
            ctx,
            actor,
            "rate_limit.exceeded",
            target_type="rate_limit",
            target_id=scope,
            limit=limit.max_hits,
            window_seconds=int(limit.window.total_seconds()),
            window_start=counted.window_start.isoformat(),
        )
    raise RateLimitedError(
        f"Too many {what}; try again in {counted.retry_after} seconds",
        retry_after=counted.retry_after,
        debug=f"rate limit {scope} ({limit.max_hits} per {limit.window})",
    )


def sign_in_limits(username: str, per_minute: int) -> tuple[Limit, ...]:
    """The slow-down tiers of one username (0 = none). Each counts only the attempts the tiers
    before it let through, so a guesser hammering a refused username does not push the victim
    further out: the wait is at most the longest window, whatever the attacker does."""
    if per_minute <= 0:
        return ()
    name = key_part(username)
    return tuple(
        Limit(f"sign_in:user:{int(window.total_seconds())}:{name}", per_minute * factor, window)
        for window, factor in SIGN_IN_TIERS
    )


def slow_down_sign_in(ctx: Context, actor: Actor, username: str, per_minute: int) -> None:
    """Count one password check for ``username``; raise while it is slowed down."""
    for limit in sign_in_limits(username, per_minute):
        enforce(ctx, actor, limit, scope="sign_in_user", what="sign-in attempts for this account")


def named_client(authorization: str | None, params: Params) -> str | None:
    """The client_id a request names (Basic header, form or assertion), unauthenticated: a key
    for counting, never a proof of who is calling. None when it names none or is malformed."""
    try:
        return client_auth.parse_credentials(authorization, params).client_id
    except OAuthError:
        return None


def enforce_per_client(
    ctx: Context,
    actor: Actor,
    endpoint: str,
    client_id: str | None,
    per_minute: int,
) -> None:
    """``per_minute`` requests to ``endpoint`` per named client from one source address, else
    per source address. The client_id is not authenticated yet when this is counted, so it is
    paired with the address: someone who knows a client's id cannot spend that client's budget
    from elsewhere."""
    if client_id is not None:
        client, address = key_part(client_id), key_part(actor.ip)
        key, scope = f"{endpoint}:client:{client}:ip:{address}", f"{endpoint}_client"
    else:
        key, scope = f"{endpoint}:ip:{key_part(actor.ip)}", f"{endpoint}_ip"
    enforce(ctx, actor, Limit(key, per_minute, MINUTE), scope=scope, what=f"{endpoint} requests")


def enforce_sign_in_address(ctx: Context, actor: Actor, per_minute: int) -> None:
    """``per_minute`` sign-in attempts per source address, whatever the usernames."""
    limit = Limit(f"sign_in:ip:{key_part(actor.ip)}", per_minute, MINUTE)
    enforce(ctx, actor, limit, scope="sign_in_ip", what="sign-in attempts from this address")
