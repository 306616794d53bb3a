"""The reason codes of refused flow steps: one table, for operators (docs/flow-reasons.md).

Each refusal a flow records (``core/flows.py``) carries one of these stable codes, with an
operator-only explanation in plain words and, where one exists, what the client's developer
should change. ``classify`` reads the code off the error core raised: its class and the
operator-only ``debug`` (or the client-safe description) that names the cause, the way the
metrics already read the replay defences off ``debug``. A code is never renamed once shipped:
dashboards and alerts key on it. ``docs/flow-reasons.md`` is generated from ``REASONS``
(``python -m authgate flows reasons --markdown``); ``tests/test_docs.py`` checks it is current.
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate.core.errors import (
    AccessDeniedError,
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
    TemporarilyUnavailableError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
)
from authgate.core.grants.refresh_reuse import REFUSED_DEBUG
from authgate.core.rate_limits import RateLimitedError
from authgate.core.registration import DISABLED, MAX_CLIENTS_DEBUG
from authgate.core.registration_settings import (
    INITIAL_ACCESS_TOKEN_INVALID,
    INITIAL_ACCESS_TOKEN_MISSING,
)
from authgate.core.tokens import ACCESS_TOKEN_EXPIRED, ACCESS_TOKEN_REVOKED


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    #: What happened, for the operator (never shown to the client or the person).
    explanation: str
    #: What the client's developer should change, when the client can fix it.
    fix: str | None = None


REASONS: tuple[Reason, ...] = (
    Reason(
        "redirect_uri_not_registered",
        "The authorization request named a redirect_uri the client did not register (or none, "
        "when it registered several). authgate showed an error page instead of redirecting.",
        "Send exactly one of the registered redirect URIs (loopback ports may vary), or "
        "register the one you use.",
    ),
    Reason(
        "client_unknown",
        "The client_id names no app, registered client or usable metadata document.",
        "Register the client (or fix the client_id) before starting the flow.",
    ),
    Reason(
        "pkce_missing",
        "PKCE is required but the authorization request had no code_challenge, or the token "
        "request had no code_verifier.",
        "Send code_challenge (S256) at authorize and the matching code_verifier at the token "
        "endpoint.",
    ),
    Reason(
        "pkce_invalid",
        "The code_challenge, its method or the code_verifier is malformed (only S256, 43 to "
        "128 characters of the unreserved set).",
        "Use S256 and a verifier of 43 to 128 characters of [A-Za-z0-9-._~].",
    ),
    Reason(
        "pkce_verifier_mismatch",
        "The code_verifier does not hash to the code_challenge of the authorization request.",
        "Send the verifier generated for this very authorization request.",
    ),
    Reason(
        "pkce_downgrade",
        "A code_verifier was sent for a code issued without a code_challenge (downgrade "
        "protection).",
        "Send code_challenge at authorize whenever you send a code_verifier later.",
    ),
    Reason(
        "resource_not_registered",
        "The resource parameter names no resource registered with authgate.",
        "Use the resource identifier the MCP server publishes in its protected-resource "
        "metadata; the operator must register that resource.",
    ),
    Reason(
        "resource_invalid",
        "The resource parameter is not an absolute URI without a fragment.",
        "Send the resource as an absolute https URI without a fragment.",
    ),
    Reason(
        "resource_mismatch",
        "The resource at the token endpoint differs from the one the code or refresh token "
        "was issued for.",
        "Send the same resource as at authorize, or none.",
    ),
    Reason(
        "scope_narrowed",
        "Not a refusal: the scope granted is narrower than the scope requested (what the "
        "resource defines and the client may have).",
        "Request only scopes the resource defines; read the granted scope from the response.",
    ),
    Reason(
        "scope_invalid",
        "The scope parameter is malformed or asks for a scope this client may not have.",
        "Request only scopes the resource defines and the client was allowed.",
    ),
    Reason(
        "client_auth_method_mismatch",
        "The client authenticated with a method it did not register (Basic instead of the "
        "body or the reverse, a secret from a public client, two methods at once).",
        "Authenticate with the token_endpoint_auth_method the client registered, and only "
        "that one.",
    ),
    Reason(
        "client_auth_missing",
        "A confidential client sent no credentials.",
        "Send the client secret (HTTP Basic or client_secret_post, as registered).",
    ),
    Reason(
        "client_auth_malformed",
        "The client credentials could not be read (a malformed Basic header, a control "
        "character in client_id, a client_assertion that names no client).",
        "Send Basic as base64(urlencode(client_id):urlencode(secret)).",
    ),
    Reason(
        "client_secret_wrong",
        "The client secret is not one of the client's current secrets.",
        "Use a current secret; the operator can create a new one.",
    ),
    Reason(
        "client_assertion_invalid",
        "The private_key_jwt client assertion failed verification.",
        "Sign the assertion with a key the client published, with iss = sub = client_id and "
        "the token endpoint as audience.",
    ),
    Reason(
        "client_document_fetch_failed",
        "The client's metadata document (its https client_id) could not be fetched: "
        "unreachable, a bad status, too large, too slow or refused by the SSRF rules.",
        "Serve the document at the client_id URL over https, reachable from authgate.",
    ),
    Reason(
        "client_document_invalid",
        "The client's metadata document was fetched but is not valid (JSON, client_id, "
        "redirect_uris, names, keys).",
        "Fix the document: client_id equal to its URL, https redirect URIs, valid JSON.",
    ),
    Reason(
        "client_document_refused",
        "The operator's controls refuse this metadata-document client (the switch, the host "
        "lists, the redirect-host policy or the limits on new documents).",
        None,
    ),
    Reason(
        "code_unknown",
        "The authorization code is unknown or malformed (or already purged).",
        "Send the code exactly as received on the redirect URI.",
    ),
    Reason(
        "code_expired",
        "The authorization code expired before it was redeemed.",
        "Redeem the code at once; the code lifetime is short.",
    ),
    Reason(
        "code_replayed",
        "The authorization code was redeemed already: the tokens issued from it were "
        "revoked (RFC 6749 §4.1.2).",
        "Redeem each code once; do not retry a token request that succeeded.",
    ),
    Reason(
        "code_other_client",
        "The authorization code was issued to another client.",
        None,
    ),
    Reason(
        "redirect_uri_mismatch",
        "The redirect_uri at the token endpoint is missing or differs from the authorization "
        "request's.",
        "Send the same redirect_uri as at authorize.",
    ),
    Reason(
        "refresh_reused_after_rotation",
        "A refresh token that was already rotated was presented again outside the retry "
        "window (or by another secret): treated as theft, the whole grant was revoked.",
        "Store the new refresh token of every response before using it again; share one "
        "credential store between processes.",
    ),
    Reason(
        "refresh_other_client",
        "A refresh token of another client was presented.",
        None,
    ),
    Reason(
        "refresh_revoked",
        "The refresh token, or the grant it belongs to, was revoked.",
        "Start a new authorization.",
    ),
    Reason(
        "refresh_expired",
        "The refresh token expired.",
        "Start a new authorization.",
    ),
    Reason(
        "refresh_unknown",
        "The refresh token is unknown or malformed (or already purged).",
        "Send the refresh token exactly as received.",
    ),
    Reason(
        "user_denied",
        "The person chose Deny on the consent page.",
        None,
    ),
    Reason(
        "user_disabled",
        "The user is disabled: sign-in and refresh are refused.",
        None,
    ),
    Reason(
        "sign_in_failed",
        "The username or password was wrong at sign-in (or the account is locked for a while).",
        None,
    ),
    Reason(
        "consent_form_invalid",
        "The consent form was not sent by this site's page for this session (expired or "
        "forged CSRF token), or carried no decision.",
        None,
    ),
    Reason(
        "login_required",
        "prompt=none, and nobody is signed in.",
        "Retry without prompt=none so the person can sign in.",
    ),
    Reason(
        "consent_required",
        "prompt=none, and the person has not consented to this request yet.",
        "Retry without prompt=none so the person can consent.",
    ),
    Reason(
        "rate_limited",
        "Too many requests from this client, address or account in the window (429).",
        "Honour Retry-After; do not retry in a loop.",
    ),
    Reason(
        "grant_type_unsupported",
        "The grant_type is missing or not one authgate supports.",
        "Use authorization_code, refresh_token or client_credentials.",
    ),
    Reason(
        "grant_not_allowed",
        "The client may not use this grant or response type (its registration, or "
        "client_credentials for a public client).",
        "Register the grant type, or use one the client was given.",
    ),
    Reason(
        "response_type_unsupported",
        "The response_type is missing or not code.",
        "Send response_type=code.",
    ),
    Reason(
        "nonce_invalid",
        "The OpenID Connect nonce of the authorization request is empty or longer than 512 "
        "characters.",
        "Send a nonce of 1 to 512 characters (a random value per request), or none.",
    ),
    Reason(
        "registration_disabled",
        "Dynamic client registration (POST /oauth2/register) is switched off on this server.",
        "Ask the operator to register the client, or use a client metadata document (an "
        "https client_id) if the server accepts them.",
    ),
    Reason(
        "registration_token_missing",
        "Registration requires an initial access token and the request had none, or one that "
        "is not an initial access token at all.",
        "Send the initial access token the operator gave you as Authorization: Bearer.",
    ),
    Reason(
        "registration_token_invalid",
        "The initial access token is unknown, expired or used up.",
        "Ask the operator for a new initial access token.",
    ),
    Reason(
        "registration_metadata_invalid",
        "The client metadata of a registration is not valid (not a JSON object, a field of "
        "the wrong type or value, an auth method without the keys it needs); the step's "
        "detail names the field.",
        "Fix the field the error_description names (RFC 7591 §2).",
    ),
    Reason(
        "redirect_uri_invalid",
        "A redirect URI of the client metadata is refused (not https, loopback http or a "
        "private-use scheme; a fragment; a host the operator does not allow).",
        "Register https redirect URIs (or loopback http for a native app) on a host the "
        "server allows.",
    ),
    Reason(
        "software_statement_unapproved",
        "The registration carried a software statement; authgate approves no software "
        "statement issuer.",
        "Register without software_statement.",
    ),
    Reason(
        "registration_limit_reached",
        "The server holds as many self-registered clients as the operator allows.",
        None,
    ),
    Reason(
        "token_missing",
        "The request carried no access token (UserInfo).",
        "Send the access token as Authorization: Bearer.",
    ),
    Reason(
        "token_expired",
        "The access token presented has expired.",
        "Refresh the access token, then retry with the new one.",
    ),
    Reason(
        "token_revoked",
        "The access token presented was revoked (by the client, the person, the operator, or "
        "with its grant after a replay).",
        "Start a new authorization, or refresh if the grant is still live.",
    ),
    Reason(
        "token_audience_mismatch",
        "The access token was issued for another audience than the endpoint it was presented "
        "to: at UserInfo, a token for an MCP server (requested with resource) instead of one "
        "for authgate itself.",
        "Request a token without resource for UserInfo; send each token only to its resource.",
    ),
    Reason(
        "token_not_for_person",
        "The access token acts for no person (a client_credentials token) where a person's "
        "token is needed (UserInfo).",
        "Use a token from the authorization code flow.",
    ),
    Reason(
        "scope_insufficient",
        "The access token's scope lacks the one the endpoint needs (openid at UserInfo).",
        "Request the openid scope at authorize.",
    ),
    Reason(
        "token_invalid",
        "The token presented is unknown or malformed (or already purged).",
        None,
    ),
    Reason(
        "request_invalid",
        "The request is malformed in another way (a missing or repeated parameter, an "
        "unsupported prompt, a state too long); the step's detail names it.",
        "Read the error_description the client received.",
    ),
    Reason("grant_invalid", "The grant was refused for another reason; see the detail.", None),
    Reason("client_invalid", "The client was refused for another reason; see the detail.", None),
    Reason("access_denied", "Access was denied for another reason; see the detail.", None),
    Reason(
        "unavailable",
        "authgate could not serve the request (the database or a pool was unavailable).",
        "Retry later, honouring Retry-After.",
    ),
    Reason("server_error", "An unexpected error; the log has it under the request id.", None),
)

BY_CODE: dict[str, Reason] = {reason.code: reason for reason in REASONS}

# (error class, start of ``debug`` or description, code): the first that matches wins, so
# subclasses and specific texts come before their generic fallbacks.
_RULES: tuple[tuple[type[OAuthError], str, str], ...] = (
    (RateLimitedError, "", "rate_limited"),
    (TemporarilyUnavailableError, "", "unavailable"),
    (RedirectUriMismatchError, "", "redirect_uri_not_registered"),
    (InvalidClientError, "The client_id is not known", "client_unknown"),
    (InvalidClientError, "unknown client_id", "client_unknown"),
    (InvalidClientError, "secret mismatch", "client_secret_wrong"),
    (InvalidClientError, "This client must authenticate with", "client_auth_method_mismatch"),
    (InvalidClientError, "public client presented a secret", "client_auth_method_mismatch"),
    (InvalidClientError, "Client authentication is required", "client_auth_missing"),
    (InvalidClientError, "malformed Basic header", "client_auth_malformed"),
    (InvalidClientError, "Basic header without", "client_auth_malformed"),
    (InvalidClientError, "control character in client_id", "client_auth_malformed"),
    (InvalidClientError, "client_assertion", "client_auth_malformed"),
    (InvalidClientError, "The client assertion must name", "client_auth_malformed"),
    (InvalidClientError, "client_id does not match the client assertion", "client_auth_malformed"),
    (InvalidClientError, "The client metadata document", "client_document_invalid"),
    (InvalidClientError, "The client assertion", "client_assertion_invalid"),
    (InvalidClientError, "", "client_invalid"),
    (InvalidRequestError, "Use one client authentication method", "client_auth_method_mismatch"),
    (InvalidRequestError, "client_id in the body does not match", "client_auth_malformed"),
    (InvalidRequestError, "code_challenge is required", "pkce_missing"),
    (InvalidRequestError, "code_challenge", "pkce_invalid"),
    (InvalidRequestError, "Invalid code_challenge_method", "pkce_invalid"),
    (InvalidRequestError, "code_verifier must be", "pkce_invalid"),
    (InvalidRequestError, "The nonce parameter", "nonce_invalid"),
    (InvalidRequestError, "", "request_invalid"),
    (InvalidGrantError, "verifier missing", "pkce_missing"),
    (InvalidGrantError, "The PKCE code verifier is invalid", "pkce_verifier_mismatch"),
    (InvalidGrantError, "code_verifier was sent but", "pkce_downgrade"),
    (InvalidGrantError, "code expired", "code_expired"),
    (InvalidGrantError, "authorization code replayed", "code_replayed"),
    (InvalidGrantError, "authorization code redeemed concurrently", "code_replayed"),
    (InvalidGrantError, "code was issued to another client", "code_other_client"),
    (InvalidGrantError, "unknown or malformed code", "code_unknown"),
    (InvalidGrantError, "code hash mismatch", "code_unknown"),
    (InvalidGrantError, "redirect_uri", "redirect_uri_mismatch"),
    (InvalidGrantError, REFUSED_DEBUG + "other_client", "refresh_other_client"),
    (InvalidGrantError, REFUSED_DEBUG, "refresh_reused_after_rotation"),
    (InvalidGrantError, "refresh token of another client", "refresh_other_client"),
    (InvalidGrantError, "refresh token revoked", "refresh_revoked"),
    (InvalidGrantError, "the user is disabled", "user_disabled"),
    (InvalidGrantError, "refresh token expired", "refresh_expired"),
    (InvalidGrantError, "unknown or malformed refresh token", "refresh_unknown"),
    (InvalidGrantError, "", "grant_invalid"),
    (InvalidTargetError, "The resource is not registered", "resource_not_registered"),
    (InvalidTargetError, "The resource parameter is invalid:", "resource_invalid"),
    (InvalidTargetError, "", "resource_mismatch"),
    (InvalidScopeError, "", "scope_invalid"),
    (UnsupportedGrantTypeError, "", "grant_type_unsupported"),
    (UnauthorizedClientError, "", "grant_not_allowed"),
    (UnsupportedResponseTypeError, "", "response_type_unsupported"),
    (AccessDeniedError, "The resource owner denied", "user_denied"),
    (AccessDeniedError, DISABLED, "registration_disabled"),
    (AccessDeniedError, MAX_CLIENTS_DEBUG, "registration_limit_reached"),
    (AccessDeniedError, "", "access_denied"),
    (InvalidTokenError, INITIAL_ACCESS_TOKEN_MISSING, "registration_token_missing"),
    (InvalidTokenError, INITIAL_ACCESS_TOKEN_INVALID, "registration_token_invalid"),
    (InvalidTokenError, ACCESS_TOKEN_EXPIRED, "token_expired"),
    (InvalidTokenError, ACCESS_TOKEN_REVOKED, "token_revoked"),
    (InvalidTokenError, "The access token was not issued for this", "token_audience_mismatch"),
    (InvalidTokenError, "The access token does not act for a person", "token_not_for_person"),
    (InvalidTokenError, "The access token does not act for an active person", "user_disabled"),
    (InvalidTokenError, "", "token_invalid"),
    (InvalidClientMetadataError, "", "registration_metadata_invalid"),
    (InvalidRedirectUriError, "", "redirect_uri_invalid"),
    (ServerError, "", "server_error"),
)

#: Errors without a class of their own in core/errors.py, by their RFC error code.
_BY_ERROR: dict[str, str] = {
    "login_required": "login_required",
    "consent_required": "consent_required",
    "insufficient_scope": "scope_insufficient",
    "unapproved_software_statement": "software_statement_unapproved",
}


def classify(exc: OAuthError) -> str:
    """The reason code of a refusal core raised."""
    texts = (exc.debug or "", exc.description)
    for kind, start, code in _RULES:
        if isinstance(exc, kind) and any(text.startswith(start) for text in texts):
            return code
    by_error = _BY_ERROR.get(exc.error)
    if by_error is not None:
        return by_error
    return "request_invalid" if exc.status_code < 500 else "server_error"


def markdown() -> str:
    """docs/flow-reasons.md: the table operators read."""
    lines = [
        "# Flow reason codes",
        "",
        "Every refused step of an authorization flow (`authgate flows show`, the admin "
        "console's Flows page, `GET /api/v2/flows`) carries one of these codes. They are "
        "stable: dashboards and alerts may key on them (the metric "
        "`authgate_flow_refusals_total` is labelled with them). Generated from "
        "`src/authgate/core/flow_reasons.py` by `authgate flows reasons --markdown`.",
        "",
        "Steps are recorded for dynamic registration, the authorization request, sign-in, "
        "consent, the code, the token and refresh requests (each with the client's "
        "authentication and its method, and whether an ID token was issued), revocation and "
        "metadata-document fetches; introspection and UserInfo record their refusals only. "
        "Discovery requests (metadata, JWKS) are not recorded: nothing in them ties them to a "
        'client ([decisions.md](decisions.md), "The flow timeline").',
        "",
        "| Code | What happened (for the operator) | What the client's developer should change |",
        "|---|---|---|",
    ]
    for reason in REASONS:
        lines.append(f"| `{reason.code}` | {reason.explanation} | {reason.fix or '—'} |")
    return "\n".join(lines) + "\n"
