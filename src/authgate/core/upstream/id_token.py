"""The ID token of an upstream provider, checked as OpenID Connect Core 1.0 §3.1.3.7 says.

The signature is verified with the provider's JWK Set and an allow-list of asymmetric
algorithms (never ``none``, never an HMAC: authgate's client secret must not be what proves a
token), then every claim the section names: ``iss``, ``aud``, ``azp``, ``exp``, ``iat``,
``nonce``. Any failure is ``id_token_invalid`` and nothing is signed in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from authgate.core.context import Context
from authgate.core.models import UpstreamProvider
from authgate.core.upstream import discovery
from authgate.core.upstream.errors import UpstreamInvalidError
from authgate.crypto import jose
from authgate.crypto.secrets import constant_time_equal

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
#: Clock skew tolerated between authgate and the provider.
LEEWAY = timedelta(seconds=60)
#: An ID token issued longer ago than this is not one just minted for this code exchange.
MAX_AGE = timedelta(minutes=10)
BAD = "The identity provider's answer could not be verified, so you were not signed in."


def _invalid(debug: str) -> UpstreamInvalidError:
    return UpstreamInvalidError(BAD, reason="id_token_invalid", debug=debug)


def _algorithms(meta: dict[str, Any]) -> list[str]:
    offered = meta.get("id_token_signing_alg_values_supported")
    if not isinstance(offered, list):
        return ["RS256"]  # §3: "The default, if omitted, is RS256"
    return [alg for alg in ALGORITHMS if alg in offered]


def verify(ctx: Context, provider: UpstreamProvider, token: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims, once the signature and every claim check out."""
    header = jose.unverified_header(token)
    if header is None:
        raise _invalid("not a compact JWS")
    algorithms = _algorithms(discovery.metadata(ctx, provider))
    if header.get("alg") not in algorithms:
        raise _invalid(f"alg {str(header.get('alg'))[:20]!r} is not allowed")
    keys = discovery.jwks(ctx, provider)
    kid = header.get("kid")
    if kid is not None and not any(k.get("kid") == kid for k in keys):
        keys = discovery.jwks(ctx, provider, reload=True)  # the provider rotated its keys
    try:
        _, claims = jose.verify_with_keys(token, keys, algorithms)
    except ValueError as exc:
        raise _invalid(f"signature: {exc}") from exc
    check_claims(claims, provider, nonce, ctx.clock.now())
    return claims


def _seconds(claims: dict[str, Any], name: str) -> datetime:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} is missing or not a number")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _invalid(f"{name} is out of range") from exc


def _check_audience(claims: dict[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    # §3.1.3.7 (3): "The Client MUST validate that the aud (audience) Claim contains its
    # client_id value registered at the Issuer identified by the iss (issuer) Claim".
    if client_id not in audiences:
        raise _invalid("aud does not contain the client_id")
    azp = claims.get("azp")
    # (4)-(5): several audiences need an azp, and an azp must be this client.
    if len(audiences) > 1 and azp is None:
        raise _invalid("several audiences and no azp")
    if azp is not None and azp != client_id:
        raise _invalid("azp is another client")


def check_claims(
    claims: dict[str, Any], provider: UpstreamProvider, nonce: str, now: datetime
) -> None:
    # (2): "The Issuer Identifier for the OpenID Provider ... MUST exactly match the value of
    # the iss (issuer) Claim."
    if claims.get("iss") != provider.issuer:
        raise _invalid("iss is not the provider's issuer")
    _check_audience(claims, provider.client_id)
    # (9): "The current time MUST be before the time represented by the exp Claim".
    if now >= _seconds(claims, "exp") + LEEWAY:
        raise _invalid("the ID token has expired")
    issued = _seconds(claims, "iat")
    if issued > now + LEEWAY or now - issued > MAX_AGE + LEEWAY:
        raise _invalid("iat is too far from now")
    sent = claims.get("nonce")
    # (11): "The value of the nonce Claim MUST be checked to verify that it is the same value
    # as the one that was sent in the Authentication Request." A transaction without one
    # (begun for GitHub, the provider's kind changed since) matches no ID token.
    if not nonce or not isinstance(sent, str) or not constant_time_equal(sent, nonce):
        raise _invalid("nonce does not match the request's")
    sub = claims.get("sub")
    # §2: "It MUST NOT exceed 255 ASCII characters in length."
    if not isinstance(sub, str) or not 1 <= len(sub) <= 255 or not sub.isprintable():
        raise _invalid("sub is missing, longer than 255 characters or not printable")
