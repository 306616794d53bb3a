"""PKCE (RFC 7636), S256 only, as OAuth 2.1 requires.

"code_verifier = high-entropy cryptographic random STRING using the unreserved characters
[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~", with a minimum length of 43 characters and a
maximum length of 128 characters" (RFC 7636 §4.1). The challenge has the same shape.
"""

from __future__ import annotations

import re

from authgate.core.errors import InvalidGrantError, InvalidRequestError
from authgate.crypto.pkce import s256, verify_s256

_UNRESERVED_43_128 = re.compile(r"[A-Za-z0-9\-._~]{43,128}")

__all__ = ["check_challenge", "check_verifier", "s256"]


def check_challenge(challenge: str | None, method: str | None, *, required: bool) -> None:
    """Validate code_challenge/code_challenge_method at the authorization endpoint."""
    if challenge is None:
        if method is not None:
            raise InvalidRequestError("code_challenge_method was sent without code_challenge")
        if required:
            raise InvalidRequestError("code_challenge is required (PKCE with S256)")
        return
    # A missing method is treated as S256 (DESIGN.md §7): a client that meant `plain` then
    # fails safely at the token endpoint.
    if method not in (None, "S256"):
        raise InvalidRequestError("Invalid code_challenge_method: only S256 is supported")
    if not _UNRESERVED_43_128.fullmatch(challenge):
        raise InvalidRequestError("code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]")


def check_verifier(verifier: str | None, challenge: str | None) -> None:
    """Verify code_verifier at the token endpoint against the challenge bound to the code."""
    if challenge is None:
        if verifier is not None:
            # Downgrade protection: a verifier without a challenge on the code means the
            # challenge was stripped from the authorization request.
            raise InvalidGrantError("code_verifier was sent but the code has no code_challenge")
        return
    if verifier is None:
        raise InvalidGrantError("The PKCE code verifier is invalid", debug="verifier missing")
    if not _UNRESERVED_43_128.fullmatch(verifier):
        raise InvalidRequestError("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")
    if not verify_s256(verifier, challenge):
        raise InvalidGrantError("The PKCE code verifier is invalid")
