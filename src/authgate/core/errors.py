"""OAuth error vocabulary: one class per RFC error code.

RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1, RFC 7591 §3.2.2, RFC 8707 §2, RFC 6750 §3.1.

Each error carries a client-safe ``description`` and an operator-only ``debug`` that is logged
but never sent. ``web/errors.py`` is the only place that turns these into HTTP.
"""

from __future__ import annotations

from typing import ClassVar


class OAuthError(Exception):
    """Base class: ``error`` is the RFC code, ``status_code`` the HTTP status."""

    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 400
    # Whether the authorization endpoint may send this error to the client's redirect_uri
    # (only ever once client and redirect_uri have been verified).
    redirectable: ClassVar[bool] = True

    def __init__(self, description: str, *, debug: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.debug = debug

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


class InvalidRequestError(OAuthError):
    error = "invalid_request"


class RedirectUriMismatchError(InvalidRequestError):
    """The authorization request's redirect_uri is not one the client registered (RFC 6749
    §4.1.2.1: "the authorization server SHOULD inform the resource owner of the error and MUST
    NOT automatically redirect"). Still ``invalid_request`` on the wire; the page says more."""

    redirectable = False


class InvalidClientError(OAuthError):
    error = "invalid_client"
    status_code = 401
    redirectable = False

    def __init__(
        self,
        description: str = "The client credentials are invalid",
        *,
        debug: str | None = None,
        basic: bool = False,
    ) -> None:
        super().__init__(description, debug=debug)
        # RFC 6749 §5.2: a failed HTTP Basic authentication answers 401 with WWW-Authenticate.
        self.basic = basic


class InvalidGrantError(OAuthError):
    error = "invalid_grant"


class UnauthorizedClientError(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantTypeError(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseTypeError(OAuthError):
    error = "unsupported_response_type"


class UnsupportedTokenTypeError(OAuthError):
    error = "unsupported_token_type"


class InvalidScopeError(OAuthError):
    error = "invalid_scope"


class InvalidTargetError(OAuthError):
    error = "invalid_target"


class AccessDeniedError(OAuthError):
    error = "access_denied"
    status_code = 403


class InvalidClientMetadataError(OAuthError):
    error = "invalid_client_metadata"
    redirectable = False


class InvalidRedirectUriError(OAuthError):
    error = "invalid_redirect_uri"
    redirectable = False


class InvalidTokenError(OAuthError):
    error = "invalid_token"
    status_code = 401
    redirectable = False


class InsufficientScopeError(OAuthError):
    error = "insufficient_scope"
    status_code = 403
    redirectable = False


class TemporarilyUnavailableError(OAuthError):
    error = "temporarily_unavailable"
    status_code = 503


class ServerError(OAuthError):
    error = "server_error"
    status_code = 500


# Management-API errors (rendered as application/problem+json, not OAuth JSON).


class ManagementError(Exception):
    """A management-API failure: ``status`` and a human ``detail``; rendered as RFC 9457."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad Request"

    def __init__(self, detail: str, *, validations: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.validations = validations or {}


class ValidationFailed(ManagementError):
    status = 400
    title = "Validation failed"


class Unauthenticated(ManagementError):
    status = 401
    title = "Unauthorized"


class Forbidden(ManagementError):
    status = 403
    title = "Forbidden"

    def __init__(
        self,
        detail: str,
        *,
        validations: dict[str, str] | None = None,
        insufficient_scope: bool = True,
    ) -> None:
        super().__init__(detail, validations=validations)
        # Whether an OAuth token with more scope would do (RFC 6750 §3.1 insufficient_scope);
        # False where no token an app can hold is enough (the user's own credentials are).
        self.insufficient_scope = insufficient_scope


class NotFound(ManagementError):
    status = 404
    title = "Not Found"


class Conflict(ManagementError):
    status = 409
    title = "Conflict"
