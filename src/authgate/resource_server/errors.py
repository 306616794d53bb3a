"""Why a bearer token was not accepted (RFC 6750 §3.1).

`InvalidToken` is the client's problem: "The access token provided is expired, revoked,
malformed, or invalid for other reasons" — answer 401 `invalid_token`, and the client may get a
new token. `VerifierUnavailable` is ours: the JWKS or the introspection endpoint could not be
reached — answer 503, because a 401 would send the client through authorization for nothing.
"""

from __future__ import annotations


class InvalidToken(Exception):
    """The token is not acceptable. `description` is safe to send back to the client."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class VerifierUnavailable(Exception):
    """The authorization server could not be asked (network error, 5xx, bad document)."""
