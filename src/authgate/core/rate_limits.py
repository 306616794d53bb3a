"""Fixed-window rate limits, counted in the store so that every node shares them (DESIGN.md §6).

A window is aligned to the epoch (an hourly window starts on the hour), so every node agrees on
it without talking to the others. A limit of 0 means "no limit". Time comes from ``ctx.clock``:
tests move the clock into the next window instead of sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from authgate.core.context import Context
from authgate.core.errors import TemporarilyUnavailableError

HOUR = timedelta(hours=1)
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


def hit(ctx: Context, limit: Limit) -> Hit:
    """Count one hit of ``limit.key`` in the current window (atomically, in the store)."""
    now = ctx.clock.now()
    start = window_start(now, limit.window)
    count = ctx.store.hit_rate_limit(limit.key, start, now) if limit.max_hits > 0 else 1
    remaining = (start + limit.window - now).total_seconds()
    return Hit(count, start, max(1, math.ceil(remaining)))


def first_in_window(ctx: Context, key: str, window: timedelta = HOUR) -> bool:
    """Whether this is the first call for ``key`` in the current window, on any node: a way to
    run housekeeping at most once per window without a scheduler."""
    now = ctx.clock.now()
    return ctx.store.hit_rate_limit(key, window_start(now, window), now) == 1
