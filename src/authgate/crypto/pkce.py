"""The S256 code-challenge transform of RFC 7636 §4.2."""

from __future__ import annotations

import base64
import hashlib
import hmac


def s256(verifier: str) -> str:
    """``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_s256(verifier: str, challenge: str) -> bool:
    if not verifier or not challenge or not verifier.isascii():
        return False
    return hmac.compare_digest(s256(verifier), challenge)
