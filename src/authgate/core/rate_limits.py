"""Fixed-window rate limits, counted in the store so that every node shares them (DESIGN.md §6).

A window is aligned to the epoch (an hourly window starts on the hour), so every node agrees on
it without talking to the others. A limit of 0 means "no limit". Time comes from ``ctx.clock``:
tests move the clock into the next window instead of sleeping.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from authgate.core import audit, client_credentials
from authgate.core.context import Actor, Context
from authgate.core.errors import OAuthError, TemporarilyUnavailableError
from authgate.core.params import Params

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
#: The sign-in slow-down per source and username: (window, multiple of the per-minute
#: allowance). A persistent guesser is held a minute, then up to 5, then up to 15 minutes: the cap.
SIGN_IN_TIERS = ((MINUTE, 1), (5 * MINUTE, 2), (15 * MINUTE, 3))
#: The window in which the sources slowed down for one username are counted (the longest tier).
SIGN_IN_SOURCES_WINDOW = 15 * MINUTE
#: An IPv6 source is its /64: one subscriber's network, any address of which a host may take.
IPV6_SOURCE_PREFIX = 64
_MAX_KEY_PART = 128
#: Leases (``hit``): a block is 1/LEASE_FRACTION of the limit, at most LEASE_MAX hits.
LEASE_FRACTION = 20
LEASE_MAX = 50
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


def hit(ctx: Context, limit: Limit) -> Hit:
    """Count one hit of ``limit.key`` in the current window, numbered by the store in blocks
    (``caches.Leases``), so that a busy limit costs one store write per block instead of one
    per request.

    A block is claimed with one atomic ``count = count + n`` in the store, so blocks never
    overlap across nodes and every hit still gets a unique number in its window: a limit is
    never exceeded, and exactly one hit is the first refused. What a node claimed and did not
    use only makes the others refuse a little early (at most one block per node per window).

    A count only grows within its window, so once a node has been given a number over a
    key's limit, every later hit of that window is over it too, on every node: the node
    answers those from memory (a number past the first refused one) until the window ends
    or the limit changes. A flood of refused requests (a source over its limit, a fresh
    metadata-document URL per request) then writes nothing, where each refusal was one
    durable write, queued with everyone's writes on SQLite's one writer.
    """
    now = ctx.clock.now()
    start = window_start(now, limit.window)
    count = 1
    if limit.max_hits > 0:
        leases = ctx.caches.rate_leases
        if leases.over(limit.key, start, limit.max_hits):
            count = limit.max_hits + 2  # over, and not the first refused hit
        else:
            size = block_size(limit)
            count = leases.take(
                limit.key,
                size,
                start,
                lambda: ctx.store.hit_rate_limit(limit.key, start, now, size),
            )
            if count > limit.max_hits:
                leases.remember_over(limit.key, start, limit.max_hits)
    remaining = (start + limit.window - now).total_seconds()
    return Hit(count, start, max(1, math.ceil(remaining)))


def first_in_window(ctx: Context, key: str, window: timedelta = HOUR) -> bool:
    """Whether this is the first call for ``key`` in the current window, on any node: a way to
    run housekeeping at most once per window without a scheduler."""
    now = ctx.clock.now()
    return ctx.store.hit_rate_limit(key, window_start(now, window), now) == 1


def key_part(value: str | None) -> str:
    """A caller-chosen value (client_id, username, address) made safe for a key: short values
    as they are, long ones (a metadata-document URL, junk) by their SHA-256."""
    if value is None:
        return "unknown"
    if len(value) <= _MAX_KEY_PART:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def source(address: str) -> str:
    """The source an address counts as for per-address limits: an IPv4 address as it is, an
    IPv6 address as its /64 (a host picks any address in its /64 at no cost, so counting
    addresses would count nothing), an IPv4-mapped IPv6 address as its IPv4 address. What is
    not an IP address (a test client's name) is returned as it is."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX), strict=False))
    return str(ip)


def source_key(actor: Actor) -> str:
    """``actor``'s source as a key part ("unknown" without an address)."""
    return key_part(source(actor.ip) if actor.ip else None)


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
    raise _refusal(limit, counted.retry_after, scope=scope, what=what)


def refuse_when_known_over(ctx: Context, limit: Limit, *, scope: str, what: str) -> None:
    """Raise the refusal ``enforce`` would raise when this node already knows that ``limit``
    is spent for the current window (see ``hit``): nothing is counted, read or written, so a
    caller can answer a flood before any other work (a store query per refused request)."""
    if limit.max_hits <= 0:
        return
    now = ctx.clock.now()
    start = window_start(now, limit.window)
    if ctx.caches.rate_leases.over(limit.key, start, limit.max_hits):
        remaining = (start + limit.window - now).total_seconds()
        raise _refusal(limit, max(1, math.ceil(remaining)), scope=scope, what=what)


def _refusal(limit: Limit, retry_after: int, *, scope: str, what: str) -> RateLimitedError:
    return RateLimitedError(
        f"Too many {what}; try again in {retry_after} seconds",
        retry_after=retry_after,
        debug=f"rate limit {scope} ({limit.max_hits} per {limit.window})",
    )


def sign_in_limits(source: str, username: str, per_minute: int) -> tuple[Limit, ...]:
    """The slow-down tiers of one username from one source (0 = none). Each counts only the
    attempts the tiers before it let through, so a guesser hammering a refused username does
    not push itself further out: the wait is at most the longest window."""
    if per_minute <= 0:
        return ()
    name = key_part(username)
    return tuple(
        Limit(
            f"sign_in:source_user:{int(window.total_seconds())}:{source}:{name}",
            per_minute * factor,
            window,
        )
        for window, factor in SIGN_IN_TIERS
    )


def sources_limit(username: str, sources_per_user: int) -> Limit:
    """How many sources may be slowed down for one username in a window before the username
    is slowed down from every source: the cap on guesses spread over many networks."""
    key = f"sign_in:user_sources:{int(SIGN_IN_SOURCES_WINDOW.total_seconds())}:{key_part(username)}"
    return Limit(key, sources_per_user, SIGN_IN_SOURCES_WINDOW)


def slow_down_sign_in(
    ctx: Context, actor: Actor, username: str, per_minute: int, sources_per_user: int = 0
) -> None:
    """Count one password check for ``username`` from ``actor``'s source; raise while that
    source is slowed down for that username, or while ``sources_per_user`` sources have been
    slowed down for it in this window (0 = no such cap).

    Wrong passwords from one source slow that source down, not the user everywhere: the user
    signing in from elsewhere is checked as usual. Only sources that were themselves slowed
    down count towards the per-username cap, so holding it takes that many networks, each
    throttled first; it ends with its window, like every tier."""
    if sources_per_user > 0:
        _refuse_when_sources_spent(ctx, actor, username, sources_per_user)
    origin = source_key(actor)
    for limit in sign_in_limits(origin, username, per_minute):
        try:
            enforce(
                ctx, actor, limit, scope="sign_in_user", what="sign-in attempts for this account"
            )
        except RateLimitedError:
            if sources_per_user > 0:
                _count_slowed_source(ctx, actor, origin, username, sources_per_user)
            raise


def _refuse_when_sources_spent(
    ctx: Context, actor: Actor, username: str, sources_per_user: int
) -> None:
    limit = sources_limit(username, sources_per_user)
    now = ctx.clock.now()
    start = window_start(now, limit.window)
    # Zero hits: a read of the counter, on any node.
    if ctx.store.hit_rate_limit(limit.key, start, now, 0) < sources_per_user:
        return
    retry_after = max(1, math.ceil((start + limit.window - now).total_seconds()))
    raise RateLimitedError(
        f"Too many sign-in attempts for this account; try again in {retry_after} seconds",
        retry_after=retry_after,
        debug=f"rate limit sign_in_user_sources ({sources_per_user} sources per {limit.window})",
    )


def _count_slowed_source(
    ctx: Context, actor: Actor, origin: str, username: str, sources_per_user: int
) -> None:
    """Count ``origin`` once per window among the sources slowed down for ``username``; the
    one that spends the cap is audited (``rate_limit.exceeded``, ``sign_in_user_sources``)."""
    window = SIGN_IN_SOURCES_WINDOW
    marker = f"sign_in:slowed:{int(window.total_seconds())}:{origin}:{key_part(username)}"
    if not first_in_window(ctx, marker, window):
        return
    limit = sources_limit(username, sources_per_user)
    now = ctx.clock.now()
    start = window_start(now, window)
    if ctx.store.hit_rate_limit(limit.key, start, now) == sources_per_user:
        audit.record(
            ctx,
            actor,
            "rate_limit.exceeded",
            target_type="rate_limit",
            target_id="sign_in_user_sources",
            limit=sources_per_user,
            window_seconds=int(window.total_seconds()),
            window_start=start.isoformat(),
        )


def named_client(authorization: str | None, params: Params) -> str | None:
    """The client_id a request names (Basic header, form or assertion), unauthenticated: a key
    for counting, never a proof of who is calling. None when it names none or is malformed."""
    try:
        return client_credentials.parse_credentials(authorization, params).client_id
    except OAuthError:
        return None


def enforce_per_client(
    ctx: Context,
    actor: Actor,
    endpoint: str,
    client_id: str | None,
    per_minute: int,
) -> None:
    """``per_minute`` requests to ``endpoint`` per named client from one source (``source``),
    else per source. The client_id is not authenticated yet when this is counted, so it is
    paired with the address: someone who knows a client's id cannot spend that client's budget
    from elsewhere."""
    if client_id is not None:
        client, origin = key_part(client_id), source_key(actor)
        key, scope = f"{endpoint}:client:{client}:ip:{origin}", f"{endpoint}_client"
    else:
        key, scope = f"{endpoint}:ip:{source_key(actor)}", f"{endpoint}_ip"
    enforce(ctx, actor, Limit(key, per_minute, MINUTE), scope=scope, what=f"{endpoint} requests")


def enforce_sign_in_address(ctx: Context, actor: Actor, per_minute: int) -> None:
    """``per_minute`` sign-in attempts per source (``source``), whatever the usernames."""
    limit = Limit(f"sign_in:ip:{source_key(actor)}", per_minute, MINUTE)
    enforce(ctx, actor, limit, scope="sign_in_ip", what="sign-in attempts from this address")
