"""The JWT signer (``crypto/jose.sign``, written on ``cryptography`` directly) against two
independent verifiers: joserfc (``jose.verify``) and PyJWT."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc.jwk import ECKey
from jwt import PyJWK, PyJWS

from authgate.crypto import jose

CLAIMS = {"iss": "https://as.example", "sub": "user-1", "aud": "https://mcp.example/ü", "n": 3}


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("alg", jose.ALGORITHMS)
def test_signed_token_verifies_with_joserfc_and_pyjwt(alg: str) -> None:
    key = jose.generate_key(alg)
    token = jose.sign(key, CLAIMS)
    public = jose.public_jwk(key)

    header, claims = jose.verify(token, [public])
    assert header == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    assert claims == CLAIMS

    verified = PyJWS().decode_complete(token, PyJWK(public).key, algorithms=[alg])
    assert json.loads(verified["payload"]) == CLAIMS
    assert verified["header"]["kid"] == key.kid


@pytest.mark.parametrize("alg", jose.ALGORITHMS)
def test_another_keys_signature_is_refused(alg: str) -> None:
    token = jose.sign(jose.generate_key(alg), CLAIMS)
    other = jose.public_jwk(jose.generate_key(alg))
    with pytest.raises(ValueError, match="invalid JWT"):
        jose.verify(token, [other])


def test_es256_signature_is_raw_r_and_s() -> None:
    """RFC 7518 §3.4: 64 bytes R || S, not the DER structure the library returns."""
    token = jose.sign(jose.generate_key("ES256"), CLAIMS, typ="JWT")
    header, _payload, signature = token.split(".")
    assert len(_b64decode(signature)) == 64
    assert json.loads(_b64decode(header))["typ"] == "JWT"
    assert "=" not in token


def test_an_algorithm_off_the_allow_list_is_refused() -> None:
    key = ECKey.generate_key("P-384", parameters={"alg": "ES384", "kid": "k"}, private=True)
    with pytest.raises(ValueError, match="unsupported signing algorithm"):
        jose.sign(key, CLAIMS)
