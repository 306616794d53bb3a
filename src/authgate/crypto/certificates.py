"""Self-signed X.509 certificates of RSA signing keys (RFC 5280), and their thumbprints as JWS
headers name them (RFC 7515 §4.1.7 ``x5t``, §4.1.8 ``x5t#S256``) and a JWK publishes them
(RFC 7517 §4.6-§4.9).

A certificate here carries no trust of its own: identity providers that take a certificate
rather than a JWK (Entra ID, Auth0) read the public key and the thumbprint from it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

RSA_BITS = 2048
#: A few minutes of clock difference at the provider must not make a new certificate "not yet
#: valid".
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A new private key (PKCS #8 PEM) and its self-signed certificate (PEM)."""

    private_pem: bytes
    certificate_pem: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def generate(common_name: str, now: datetime, lifetime: timedelta) -> KeyPair:
    """An RSA key of ``RSA_BITS`` and a certificate for it, valid from ``now`` (less
    ``BACKDATE``) for ``lifetime``, signed by itself with SHA-256."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return KeyPair(private_pem, pem)


def _der(certificate_pem: str) -> bytes:
    cert = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
    return cert.public_bytes(serialization.Encoding.DER)


def _x5t(der: bytes) -> str:
    return _b64url(hashlib.sha1(der, usedforsecurity=False).digest())


def _x5t_s256(der: bytes) -> str:
    return _b64url(hashlib.sha256(der).digest())


def thumbprint_sha1(certificate_pem: str) -> str:
    """``x5t``: base64url of the SHA-1 of the DER certificate (an identifier, not a defence:
    Entra ID still requires it)."""
    return _x5t(_der(certificate_pem))


def thumbprint_sha256(certificate_pem: str) -> str:
    """``x5t#S256``: base64url of the SHA-256 of the DER certificate."""
    return _x5t_s256(_der(certificate_pem))


def not_after(certificate_pem: str) -> datetime:
    """When the certificate stops being valid (UTC)."""
    return x509.load_pem_x509_certificate(certificate_pem.encode("ascii")).not_valid_after_utc


def public_jwk(certificate_pem: str, kid: str, alg: str = "RS256") -> dict[str, Any]:
    """The certificate's RSA public key as a JWK, with ``x5c`` (the certificate, standard
    base64 DER) and both thumbprints; never a private member."""
    der = _der(certificate_pem)
    public = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ValueError("not an RSA certificate")
    numbers = public.public_numbers()

    def uint(value: int) -> str:
        return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {
        "kty": "RSA",
        "use": "sig",
        "alg": alg,
        "kid": kid,
        "n": uint(numbers.n),
        "e": uint(numbers.e),
        "x5c": [base64.b64encode(der).decode("ascii")],
        "x5t": _x5t(der),
        "x5t#S256": _x5t_s256(der),
    }
