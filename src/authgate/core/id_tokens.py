"""ID tokens and the claims about a person (OpenID Connect Core 1.0 §2, §3.1.3.6, §5).

authgate is an OpenID Provider for the authorization code flow only. An authorization request
whose scope holds ``openid`` gets an ID token beside the access token: its audience is the
client (``aud`` = ``azp`` = ``client_id``), while the access token's audience stays the
resource (RFC 8707). It is signed with the same keys as the access tokens and published in
the same JWKS, with ``typ: JWT`` so that it can never pass for an RFC 9068 access token
(``at+jwt``), nor one for it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from authgate.core import keys, scopes
from authgate.core.context import Context
from authgate.core.errors import InvalidRequestError
from authgate.core.models import Grant, User
from authgate.crypto import jose

OPENID = "openid"
#: The OpenID scopes authgate honours (OIDC Core §5.4); ``address`` and ``phone`` are accepted
#: (scopes.ACCEPTED_EXTRAS) and left out: authgate holds neither.
HONOURED = ("openid", "profile", "email")
#: The claims each honoured scope releases (OIDC Core §5.4), at UserInfo and in the ID token.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "preferred_username", "updated_at"),
    "email": ("email", "email_verified"),
}
#: The claims of the ID token itself (OIDC Core §2), and ``idp``: the upstream provider.
TOKEN_CLAIMS = (
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash", "amr", "acr",
    "idp",
)  # fmt: skip
#: "acr": authgate states which kind of sign-in it was, not a level of assurance it cannot
#: vouch for (OIDC Core §2: values are "as agreed upon by the parties").
ACR_PASSWORD = "urn:authgate:acr:password"
ACR_UPSTREAM = "urn:authgate:acr:upstream"
#: A nonce is the client's opaque value, echoed; a bound keeps rows and tokens small.
MAX_NONCE_LENGTH = 512


def openid_scopes(requested: str | None, allowed: tuple[str, ...] | None) -> frozenset[str]:
    """The OpenID scopes an authorization request gets: those of ``HONOURED`` it asked for,
    only with ``openid`` itself ("If the openid scope value is not present, the behavior is
    entirely unspecified", OIDC Core §3.1.2.1: authgate then issues no ID token and releases no
    claims) and within the app's registered allow-list (``scopes.allow_list``)."""
    wanted = scopes.parse_scope(requested)
    if OPENID not in wanted or (allowed is not None and OPENID not in allowed):
        return frozenset()
    return frozenset(t for t in wanted if t in HONOURED and (allowed is None or t in allowed))


def check_nonce(value: str | None) -> str | None:
    """OIDC Core §3.1.2.1 ``nonce``: optional in the code flow, passed through to the ID
    token when given."""
    if value is not None and (not value or len(value) > MAX_NONCE_LENGTH):
        raise InvalidRequestError(f"The nonce parameter must be 1 to {MAX_NONCE_LENGTH} characters")
    return value


def parse_max_age(value: str | None) -> int | None:
    """OIDC Core §3.1.2.1 ``max_age``: "the allowable elapsed time in seconds since the last
    time the End-User was actively authenticated"."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise InvalidRequestError("The max_age parameter must be a number of seconds")
    return int(value)


#: Longer hints are ignored: no username (64) or email address (254) is longer.
MAX_LOGIN_HINT_LENGTH = 254


def check_login_hint(value: str | None) -> str | None:
    """OIDC Core §3.1.2.1 ``login_hint``: a hint, so one that cannot be a username or an
    address (too long, control characters) is ignored rather than refused."""
    if not value or len(value) > MAX_LOGIN_HINT_LENGTH:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    return value.strip() or None


def acr(idp: str | None) -> str:
    return ACR_UPSTREAM if idp else ACR_PASSWORD


def user_claims(user: User, granted: Iterable[str]) -> dict[str, Any]:
    """``sub`` and the claims the granted scopes release (OIDC Core §5.4). ``sub`` is the
    user's id: stable, never reassigned, the same for every client (``public`` subjects)."""
    claims: dict[str, Any] = {"sub": user.id}
    names = set(granted)
    if "profile" in names:
        if user.name:
            claims["name"] = user.name
        claims["preferred_username"] = user.username
        claims["updated_at"] = int(user.updated_at.timestamp())
    if "email" in names and user.email:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return claims


def _half_hash(value: str, alg: str) -> str:
    """OIDC Core §3.1.3.6 ``at_hash``: "the base64url encoding of the left-most half of the
    hash of the octets of the ASCII representation of the access_token value, where the hash
    algorithm used is the hash algorithm used in the alg Header Parameter". EdDSA (Ed25519)
    hashes with SHA-512, as the OpenID Foundation settled for it."""
    digest = (hashlib.sha512 if alg == "EdDSA" else hashlib.sha256)(value.encode("ascii"))
    half = digest.digest()[: digest.digest_size // 2]
    return base64.urlsafe_b64encode(half).rstrip(b"=").decode("ascii")


def issue(
    ctx: Context,
    *,
    user: User,
    client_id: str,
    scope: str,
    auth_time: datetime | None,
    amr: str,
    idp: str | None,
    nonce: str | None,
    access_token: str,
) -> str:
    """A signed ID token for ``user`` and the client ``client_id`` (OIDC Core §2)."""
    now = ctx.clock.now()
    signing, key = keys.signer(ctx)
    claims = user_claims(user, scopes.parse_scope(scope))
    claims.update(
        iss=ctx.policy.issuer,
        aud=client_id,
        azp=client_id,
        iat=int(now.timestamp()),
        # As long as an access token by default: the key that signed it stays published as
        # long as the longest-lived access token (core/keys.py), so verifiers can check it.
        exp=int((now + ctx.policy.access_token_ttl).timestamp()),
        at_hash=_half_hash(access_token, signing.alg),
        amr=amr.split(),
        acr=acr(idp),
    )
    if auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
    if nonce is not None:
        claims["nonce"] = nonce
    if idp:
        claims["idp"] = idp
    return jose.sign(key, claims, typ="JWT")


def for_grant(
    ctx: Context, grant: Grant, access_token: str, scope: str, *, nonce: str | None = None
) -> str | None:
    """The ID token of a token response, or None: only a person's grant whose ``scope`` holds
    ``openid`` gets one, at the code exchange (with the request's ``nonce``) and on refresh
    (OIDC Core §12.2: the same ``iss``, ``sub``, ``aud``, ``azp`` and ``auth_time``, a new
    ``iat``, and no ``nonce``: a refresh is not an authentication request)."""
    if grant.user_id is None or OPENID not in scopes.parse_scope(scope):
        return None
    user = ctx.store.get_user(grant.user_id)
    if user is None:
        return None
    return issue(
        ctx,
        user=user,
        client_id=grant.app_id,
        scope=scope,
        auth_time=grant.auth_time,
        amr=grant.amr,
        idp=grant.idp,
        nonce=nonce,
        access_token=access_token,
    )
