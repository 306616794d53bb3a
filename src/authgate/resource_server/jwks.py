"""The authorization server's signing keys, cached (RFC 7517 §5, RFC 8414 §2 `jwks_uri`).

Keys are fetched once, kept for a TTL (the response's `Cache-Control: max-age`, capped by our
own setting), and fetched again early only when a token names a `kid` we do not hold — at most
once per `refresh_interval`, so a stream of forged `kid`s cannot turn into a stream of requests
to the authorization server. If a scheduled re-fetch fails, the keys we hold stay in use.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from authgate.resource_server.errors import VerifierUnavailable

MAX_JWKS_BYTES = 256 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


def parse_jwks(body: bytes) -> KeySet:
    """Parse a JWK Set; keys of a type we do not know are skipped (RFC 7517 §5)."""
    if len(body) > MAX_JWKS_BYTES:
        raise VerifierUnavailable("the JWKS document is too large")
    try:
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise VerifierUnavailable("the JWKS document has no keys array")
        # A symmetric ("oct") key never verifies an access token here: dropping it keeps the
        # HS256 key-confusion attack shut even if an "oct" key were ever published.
        keys = [k for k in document["keys"] if isinstance(k, dict) and k.get("kty") != "oct"]
        return KeySet.import_key_set({"keys": keys})
    except (ValueError, JoseError) as exc:
        raise VerifierUnavailable("the JWKS document is not a valid JWK Set") from exc


def max_age(cache_control: str | None) -> int | None:
    """The `max-age` directive of a Cache-Control header (RFC 9111 §5.2.2.1), if any."""
    if not cache_control or "no-store" in cache_control.lower():
        return 0 if cache_control else None
    match = _MAX_AGE.search(cache_control)
    return int(match.group(1)) if match else None


@dataclass(slots=True)
class KeyCache:
    """The key set we hold, and when we may fetch it again. Times are seconds (a clock value)."""

    ttl: int
    refresh_interval: int
    keys: KeySet | None = None
    fresh_until: float = 0.0
    last_attempt: float = field(default=float("-inf"))

    def stale(self, now: float) -> bool:
        """True when the keys should be fetched before use (none yet, or past their TTL)."""
        if now - self.last_attempt < self.refresh_interval:
            return False  # fetched (or failed to) a moment ago: do not ask again yet
        return self.keys is None or now >= self.fresh_until

    def may_refresh(self, now: float) -> bool:
        """True when an unknown `kid` may trigger a fetch now (rate-limited)."""
        return now - self.last_attempt >= self.refresh_interval

    def attempted(self, now: float) -> None:
        self.last_attempt = now

    def store(self, keys: KeySet, now: float, cache_control: str | None) -> None:
        advertised = max_age(cache_control)
        lifetime = self.ttl if advertised is None else min(advertised, self.ttl)
        # Never re-fetch more often than refresh_interval, whatever the server says.
        self.keys = keys
        self.fresh_until = now + max(lifetime, self.refresh_interval)

    def find(self, kid: str | None) -> Key | None:
        """The key with this `kid`; without a `kid`, the only key there is."""
        if self.keys is None:
            return None
        if kid is None:
            return self.keys.keys[0] if len(self.keys.keys) == 1 else None
        return next((key for key in self.keys.keys if key.kid == kid), None)
