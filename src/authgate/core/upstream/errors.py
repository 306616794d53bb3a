"""Why an upstream sign-in stopped, as errors a person's page can explain.

Each carries a stable ``reason`` (audited with ``upstream.sign_in_refused``) and a
client-safe ``description``; ``debug`` is for the operator's log only, never shown.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from authgate.core.errors import AccessDeniedError, TemporarilyUnavailableError, ValidationFailed

#: What a person reads when the provider could not be reached or did not answer in time.
DOWN = "The identity provider could not be reached. Try again in a moment."

Reason = Literal[
    "provider_unknown",
    "provider_error",
    "state_invalid",
    "issuer_mismatch",
    "token_exchange_failed",
    "auth_method_unsupported",
    "id_token_invalid",
    "userinfo_invalid",
    "scope_not_granted",
    "provider_unavailable",
    "account_not_linked",
    "email_not_verified",
    "email_ambiguous",
    "domain_not_allowed",
    "claim_missing",
    "user_disabled",
]


class UpstreamRefusedError(AccessDeniedError):
    """The provider said no, or the account it vouched for may not sign in here."""

    def __init__(self, description: str, *, reason: Reason, debug: str | None = None) -> None:
        super().__init__(description, debug=debug)
        self.reason: Reason = reason


class UpstreamInvalidError(UpstreamRefusedError):
    """The provider's answer cannot be trusted (state, ``iss``, the ID token): nothing done."""

    status_code: ClassVar[int] = 400


class UpstreamUnavailableError(TemporarilyUnavailableError):
    """The provider could not be reached, or did not answer in time."""

    def __init__(self, description: str, *, debug: str | None = None) -> None:
        super().__init__(description, debug=debug)
        self.reason: Reason = "provider_unavailable"


def invalid_setting(field: str, message: str) -> ValidationFailed:
    """A provider setting that cannot be stored, named for the operator (RFC 9457 problem)."""
    return ValidationFailed("Invalid upstream provider", validations={field: message})
