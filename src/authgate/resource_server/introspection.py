"""Token introspection, for resources that use opaque tokens (RFC 7662).

RFC 7662 §2.1: the request is a form POST with `token` (and a `token_type_hint`), and "the
protected resource calls the introspection endpoint using an HTTP POST request with parameters
sent as application/x-www-form-urlencoded data"; the resource server authenticates with its own
client credentials. RFC 7662 §4: answers may be cached, but a cache "trades off the
timeliness of revocation" — so answers are kept briefly (at most 60 s), never past the token's
`exp`, and only positive ones, keyed by a SHA-256 of the token so no token sits in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import httpx

from authgate.resource_server.claims import AccessClaims
from authgate.resource_server.errors import InvalidToken, VerifierUnavailable

MAX_CACHE_TTL = 60
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Introspection:
    """Introspection mode: this resource server's client credentials, and how long to cache."""

    client_id: str
    client_secret: str = field(repr=False)
    endpoint: str | None = None  # None: the `introspection_endpoint` of the AS metadata
    cache_ttl: int = 30

    def __post_init__(self) -> None:
        if not 0 <= self.cache_ttl <= MAX_CACHE_TTL:
            raise ValueError(f"cache_ttl must be between 0 and {MAX_CACHE_TTL} seconds")


def build_request(endpoint: str, token: str, settings: Introspection) -> httpx.Request:
    """RFC 7662 §2.1 request, client authentication by HTTP Basic (RFC 6749 §2.3.1: the id and
    secret are form-encoded before they are joined and base64-encoded)."""
    pair = f"{quote_plus(settings.client_id)}:{quote_plus(settings.client_secret)}"
    basic = base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return httpx.Request(
        "POST",
        endpoint,
        data={"token": token, "token_type_hint": "access_token"},
        headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
    )


def parse_response(response: httpx.Response) -> dict[str, Any]:
    """The RFC 7662 §2.2 answer of an active token; `InvalidToken` for an inactive one."""
    if response.status_code != 200:
        # 401/403 mean our own credentials or rights are wrong: an operator's problem, not
        # the caller's, so it must not look like a bad token.
        raise VerifierUnavailable(f"introspection answered HTTP {response.status_code}")
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise VerifierUnavailable("the introspection response is too large")
    try:
        document = json.loads(response.content)
    except ValueError as exc:
        raise VerifierUnavailable("the introspection response is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("active"), bool):
        raise VerifierUnavailable("the introspection response has no active member")
    if document["active"] is not True:
        raise InvalidToken("The token is not active")
    token_type = document.get("token_type")
    if token_type is not None and str(token_type).lower() != "bearer":
        raise InvalidToken("The token is not a bearer access token")
    return document


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class IntrospectionCache:
    """Positive introspection answers, until min(now + ttl, exp)."""

    ttl: int
    max_entries: int = 10_000
    entries: dict[str, tuple[float, AccessClaims]] = field(default_factory=dict)

    def get(self, token: str, now: float) -> AccessClaims | None:
        key = token_key(token)
        entry = self.entries.get(key)
        if entry is None:
            return None
        until, claims = entry
        if now >= until:
            self.entries.pop(key, None)
            return None
        return claims

    def put(self, token: str, claims: AccessClaims, now: float) -> None:
        until = min(now + self.ttl, float(claims.expires_at))
        if until <= now:
            return
        if len(self.entries) >= self.max_entries:
            self._evict(now)
        self.entries[token_key(token)] = (until, claims)

    def _evict(self, now: float) -> None:
        for key in [k for k, (until, _) in self.entries.items() if until <= now]:
            del self.entries[key]
        while len(self.entries) >= self.max_entries:
            del self.entries[next(iter(self.entries))]  # the oldest insertion
