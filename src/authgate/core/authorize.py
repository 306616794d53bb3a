"""The authorization endpoint (RFC 6749 §4.1.1–4.1.2, RFC 7636 §4.3, RFC 8707 §2, RFC 9207).

Checks run in two phases. Until client and redirect_uri are verified, an error must not be
sent to the redirect_uri ("the authorization server SHOULD inform the resource owner of the
error and MUST NOT automatically redirect the user-agent to the invalid redirection URI",
RFC 6749 §4.1.2.1): those raise plain ``OAuthError``s, shown as a page. After, errors raise
``AuthorizationRedirect`` carrying the verified target.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authgate.core import clients, pkce, redirect_uris, resources, scopes
from authgate.core.context import Actor, Context
from authgate.core.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidRequestError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from authgate.core.models import App, AuthorizationCode, Resource, User
from authgate.core.params import Params
from authgate.crypto import ids, secrets

CODE_KIND = "ac"
MAX_STATE_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A fully validated authorization request, ready for consent."""

    app: App
    redirect_uri: str
    redirect_uri_provided: bool
    state: str | None
    scope: str
    resource: Resource
    code_challenge: str | None
    code_challenge_method: str | None
    # OIDC Core §3.1.2.1 ``prompt``: ``none``, ``login``, ``consent`` (``select_account`` is
    # read as ``login``: authgate has no account chooser, so choosing means signing in).
    prompt: frozenset[str] = frozenset()


class LoginRequiredError(OAuthError):
    """OIDC Core §3.1.2.6: ``prompt=none`` and nobody is signed in."""

    error = "login_required"


class ConsentRequiredError(OAuthError):
    """OIDC Core §3.1.2.6: ``prompt=none`` and the user has not consented to this yet."""

    error = "consent_required"


PROMPTS = frozenset({"none", "login", "consent", "select_account"})


def parse_prompt(value: str | None) -> frozenset[str]:
    """ "If this parameter contains none with any other value, an error is returned" (OIDC Core
    §3.1.2.1). Values authgate does not know are refused rather than silently ignored."""
    if value is None:
        return frozenset()
    words = frozenset(value.split(" "))
    if not words <= PROMPTS:
        raise InvalidRequestError("The prompt parameter has an unsupported value")
    if "none" in words and len(words) > 1:
        raise InvalidRequestError("prompt=none cannot be combined with other values")
    if "select_account" in words:
        words = (words - {"select_account"}) | {"login"}
    return words


class AuthorizationRedirect(Exception):
    """An error to be delivered to the verified redirect_uri with ``state`` and ``iss``."""

    def __init__(
        self, error: OAuthError, redirect_uri: str, state: str | None, *, self_registered: bool
    ) -> None:
        super().__init__(error.description)
        self.error = error
        self.redirect_uri = redirect_uri
        self.state = state
        # A client that registered itself chose its own redirect_uri: until a person has signed
        # in, its errors are shown as a page, so authgate is no open redirector (DESIGN.md §7).
        self.self_registered = self_registered


def redirect_url(redirect_uri: str, params: dict[str, str]) -> str:
    """Add response parameters to the redirect URI, keeping its own query (RFC 6749 §3.1.2)."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def error_redirect_url(exc: AuthorizationRedirect, issuer: str) -> str:
    params = {"error": exc.error.error, "error_description": exc.error.description}
    if exc.state is not None:
        params["state"] = exc.state
    params["iss"] = issuer
    return redirect_url(exc.redirect_uri, params)


def verify_client(
    ctx: Context, params: Params, actor: Actor | None = None
) -> tuple[App, str, bool]:
    """Phase one: the client and its redirect_uri. Errors here are shown, never redirected."""
    client_id = params.get("client_id")
    if client_id is None:
        raise InvalidRequestError("Missing client_id parameter")
    app = clients.find_client(ctx, client_id, actor)
    if app is None:
        raise InvalidClientError("The client_id is not known to this server")
    requested = params.get("redirect_uri")
    redirect_uri = redirect_uris.resolve(app.redirect_uris, requested)
    if redirect_uri is None:
        if requested is None:
            raise InvalidRequestError("redirect_uri is required: the client registered several")
        raise InvalidRequestError("The redirect_uri does not match any registered for the client")
    if redirect_uris.ascii_origin(redirect_uri) is None:
        # Registered before hosts were checked: the consent page could not name it safely.
        raise InvalidRequestError("The client's redirect_uri does not name a valid host")
    return app, redirect_uri, requested is not None


def validate(ctx: Context, params: Params, actor: Actor | None = None) -> AuthorizationRequest:
    """Validate a whole authorization request (GET shows consent, POST issues the code).
    ``actor``: who asks, from where (limits on metadata documents not stored yet)."""
    app, redirect_uri, provided = verify_client(ctx, params, actor)
    state: str | None = None
    try:
        state = params.get("state")
        if state is not None and len(state) > MAX_STATE_LENGTH:
            state = None
            raise InvalidRequestError("The state parameter is too long")
        return _validate_rest(ctx, params, app, redirect_uri, provided, state)
    except OAuthError as exc:
        self_registered = app.dynamically_registered or app.metadata_document
        raise AuthorizationRedirect(
            exc, redirect_uri, state, self_registered=self_registered
        ) from exc


def _validate_rest(
    ctx: Context,
    params: Params,
    app: App,
    redirect_uri: str,
    provided: bool,
    state: str | None,
) -> AuthorizationRequest:
    response_type = params.get("response_type")
    if response_type is None:
        raise InvalidRequestError("Missing required parameter: response_type")
    if response_type != "code":
        raise UnsupportedResponseTypeError("Only response_type=code is supported")
    if "authorization_code" not in app.grant_types:
        raise UnauthorizedClientError("The client may not use the authorization_code grant")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    # OAuth 2.1 §7.5.1: PKCE for every public client; confidential ones may opt out (legacy).
    pkce.check_challenge(challenge, method, required=app.is_public or app.require_pkce)
    resource = resources.resolve(ctx, params.get("resource"))
    scope = scopes.negotiate(params.get("scope"), app.scope, resources.scope_names(resource))
    prompt = parse_prompt(params.get("prompt"))
    return AuthorizationRequest(
        app=app,
        redirect_uri=redirect_uri,
        redirect_uri_provided=provided,
        state=state,
        scope=scope,
        resource=resource,
        code_challenge=challenge,
        code_challenge_method="S256" if challenge is not None else None,
        prompt=prompt,
    )


def issue_code(ctx: Context, request: AuthorizationRequest, user: User, auth_time: datetime) -> str:
    """Store a single-use code bound to the request and the user; returns the redirect URL."""
    now = ctx.clock.now()
    code = secrets.generate(CODE_KIND)
    ctx.store.create_code(
        AuthorizationCode(
            id=ids.time_ordered_id(),
            prefix=code.prefix,
            code_hash=code.hash,
            app_id=request.app.id,
            user_id=user.id,
            redirect_uri=request.redirect_uri,
            redirect_uri_provided=request.redirect_uri_provided,
            code_challenge=request.code_challenge,
            code_challenge_method=request.code_challenge_method,
            scope=request.scope,
            resource=request.resource.identifier,
            state_hash=secrets.sha256_hex(request.state) if request.state else None,
            auth_time=auth_time,
            created_at=now,
            expires_at=now + ctx.policy.code_ttl,
        )
    )
    params = {"code": code.value}
    if request.state is not None:
        params["state"] = request.state
    params["iss"] = ctx.policy.issuer
    return redirect_url(request.redirect_uri, params)


def prompt_error(request: AuthorizationRequest, error: OAuthError) -> AuthorizationRedirect:
    """``login_required`` / ``consent_required``, delivered to the verified redirect_uri."""
    self_registered = request.app.dynamically_registered or request.app.metadata_document
    return AuthorizationRedirect(
        error, request.redirect_uri, request.state, self_registered=self_registered
    )


def deny_url(ctx: Context, request: AuthorizationRequest) -> str:
    denied = AccessDeniedError("The resource owner denied the request")
    exc = AuthorizationRedirect(denied, request.redirect_uri, request.state, self_registered=False)
    return error_redirect_url(exc, ctx.policy.issuer)
