"""Authenticated encryption of secrets at rest (AES-256-GCM, key from HKDF-SHA256)."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_LEN = 12


class DecryptionError(Exception):
    """The ciphertext was not made with this key (wrong AUTHGATE_SECRET_KEY) or was altered."""


def derive_key(master: bytes, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(master)


def encrypt(key: bytes, plaintext: bytes, associated: bytes = b"") -> str:
    nonce = os.urandom(NONCE_LEN)
    sealed = AESGCM(key).encrypt(nonce, plaintext, associated)
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt(key: bytes, token: str, associated: bytes = b"") -> bytes:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        return AESGCM(key).decrypt(raw[:NONCE_LEN], raw[NONCE_LEN:], associated)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("cannot decrypt: wrong key or altered data") from exc
