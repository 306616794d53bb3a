"""JWT access tokens: parse the JWS and check its signature (RFC 9068 §4, RFC 7515 §5.2).

Everything about the header is decided before any key is touched: the `alg` must be in the
resource server's own allow-list of asymmetric algorithms — never `none` (RFC 7518 §3.6), never
an HMAC (RFC 8725 §2.1, the "public key as HMAC secret" confusion) — and RFC 9068 §4: "Resource
servers MUST verify that the typ header value is "at+jwt" or "application/at+jwt" and reject
tokens carrying any other value." The key must then fit the algorithm (type, curve, `use`,
`alg`) before the signature is checked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from authgate.resource_server.errors import InvalidToken

# Asymmetric JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 §2.2). An allow-list is
# always a subset of these: a shared-secret algorithm has no place on a resource server.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    | {"EdDSA", "Ed25519", "Ed448"}
)
DEFAULT_ALGORITHMS = ("ES256", "RS256", "EdDSA")
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
MAX_TOKEN_LENGTH = 16 * 1024
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class SignedToken:
    """A compact JWS whose header passed the checks, signature not yet verified."""

    alg: str
    kid: str | None
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def check_algorithms(algorithms: tuple[str, ...]) -> frozenset[str]:
    """Validate a configured allow-list: non-empty, asymmetric algorithms only."""
    if not algorithms:
        raise ValueError("the algorithm allow-list is empty")
    unsupported = set(algorithms) - ASYMMETRIC_ALGORITHMS
    if unsupported:
        raise ValueError(f"not asymmetric JWS algorithms: {sorted(unsupported)}")
    return frozenset(algorithms)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def parse(token: str, algorithms: frozenset[str]) -> SignedToken:
    """Split and decode a compact JWS access token and check its header."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LENGTH or len(parts) != 3:
        raise InvalidToken("The token is not a JWT")
    header, claims = _json_segment(parts[0]), _json_segment(parts[1])
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken("The token's signing algorithm is not accepted")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise InvalidToken("The token is not a JWT access token (typ must be at+jwt)")
    if "crit" in header or "b64" in header:
        # RFC 7515 §4.1.11: a recipient that does not understand a critical extension must
        # reject the JWS; access tokens need none.
        raise InvalidToken("The token uses an unsupported JWS extension")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("The token's kid header is not a string")
    return SignedToken(
        alg=alg,
        kid=kid,
        claims=claims,
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=_decode(parts[2]),
    )


def verify_signature(token: SignedToken, key: Key) -> None:
    """Check that `key` fits the token's algorithm and that the signature is valid."""
    algorithm = JWSRegistry.algorithms[token.alg]
    try:
        # Key type, curve, "use" and the key's own "alg" must all agree with the header.
        algorithm.check_key(key)
        valid = algorithm.verify(token.signing_input, token.signature, key)
    except (JoseError, ValueError) as exc:
        raise InvalidToken("The token's signing key does not fit its algorithm") from exc
    if not valid:
        raise InvalidToken("The token's signature is invalid")


def _decode(segment: str) -> bytes:
    if not _SEGMENT.fullmatch(segment):
        raise InvalidToken("The token is not a JWT")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("The token is not a JWT") from exc


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_decode(segment))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidToken("The token is not a JWT") from exc
    if not isinstance(value, dict):
        raise InvalidToken("The token is not a JWT")
    return value
