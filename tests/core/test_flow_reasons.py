"""The reason codes of refusals (core/flow_reasons.py) and what a flow step may carry."""

from __future__ import annotations

from typing import Any

import pytest

from authgate.core import flow_reasons, flows
from authgate.core.errors import (
    AccessDeniedError,
    InsufficientScopeError,
    InvalidClientError,
    InvalidClientMetadataError,
    InvalidGrantError,
    InvalidRedirectUriError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    InvalidTokenError,
    OAuthError,
    RedirectUriMismatchError,
    ServerError,
    UnauthorizedClientError,
)
from authgate.core.grants.refresh_reuse import REFUSED_DEBUG
from authgate.core.rate_limits import RateLimitedError
from authgate.core.registration import DISABLED
from authgate.core.registration_metadata import UnapprovedSoftwareStatementError
from authgate.core.registration_settings import (
    INITIAL_ACCESS_TOKEN_INVALID,
    INITIAL_ACCESS_TOKEN_MISSING,
)
from authgate.core.tokens import ACCESS_TOKEN_EXPIRED, ACCESS_TOKEN_REVOKED

WINDOW_PASSED = REFUSED_DEBUG + "window_passed"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RedirectUriMismatchError("x"), "redirect_uri_not_registered"),
        (InvalidClientError(debug="secret mismatch"), "client_secret_wrong"),
        (InvalidClientError("This client must authenticate with a"), "client_auth_method_mismatch"),
        (InvalidClientError(debug="unknown client_id"), "client_unknown"),
        (InvalidClientError("The client metadata document is bad"), "client_document_invalid"),
        (InvalidRequestError("code_challenge is required (PKCE with S256)"), "pkce_missing"),
        (InvalidGrantError("The PKCE code verifier is invalid"), "pkce_verifier_mismatch"),
        (InvalidGrantError("x", debug="code expired"), "code_expired"),
        (InvalidGrantError("x", debug="authorization code replayed"), "code_replayed"),
        (InvalidGrantError("x", debug=WINDOW_PASSED), "refresh_reused_after_rotation"),
        (InvalidGrantError("x", debug=REFUSED_DEBUG + "other_client"), "refresh_other_client"),
        (InvalidGrantError("x", debug="the user is disabled"), "user_disabled"),
        (InvalidTargetError("The resource is not registered"), "resource_not_registered"),
        (InvalidScopeError("x"), "scope_invalid"),
        (UnauthorizedClientError("x"), "grant_not_allowed"),
        (AccessDeniedError("The resource owner denied the request"), "user_denied"),
        (RateLimitedError("x", retry_after=1), "rate_limited"),
        (ServerError("x"), "server_error"),
        (InvalidRequestError("anything else"), "request_invalid"),
        (InvalidRequestError("The nonce parameter must be 1 to 512 characters"), "nonce_invalid"),
        # RFC 7591 §3.2.2 and the abuse controls of registration
        (AccessDeniedError(DISABLED), "registration_disabled"),
        (AccessDeniedError("x", debug="registration_max_clients=5"), "registration_limit_reached"),
        (InvalidTokenError("x", debug=INITIAL_ACCESS_TOKEN_MISSING), "registration_token_missing"),
        (InvalidTokenError("x", debug=INITIAL_ACCESS_TOKEN_INVALID), "registration_token_invalid"),
        (InvalidClientMetadataError("x"), "registration_metadata_invalid"),
        (InvalidRedirectUriError("x"), "redirect_uri_invalid"),
        (UnapprovedSoftwareStatementError("x"), "software_statement_unapproved"),
        # RFC 6750 §3.1 at UserInfo
        (InvalidTokenError("The access token is invalid"), "token_invalid"),
        (InvalidTokenError("x", debug=ACCESS_TOKEN_EXPIRED), "token_expired"),
        (InvalidTokenError("x", debug=ACCESS_TOKEN_REVOKED), "token_revoked"),
        (InvalidTokenError("The access token was not issued for this audience"),
         "token_audience_mismatch"),
        (InvalidTokenError("The access token does not act for a person"), "token_not_for_person"),
        (InvalidTokenError("The access token does not act for an active person"), "user_disabled"),
        (InsufficientScopeError("x"), "scope_insufficient"),
    ],
)  # fmt: skip
def test_classify(error: OAuthError, code: str) -> None:
    assert flow_reasons.classify(error) == code
    assert code in flow_reasons.BY_CODE


def test_every_error_class_gets_a_documented_code() -> None:
    def subclasses(cls: type[OAuthError]) -> set[type[OAuthError]]:
        return {cls}.union(*(subclasses(s) for s in cls.__subclasses__()))

    for cls in subclasses(OAuthError):
        try:
            error = cls("x")
        except TypeError:
            continue  # needs more arguments (rate limits: covered above)
        assert flow_reasons.classify(error) in flow_reasons.BY_CODE, cls


@pytest.mark.parametrize("key", ["password", "code", "refresh_token", "client_secret", "token"])
def test_a_step_never_carries_a_secret_field(key: str) -> None:
    trace = flows.Trace(request_id="r")
    token = flows.begin(trace)
    try:
        with pytest.raises(ValueError, match=key):
            step: Any = flows.step  # called as a caller that passes anything would
            step("token", **{key: "value"})
    finally:
        flows.end(token)
    assert trace.steps == []


def test_authorization_flow_id_is_keyed_and_order_free() -> None:
    a = flows.authorization_flow_id(b"k1", [("client_id", "c"), ("state", "s")])
    assert a == flows.authorization_flow_id(b"k1", [("state", "s"), ("client_id", "c")])
    assert a != flows.authorization_flow_id(b"k2", [("client_id", "c"), ("state", "s")])
    assert a != flows.authorization_flow_id(b"k1", [("client_id", "c"), ("state", "t")])
    assert len(a) == 36 and a.count("-") == 4
