"""Verify the access tokens an authorization server issued for this resource.

Two modes, chosen once per resource server:

- JWKS (default): JWT access tokens (RFC 9068) checked offline against the issuer's published
  keys (`jwks_uri`, discovered from the RFC 8414 metadata unless given).
- Introspection: any token, opaque or not, sent to the RFC 7662 endpoint with this resource
  server's client credentials (`Introspection(client_id, client_secret)`).

Either way the result is an `AccessClaims` whose issuer and audience have been checked, or an
`InvalidToken`. The verification logic is written once, as a generator that yields the HTTP
requests it needs; `verify()` (async, for ASGI) and `verify_sync()` drive it with httpx.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from authgate.resource_server import discovery, jwt_profile
from authgate.resource_server.canonical import canonical_resource
from authgate.resource_server.claims import (
    INTROSPECTION_REQUIRED,
    JWT_REQUIRED,
    AccessClaims,
    Expectations,
    check_claims,
)
from authgate.resource_server.errors import InvalidToken, VerifierUnavailable
from authgate.resource_server.introspection import (
    Introspection,
    IntrospectionCache,
    build_request,
    parse_response,
)
from authgate.resource_server.jwks import KeyCache, parse_jwks

logger = logging.getLogger(__name__)

# A flow yields the requests it needs and receives their responses (or has VerifierUnavailable
# thrown into it when the request failed).
Flow = Generator[httpx.Request, httpx.Response, Any]
ACCEPT_JSON = {"Accept": "application/json"}


class TokenVerifier:
    """Checks bearer tokens for one resource (`resource`, its canonical URI) of one issuer."""

    def __init__(
        self,
        issuer: str,
        resource: str,
        *,
        algorithms: Iterable[str] = jwt_profile.DEFAULT_ALGORITHMS,
        leeway: int = 60,
        jwks_uri: str | None = None,
        jwks_ttl: int = 300,
        jwks_refresh_interval: int = 30,
        introspection: Introspection | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if leeway < 0 or jwks_ttl < 0 or jwks_refresh_interval < 0:
            raise ValueError("leeway and JWKS intervals must not be negative")
        if urlsplit(issuer).scheme not in ("https", "http") or not urlsplit(issuer).netloc:
            raise ValueError("the issuer must be an absolute http(s) URL")
        self.issuer = issuer
        self.resource = canonical_resource(resource)
        self._expect = Expectations(issuer=issuer, resource=self.resource, leeway=leeway)
        self._algorithms = jwt_profile.check_algorithms(tuple(algorithms))
        self._jwks_uri = jwks_uri
        self._keys = KeyCache(ttl=jwks_ttl, refresh_interval=jwks_refresh_interval)
        self._introspection = introspection
        self._cache = IntrospectionCache(introspection.cache_ttl) if introspection else None
        self._metadata: dict[str, Any] | None = None
        self._http, self._owns_http = http_client, http_client is None
        self._ahttp, self._owns_ahttp = async_http_client, async_http_client is None
        self._timeout = timeout
        self._clock = clock

    @property
    def mode(self) -> Literal["jwks", "introspection"]:
        return "jwks" if self._introspection is None else "introspection"

    def verify_sync(self, token: str) -> AccessClaims:
        """Verify a token, blocking on any HTTP request. Raises InvalidToken/VerifierUnavailable."""
        if self._http is None:
            self._http = httpx.Client(timeout=self._timeout)
        flow = self._flow(token)
        try:
            request = next(flow)
            while True:
                try:
                    response = self._http.send(request)
                except httpx.HTTPError as exc:
                    request = flow.throw(_unreachable(request, exc))
                else:
                    request = flow.send(response)
        except StopIteration as done:
            claims: AccessClaims = done.value
            return claims

    async def verify(self, token: str) -> AccessClaims:
        """Verify a token. Raises InvalidToken, or VerifierUnavailable if the AS is unreachable."""
        if self._ahttp is None:
            self._ahttp = httpx.AsyncClient(timeout=self._timeout)
        flow = self._flow(token)
        try:
            request = next(flow)
            while True:
                try:
                    response = await self._ahttp.send(request)
                except httpx.HTTPError as exc:
                    request = flow.throw(_unreachable(request, exc))
                else:
                    request = flow.send(response)
        except StopIteration as done:
            claims: AccessClaims = done.value
            return claims

    def close(self) -> None:
        if self._http is not None and self._owns_http:
            self._http.close()
            self._http = None

    async def aclose(self) -> None:
        if self._ahttp is not None and self._owns_ahttp:
            await self._ahttp.aclose()
            self._ahttp = None

    def _flow(self, token: str) -> Flow:
        if not token:
            raise InvalidToken("The token is empty")
        if self._introspection is not None:
            return (yield from self._introspect(token, self._introspection))
        return (yield from self._verify_jwt(token))

    def _verify_jwt(self, token: str) -> Flow:
        signed = jwt_profile.parse(token, self._algorithms)  # header checks come before any I/O
        now = self._clock()
        if self._keys.stale(now):
            yield from self._fetch_keys(now)
        key = self._keys.find(signed.kid)
        if key is None and signed.kid is not None and self._keys.may_refresh(now):
            # A kid we do not hold: the AS may have rotated. Ask again, rate-limited.
            yield from self._fetch_keys(now)
            key = self._keys.find(signed.kid)
        if key is None:
            if self._keys.keys is None:
                raise VerifierUnavailable("no signing keys could be fetched")
            if signed.kid is None:
                raise InvalidToken("The token does not name its signing key (kid)")
            raise InvalidToken("The token was signed by an unknown key")
        jwt_profile.verify_signature(signed, key)
        return check_claims(signed.claims, self._expect, now, JWT_REQUIRED)

    def _fetch_keys(self, now: float) -> Flow:
        self._keys.attempted(now)
        try:
            uri = self._jwks_uri or (yield from self._discover("jwks_uri"))
            response = yield httpx.Request("GET", uri, headers=ACCEPT_JSON)
            if response.status_code != 200:
                raise VerifierUnavailable(f"the JWKS answered HTTP {response.status_code}")
            keys = parse_jwks(response.content)
            self._keys.store(keys, now, response.headers.get("cache-control"))
        except VerifierUnavailable as exc:
            if self._keys.keys is None:
                raise
            logger.warning("JWKS refresh failed, keeping the keys held: %s", exc)

    def _discover(self, name: str) -> Flow:
        if self._metadata is None:
            url = discovery.metadata_url(self.issuer)
            response = yield httpx.Request("GET", url, headers=ACCEPT_JSON)
            if response.status_code != 200:
                raise VerifierUnavailable(f"the AS metadata answered HTTP {response.status_code}")
            self._metadata = discovery.parse_metadata(response.content, self.issuer)
        return discovery.endpoint(self._metadata, name)

    def _introspect(self, token: str, settings: Introspection) -> Flow:
        assert self._cache is not None
        now = self._clock()
        cached = self._cache.get(token, now)
        if cached is not None:
            return cached
        endpoint = settings.endpoint or (yield from self._discover("introspection_endpoint"))
        response = yield build_request(endpoint, token, settings)
        claims = check_claims(parse_response(response), self._expect, now, INTROSPECTION_REQUIRED)
        self._cache.put(token, claims, now)
        return claims


def _unreachable(request: httpx.Request, exc: httpx.HTTPError) -> VerifierUnavailable:
    # The URL, never the body: an introspection request carries the token.
    return VerifierUnavailable(f"{request.method} {request.url} failed: {type(exc).__name__}")
