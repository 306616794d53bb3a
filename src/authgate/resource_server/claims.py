"""The checks every access token must pass, whatever its format (RFC 9068 §4, RFC 7662 §2.2).

RFC 9068 §4: the resource server "MUST validate that the "aud" claim contains a resource
indicator value corresponding to an identifier the resource server expects for itself", the
"iss" claim must match the authorization server's issuer identifier exactly, and the current
time must be before "exp". JWT payloads and introspection responses both end up here, so the
two verification modes cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from authgate.resource_server.canonical import same_resource
from authgate.resource_server.errors import InvalidToken

# RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat and jti are REQUIRED in a JWT access token.
JWT_REQUIRED = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
# RFC 7662 §2.2 makes every member but "active" optional; without these the answer cannot be
# bound to this resource, a caller or a lifetime, so it is not accepted.
INTROSPECTION_REQUIRED = ("exp", "aud", "sub", "client_id")


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says. `raw` is every claim, read-only."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    audience: str
    expires_at: int
    jti: str | None
    raw: Mapping[str, Any]

    @property
    def issuer(self) -> str | None:
        value = self.raw.get("iss")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Expectations:
    """What this resource server expects of every token it accepts."""

    issuer: str
    resource: str  # canonical
    leeway: int


def check_claims(
    claims: Mapping[str, Any], expect: Expectations, now: float, required: tuple[str, ...]
) -> AccessClaims:
    """Apply the issuer, audience, lifetime and shape checks; return the claims or raise."""
    missing = [name for name in required if name not in claims]
    if missing:
        raise InvalidToken(f"The token lacks the {', '.join(missing)} claim")
    if "iss" in claims and claims["iss"] != expect.issuer:
        # RFC 9068 §4: "The issuer identifier ... MUST exactly match the value of the iss claim."
        raise InvalidToken("The token was issued by another authorization server")
    audience = _audience(claims["aud"], expect.resource)
    expires_at = _check_times(claims, now, expect.leeway)
    return AccessClaims(
        subject=_string(claims, "sub"),
        client_id=_string(claims, "client_id"),
        scopes=_scopes(claims.get("scope")),
        audience=audience,
        expires_at=expires_at,
        jti=_string(claims, "jti") if "jti" in claims else None,
        raw=MappingProxyType(dict(claims)),
    )


def _audience(aud: object, resource: str) -> str:
    """RFC 7519 §4.1.3: "aud" is a string or an array of strings; one must name this resource."""
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidToken("The token's audience is malformed")
    for value in values:
        # One trailing "/" apart is the same resource: authgate's `aud` is the registered
        # spelling, which may differ from the one this resource server was configured with.
        if same_resource(value, resource):
            return resource
    raise InvalidToken("The token was issued for another resource")


def _check_times(claims: Mapping[str, Any], now: float, leeway: int) -> int:
    exp = _number(claims, "exp")
    if now >= exp + leeway:
        raise InvalidToken("The token has expired")
    if "nbf" in claims and now + leeway < _number(claims, "nbf"):
        raise InvalidToken("The token is not valid yet")
    if "iat" in claims and now + leeway < _number(claims, "iat"):
        raise InvalidToken("The token was issued in the future")
    return int(exp)


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int in Python; `true` is not a NumericDate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"The token's {name} claim is not a number")
    return float(value)


def _string(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"The token's {name} claim is not a non-empty string")
    return value


def _scopes(value: object) -> frozenset[str]:
    """RFC 9068 §2.2.3 / RFC 6749 §3.3: a space-delimited string; absent means no scope."""
    if value is None:
        return frozenset()
    if not isinstance(value, str):
        raise InvalidToken("The token's scope claim is not a string")
    return frozenset(value.split())
