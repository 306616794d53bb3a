"""authgate's own key at an upstream provider, for ``private_key_jwt`` client authentication
(RFC 7523 §2.2 and §3, OpenID Connect Core 1.0 §9).

One RSA 2048 key per provider, generated here and never imported or exported: its private half
is sealed at rest like the client secret (AES-256-GCM, a key derived from AUTHGATE_SECRET_KEY
for ``PURPOSE``, the provider id as associated data), its self-signed certificate is kept in
clear and published (``/login/upstream/{id}/jwks``, the management API's certificate) so the
provider can be given a JWKS URL, a JWK or a certificate. ``kid`` is the certificate's
``x5t#S256``, so a provider that shows a thumbprint and authgate name the key alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authgate.core.context import Context
from authgate.core.models import UpstreamProvider
from authgate.core.upstream.errors import DOWN, UpstreamUnavailableError
from authgate.crypto import certificates, encryption, jose, secrets
from authgate.crypto.encryption import DecryptionError

PURPOSE = "authgate upstream assertion keys v1"
ALG = "RS256"
#: How long a generated certificate is valid: rotate the key before (the console shows when).
LIFETIME = timedelta(days=730)
#: An assertion is for one token request: RFC 7523 §3 asks for an ``exp``; one minute.
ASSERTION_TTL = timedelta(seconds=60)
#: RFC 7523 §2.2: the value of ``client_assertion_type``.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True, slots=True)
class AssertionKey:
    """What may be shown of a provider's key: never its private half."""

    kid: str
    x5t: str
    not_after: datetime
    certificate_pem: str


def _key(ctx: Context) -> bytes:
    return encryption.derive_key(ctx.secret_key, PURPOSE)


def common_name(provider_id: str) -> str:
    return f"authgate upstream {provider_id}"


def new_key(ctx: Context, provider_id: str) -> tuple[str, str]:
    """A new key for the provider: (the sealed private key, the certificate PEM)."""
    pair = certificates.generate(common_name(provider_id), ctx.clock.now(), LIFETIME)
    sealed = encryption.encrypt(_key(ctx), pair.private_pem, provider_id.encode())
    return sealed, pair.certificate_pem


def described(provider: UpstreamProvider) -> AssertionKey | None:
    """The provider's key as it may be shown, or None when it has none."""
    pem = provider.assertion_certificate
    return None if pem is None else of_certificate(pem)


def of_certificate(pem: str) -> AssertionKey:
    return AssertionKey(
        kid=certificates.thumbprint_sha256(pem),
        x5t=certificates.thumbprint_sha1(pem),
        not_after=certificates.not_after(pem),
        certificate_pem=pem,
    )


def signing(provider: UpstreamProvider) -> AssertionKey | None:
    """The key the provider is given (its JWKS, its certificate), or None when the provider
    does not use ``private_key_jwt``: the one rule of what authgate publishes."""
    key = described(provider)
    return key if provider.token_auth_method == "private_key_jwt" else None


def published_jwks(provider: UpstreamProvider) -> dict[str, Any] | None:
    """The JWK Set to give the provider (RFC 7517 §5), or None: the provider signs nothing."""
    key = signing(provider)
    if key is None:
        return None
    return {"keys": [certificates.public_jwk(key.certificate_pem, key.kid, ALG)]}


def _signing_key(ctx: Context, provider: UpstreamProvider, kid: str) -> jose.Key:
    if provider.assertion_key is None:  # refused when stored (providers.py); a row edited by hand
        raise UpstreamUnavailableError(DOWN, debug="private_key_jwt without a key")
    try:
        pem = encryption.decrypt(_key(ctx), provider.assertion_key, provider.id.encode())
    except DecryptionError as exc:  # AUTHGATE_SECRET_KEY changed since it was sealed
        raise UpstreamUnavailableError(DOWN, debug="assertion key unreadable") from exc
    return jose.load_private(pem, kid, ALG)


def assertion(ctx: Context, provider: UpstreamProvider, audience: str) -> str:
    """A client assertion for one token request to ``audience``.

    RFC 7523 §3: "The JWT MUST contain an "iss" (issuer) claim that contains a unique
    identifier for the entity that issued the JWT", "a "sub" (subject) claim", "an "aud"
    (audience) claim containing a value that identifies the authorization server as an
    intended audience", "an "exp" (expiration time) claim"; OIDC Core §9 adds ``jti``, so a
    provider can refuse a replay. The header names the certificate (``x5t``, ``x5t#S256``):
    Entra ID finds the key by ``x5t``."""
    key = described(provider)
    if key is None:
        raise UpstreamUnavailableError(DOWN, debug="private_key_jwt without a certificate")
    signer = _signing_key(ctx, provider, key.kid)
    now = ctx.clock.now()
    claims = {
        "iss": provider.client_id,
        "sub": provider.client_id,
        "aud": audience,
        "jti": secrets.random_string(32),
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + ASSERTION_TTL).timestamp()),
    }
    header = {"x5t": key.x5t, "x5t#S256": key.kid}
    return jose.sign(signer, claims, typ="JWT", header=header)
