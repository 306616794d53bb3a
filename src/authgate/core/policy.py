"""The protocol's tunable rules, built from Settings by app.py (core never reads env vars)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class Policy:
    issuer: str
    code_ttl: timedelta = timedelta(minutes=10)
    access_token_ttl: timedelta = timedelta(hours=1)
    refresh_token_ttl: timedelta = timedelta(days=30)
    refresh_reuse_grace: timedelta = timedelta(seconds=10)
    session_ttl: timedelta = timedelta(hours=12)
    # authgate's own API is the resource named by the issuer; a request without `resource`
    # gets this audience (DESIGN.md §7).
    default_audience: str = ""

    @property
    def audience(self) -> str:
        return self.default_audience or self.issuer


class SystemClock:
    """The real clock; tests inject one they can move."""

    def now(self) -> datetime:
        return datetime.now(UTC)
