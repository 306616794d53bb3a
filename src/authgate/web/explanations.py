"""What an error page tells a person: what went wrong and what to do, in plain words.

RFC 6749 §4.1.2.1: when the client or its redirect_uri cannot be trusted, "the authorization
server SHOULD inform the resource owner of the error". The resource owner is a person, not a
developer: the page leads with these words; the RFC error code and its description (for the
app's developer) sit under a "details" disclosure (``templates/error.html``).
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate.core import flows
from authgate.core.errors import (
    AccessDeniedError,
    InvalidClientError,
    OAuthError,
    RedirectUriMismatchError,
    ServerError,
    TemporarilyUnavailableError,
)
from authgate.core.rate_limits import RateLimitedError
from authgate.core.upstream.errors import (
    UpstreamInvalidError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
)

#: How many characters of the request id a person is asked to pass on (enough to find the
#: request in the logs and its flow, short enough to read out).
REFERENCE_LENGTH = flows.REFERENCE_LENGTH


@dataclass(frozen=True, slots=True)
class Explanation:
    title: str
    what: str  # what went wrong
    todo: str  # what the person can do about it


_APP_PROBLEM = (
    "Go back to the app you came from and try connecting again. If it happens again, the app "
    "needs fixing: tell its developer, and give them the reference below."
)
_UPSTREAM_TODO = (
    "Go back to the sign-in page and try again. If it happens again, contact the operator of "
    "this service and give them the reference below."
)
_BY_KIND: tuple[tuple[type[OAuthError], Explanation], ...] = (
    (
        UpstreamUnavailableError,
        Explanation(
            "The identity provider is not answering",
            "Signing you in needs the identity provider, and it could not be reached or did "
            "not answer in time. Nothing was changed.",
            "Try again in a minute. " + _UPSTREAM_TODO,
        ),
    ),
    (
        UpstreamInvalidError,
        Explanation(
            "The sign-in could not be verified",
            "The answer from the identity provider could not be verified (it may have expired, "
            "been used already, or not come from the provider), so you were not signed in.",
            _UPSTREAM_TODO,
        ),
    ),
    (
        UpstreamRefusedError,
        Explanation(
            "You could not be signed in",
            "The identity provider did not sign you in, or the account it vouched for may not "
            "sign in to this service.",
            _UPSTREAM_TODO,
        ),
    ),
    (
        InvalidClientError,
        Explanation(
            "This app is not recognised",
            "The app that sent you here is not registered with this sign-in service, or its "
            "registration has been removed.",
            _APP_PROBLEM,
        ),
    ),
    (
        RedirectUriMismatchError,
        Explanation(
            "This app's sign-in link is not set up correctly",
            "The app asked to send you back to an address it has not registered. To keep your "
            "account safe, sign-in stopped here and nothing was shared with the app.",
            _APP_PROBLEM,
        ),
    ),
    (
        AccessDeniedError,
        Explanation(
            "Access was not granted",
            "The request was refused, or the form you sent had expired.",
            "Go back to the app and start again.",
        ),
    ),
    (
        RateLimitedError,
        Explanation(
            "Too many attempts",
            "There have been too many attempts in a short time.",
            "Wait a minute, then try again.",
        ),
    ),
    (
        TemporarilyUnavailableError,
        Explanation(
            "The service is busy or briefly unavailable",
            "The sign-in service could not complete your request just now. Nothing was changed.",
            "Try again in a few seconds.",
        ),
    ),
    (
        ServerError,
        Explanation(
            "Something went wrong on our side",
            "The sign-in service hit an unexpected problem. Nothing was changed.",
            "Try again in a moment. If it keeps happening, contact the operator of this "
            "service and give them the reference below.",
        ),
    ),
)
_REQUEST_PROBLEM = Explanation(
    "This request could not be completed",
    "The link or form that brought you here is incomplete or not valid, so nothing was done.",
    "Go back to the app and start again from there; a fresh start usually fixes this. If it "
    "keeps happening, tell the app's developer and give them the reference below.",
)


def explain(exc: OAuthError) -> Explanation:
    """The plain words for ``exc``: by its kind, else those for a request that was not valid."""
    for kind, explanation in _BY_KIND:
        if isinstance(exc, kind):
            return explanation
    return _REQUEST_PROBLEM


def reference(request_id: str | None) -> str | None:
    """The short reference a person gives the operator: the start of the request id, which
    also finds the flow the request was a step of (``authgate flows show <reference>``)."""
    return flows.reference_of(request_id)
