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
    refresh_reuse_grace: timedelta = timedelta(seconds=120)
    session_ttl: timedelta = timedelta(hours=12)
    # authgate's own API is the resource named by the issuer; a request without `resource`
    # gets this audience (DESIGN.md §7).
    default_audience: str = ""
    signing_alg: str = "ES256"
    # A new signing key takes over every `key_rotation_interval` (0 = only by hand), once the
    # next key has been published for `key_prepublish` (so verifiers' JWKS caches know it).
    key_rotation_interval: timedelta = timedelta(days=30)
    key_prepublish: timedelta = timedelta(days=1)
    # How long a node trusts its in-memory copy of keys and resources: a rotation or a change
    # made on another node is seen within this bound.
    cache_ttl: timedelta = timedelta(seconds=30)
    jwks_max_age: int = 300
    # First loads of metadata documents not stored yet (each one a fetch and, if valid, a new
    # app row) per source address and from all addresses, per hour; 0 = no limit.
    document_loads_per_ip: int = 10
    document_loads_overall: int = 100

    @property
    def audience(self) -> str:
        return self.default_audience or self.issuer


class SystemClock:
    """The real clock; tests inject one they can move."""

    def now(self) -> datetime:
        return datetime.now(UTC)
