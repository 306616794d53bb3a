"""JWS signing keys and compact JWTs, via joserfc, with an explicit algorithm allow-list."""

from __future__ import annotations

import base64
import json
import secrets
import warnings
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, JWKRegistry, KeyParameters, KeySet, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

ALGORITHMS = ("ES256", "RS256", "EdDSA")
Key = ECKey | RSAKey | OKPKey
_REGISTRY = JWSRegistry(algorithms=list(ALGORITHMS))
# RFC 9864 prefers the fully specified "Ed25519", but "EdDSA" is what JWT verifiers in the
# field know; authgate publishes `alg: EdDSA` with `crv: Ed25519`, which RFC 8037 defines.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc")


def generate_key(alg: str) -> Key:
    """A new private key for ``alg`` with a random ``kid``."""
    params: KeyParameters = {"kid": secrets.token_urlsafe(12), "alg": alg, "use": "sig"}
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, private=True)
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters=params, private=True)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", parameters=params, private=True)
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def private_pem(key: Key) -> bytes:
    return key.as_pem(private=True)


def load_private(pem: bytes, kid: str, alg: str) -> Key:
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "ES256":
        return ECKey.import_key(pem, parameters=params)
    if alg == "RS256":
        return RSAKey.import_key(pem, parameters=params)
    if alg == "EdDSA":
        return OKPKey.import_key(pem, parameters=params)
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def public_jwk(key: Key) -> dict[str, Any]:
    return dict(key.as_dict(private=False))


def sign(
    key: Key, claims: dict[str, Any], typ: str = "at+jwt", header: dict[str, str] | None = None
) -> str:
    """A compact JWS of ``claims`` (RFC 7515 §7.1), signed with ``key`` by its own ``alg``;
    ``header`` adds members to the protected header (``x5t``), never ``alg``, ``kid``, ``typ``.

    The signature is made by ``cryptography`` directly: this is the token endpoint's hot path,
    and joserfc's generic pipeline cost five times the signature itself. ``verify`` (joserfc)
    checks what this produces; tests/crypto holds both to each other for every algorithm.
    """
    alg = key.alg
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    protected = {"alg": alg, "kid": key.kid, "typ": typ}
    if header:  # not on the token endpoint's path
        protected |= {k: v for k, v in header.items() if k not in protected}
    signing_input = _b64(_compact_json(protected)) + b"." + _b64(_compact_json(claims))
    return (signing_input + b"." + _b64(_signature(key, alg, signing_input))).decode("ascii")


def _compact_json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _signature(key: Key, alg: str, signing_input: bytes) -> bytes:
    private = key.private_key
    if alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey):
        # JWS wants the raw R || S, 32 bytes each (RFC 7518 §3.4), not DER.
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "RS256" and isinstance(private, rsa.RSAPrivateKey):
        return private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if alg == "EdDSA" and isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(signing_input)
    raise ValueError(f"the key does not fit {alg!r}")


def verify(token: str, jwks: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the signature against ``jwks`` (allow-listed algorithms only); returns
    (header, claims). Raises ValueError on any failure."""
    try:
        keyset = KeySet.import_key_set({"keys": jwks})
        decoded = jwt.decode(token, keyset, algorithms=list(ALGORITHMS), registry=_REGISTRY)
    except Exception as exc:  # joserfc raises several unrelated types
        raise ValueError(f"invalid JWT: {exc}") from exc
    return dict(decoded.header), dict(decoded.claims)


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWS without checking it: only for locating a stored row."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 8192:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: a deeply nested payload
        return None
    return claims if isinstance(claims, dict) else None


def verify_with_keys(
    token: str, jwks: list[dict[str, Any]], algorithms: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a JWS signed by a third party (a client assertion) against its JWK Set.

    Only ``algorithms`` are accepted (never ``none`` or an HMAC: a public key must not become
    a shared secret). With a ``kid`` only the keys of that ``kid`` are tried, else every key;
    keys meant for encryption are skipped. Returns (header, claims); raises ValueError."""
    if not set(algorithms) <= {"RS256", "PS256", "ES256", "EdDSA"}:
        raise ValueError("only asymmetric signature algorithms may verify client assertions")
    registry = JWSRegistry(algorithms=list(algorithms))
    header = unverified_header(token)
    if header is None or header.get("alg") not in algorithms:
        raise ValueError("the JWS algorithm is not allowed")
    kid = header.get("kid")
    candidates = [
        jwk
        for jwk in jwks
        if (kid is None or jwk.get("kid") == kid) and jwk.get("use", "sig") == "sig"
    ]
    if not candidates:
        raise ValueError("no key matches the JWS")
    for jwk in candidates[:16]:
        try:
            key = JWKRegistry.import_key(jwk)
            decoded = jwt.decode(token, key, algorithms=list(algorithms), registry=registry)
        except Exception:  # joserfc raises several unrelated types  # noqa: S112
            continue
        return dict(decoded.header), dict(decoded.claims)
    raise ValueError("the JWS signature does not verify with any key")


# What a client's registered key may be: one that verifies a client assertion (RFC 7518 §3,
# RFC 8037). Each kty with the curves or sizes and the "alg" values authgate verifies.
CLIENT_KEY_ALGORITHMS = {"RSA": ("RS256", "PS256"), "EC": ("ES256",), "OKP": ("EdDSA",)}
CLIENT_KEY_CURVES = {"EC": "P-256", "OKP": "Ed25519"}
MIN_RSA_BITS = 2048
# RFC 7518 §6.2.2, §6.3.2, §6.4 and RFC 8037 §2: members only a private (or secret) JWK has.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def check_public_signing_jwk(jwk: dict[str, Any]) -> None:
    """Raise ValueError (with a client-safe message) unless ``jwk`` is a public key that can
    verify a client assertion: RSA of at least 2048 bits, EC P-256 or OKP Ed25519, without
    private members, ``use`` ``sig`` if given, ``alg`` one its type signs with if given, and
    importable (an EC point on its curve, a well-formed modulus)."""
    kty = jwk.get("kty")
    if kty == "oct":
        raise ValueError("a symmetric (oct) key is a shared secret, not a public key")
    if kty not in CLIENT_KEY_ALGORITHMS:
        raise ValueError(f"kty must be one of {', '.join(CLIENT_KEY_ALGORITHMS)}")
    if PRIVATE_MEMBERS & set(jwk):
        raise ValueError("a private key must never leave its owner: register the public key")
    if kty in CLIENT_KEY_CURVES and jwk.get("crv") != CLIENT_KEY_CURVES[kty]:
        raise ValueError(f"an {kty} key must be on the {CLIENT_KEY_CURVES[kty]} curve")
    if jwk.get("use", "sig") != "sig":
        raise ValueError('use must be "sig": the keys verify the client\'s signatures')
    alg = jwk.get("alg")
    if alg is not None and alg not in CLIENT_KEY_ALGORITHMS[kty]:
        raise ValueError(
            f"alg of an {kty} key must be one of {', '.join(CLIENT_KEY_ALGORITHMS[kty])}"
        )
    kid = jwk.get("kid")
    if kid is not None and (
        not isinstance(kid, str) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in kid)
    ):
        raise ValueError("kid must be a string of printable characters")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc warns of small keys; refused below
            key = JWKRegistry.import_key(jwk)
    except Exception as exc:  # joserfc raises several unrelated types
        raise ValueError("the key does not import (malformed or not on its curve)") from exc
    public = key.raw_value
    if key.is_private or not isinstance(
        public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    ):
        raise ValueError("the key is not a public signature key")
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        raise ValueError(f"an RSA key must have at least {MIN_RSA_BITS} bits")


def unverified_header(token: str) -> dict[str, Any] | None:
    """The protected header of a compact JWS without checking it (to choose keys)."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 8192:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a deeply nested header
        return None
    return header if isinstance(header, dict) else None
