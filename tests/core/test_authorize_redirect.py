"""core/authorize.py ``may_redirect``: the page-or-redirect decision reads each error class's
``redirectable`` (core/errors.py), after the client and its redirect URI are verified."""

from __future__ import annotations

import pytest

from authgate.core import authorize, clients, errors, resources
from authgate.core.context import SYSTEM, Context
from authgate.core.models import App
from authgate.core.policy import Policy
from authgate.core.rate_limits import RateLimitedError
from tests.clock import MovableClock
from tests.fakes import InMemoryStore

REDIRECT_URI = "https://ops.example.com/cb"


@pytest.fixture
def ctx() -> Context:
    context = Context(
        InMemoryStore(), MovableClock(), Policy(issuer="https://auth.example.com"), b"k" * 32
    )
    resources.ensure_own_api(context)
    return context


@pytest.fixture
def operator_app(ctx: Context) -> App:
    fields = clients.AppFields(name="Ops", redirect_uris=[REDIRECT_URI])
    return clients.create_app(ctx, SYSTEM, fields)


def _redirect(error: errors.OAuthError, app: App) -> authorize.AuthorizationRedirect:
    return authorize.AuthorizationRedirect(error, REDIRECT_URI, "s", app=app)


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidRequestError("x"),
        errors.UnsupportedResponseTypeError("x"),
        errors.UnauthorizedClientError("x"),
        errors.InvalidScopeError("x"),
        errors.InvalidTargetError("x"),
        errors.AccessDeniedError("x"),
        errors.TemporarilyUnavailableError("x"),
    ],
    ids=lambda e: e.error,
)
def test_authorization_endpoint_errors_redirect(
    ctx: Context, operator_app: App, error: errors.OAuthError
) -> None:
    assert error.redirectable
    assert authorize.may_redirect(ctx, _redirect(error, operator_app), None)


@pytest.mark.parametrize(
    "error",
    [
        # RFC 6749 §4.1.2.1: "If the request fails due to a missing, invalid, or mismatching
        # redirection URI, or if the client identifier is missing or invalid, the
        # authorization server SHOULD inform the resource owner of the error and MUST NOT
        # automatically redirect the user-agent to the invalid redirection URI."
        errors.RedirectUriMismatchError("x"),
        errors.InvalidClientError("x"),
        # Codes of other endpoints, and a rate limit's 429: never sent to a client's URI.
        errors.InvalidTokenError("x"),
        errors.InsufficientScopeError("x"),
        errors.InvalidClientMetadataError("x"),
        errors.InvalidRedirectUriError("x"),
        RateLimitedError("x", retry_after=1),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_a_page_even_for_a_verified_client(
    ctx: Context, operator_app: App, error: errors.OAuthError
) -> None:
    assert not error.redirectable
    assert not authorize.may_redirect(ctx, _redirect(error, operator_app), None)
