"""The authorization endpoint (RFC 6749 §4.1.1–4.1.2, RFC 7636 §4.3, RFC 8707 §2, RFC 9207).

Checks run in two phases. Until client and redirect_uri are verified, an error must not be
sent to the redirect_uri ("the authorization server SHOULD inform the resource owner of the
error and MUST NOT automatically redirect the user-agent to the invalid redirection URI",
RFC 6749 §4.1.2.1): those raise plain ``OAuthError``s, shown as a page. After, errors raise
``AuthorizationRedirect`` carrying the verified target, and ``may_redirect`` decides whether
it is followed: not for a client that chose its own redirect URI and that the user has never
consented to (RFC 9700 §4.11.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authgate.core import (
    admin_scope,
    clients,
    flows,
    id_tokens,
    pkce,
    redirect_uris,
    resources,
    scopes,
)
from authgate.core.context import Actor, Context
from authgate.core.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidRequestError,
    OAuthError,
    RedirectUriMismatchError,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from authgate.core.models import App, AuthorizationCode, Resource, Session
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
    # OpenID Connect (core/id_tokens.py): echoed in the ID token; the oldest sign-in accepted.
    nonce: str | None = None
    max_age: int | None = None
    login_hint: str | None = None


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
    """An error for the verified redirect_uri of ``app``, with ``state`` and ``iss``; whether
    it is redirected or shown as a page is ``may_redirect``'s decision."""

    def __init__(
        self, error: OAuthError, redirect_uri: str, state: str | None, *, app: App
    ) -> None:
        super().__init__(error.description)
        self.error = error
        self.redirect_uri = redirect_uri
        self.state = state
        self.app = app


def _self_registered(app: App) -> bool:
    return app.dynamically_registered or app.metadata_document


def may_redirect(ctx: Context, exc: AuthorizationRedirect, user_id: str | None) -> bool:
    """Whether an error may be sent to the client's redirect URI rather than shown as a page.

    "the authorization server [...] MAY redirect only if it trusts the redirect URI" (RFC 9700
    §4.11.2). An operator vouched for the URIs of an app it created; a client that registered
    itself (RFC 7591, a metadata document) chose its own, and anyone can make one that points
    anywhere: its errors are a page until the person has consented to it (a code or a grant
    of theirs for it that they have not withdrawn), signed in or not (DESIGN.md §7).
    """
    if not exc.error.redirectable:
        return False
    if not _self_registered(exc.app):
        return True
    return user_id is not None and ctx.store.has_consented(user_id, exc.app.id)


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
            raise RedirectUriMismatchError(
                "redirect_uri is required: the client registered several"
            )
        raise RedirectUriMismatchError(
            "The redirect_uri does not match any registered for the client"
        )
    if redirect_uris.ascii_origin(redirect_uri) is None:
        # Registered before hosts were checked: the consent page could not name it safely.
        raise RedirectUriMismatchError("The client's redirect_uri does not name a valid host")
    return app, redirect_uri, requested is not None


def validate(ctx: Context, params: Params, actor: Actor | None = None) -> AuthorizationRequest:
    """Validate a whole authorization request (GET shows consent, POST issues the code).
    ``actor``: who asks, from where (limits on metadata documents not stored yet)."""
    app, redirect_uri, provided = verify_client(ctx, params, actor)
    # An error response carries "state: REQUIRED if a "state" parameter was present in the
    # client authorization request. The exact value received from the client" (RFC 6749
    # §4.1.2.1): a state that cannot be echoed (too long, repeated) makes the error a page.
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE_LENGTH:
        raise InvalidRequestError("The state parameter is too long")
    try:
        return _validate_rest(ctx, params, app, redirect_uri, provided, state)
    except OAuthError as exc:
        raise AuthorizationRedirect(exc, redirect_uri, state, app=app) from exc


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
    requested = params.get("scope")
    allowed = scopes.allow_list(app.scope, resources.all_scope_names(ctx))
    openid = id_tokens.openid_scopes(requested, allowed)
    scope = scopes.negotiate(requested, allowed, resources.scope_names(resource), openid)
    scope = admin_scope.withhold(ctx, app, resource.identifier, scope, requested=requested)
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
        nonce=id_tokens.check_nonce(params.get("nonce")),
        max_age=id_tokens.parse_max_age(params.get("max_age")),
        login_hint=id_tokens.check_login_hint(params.get("login_hint")),
    )


def issue_code(ctx: Context, request: AuthorizationRequest, session: Session) -> str:
    """Store a single-use code bound to the request and the user of ``session`` (and how they
    signed in, for the ID token); returns the redirect URL."""
    now = ctx.clock.now()
    code = secrets.generate(CODE_KIND)
    ctx.store.create_code(
        AuthorizationCode(
            id=ids.time_ordered_id(),
            prefix=code.prefix,
            code_hash=code.hash,
            app_id=request.app.id,
            user_id=session.user_id,
            redirect_uri=request.redirect_uri,
            redirect_uri_provided=request.redirect_uri_provided,
            code_challenge=request.code_challenge,
            code_challenge_method=request.code_challenge_method,
            scope=request.scope,
            resource=request.resource.identifier,
            state_hash=secrets.sha256_hex(request.state) if request.state else None,
            auth_time=session.created_at,
            created_at=now,
            expires_at=now + ctx.policy.code_ttl,
            flow_id=flows.current_flow_id(),
            amr=session.amr,
            idp=session.idp,
            nonce=request.nonce,
        )
    )
    flows.step("code_issued", code_prefix=code.prefix)
    params = {"code": code.value}
    if request.state is not None:
        params["state"] = request.state
    params["iss"] = ctx.policy.issuer
    return redirect_url(request.redirect_uri, params)


def prompt_error(request: AuthorizationRequest, error: OAuthError) -> AuthorizationRedirect:
    """``login_required`` / ``consent_required``, for the verified redirect_uri."""
    return AuthorizationRedirect(error, request.redirect_uri, request.state, app=request.app)


def deny_url(ctx: Context, request: AuthorizationRequest) -> str:
    """Where the browser goes when the person chose Deny on the consent page, which named the
    redirect's host: always the redirect URI (their own decision, not a request's error)."""
    denied = AccessDeniedError("The resource owner denied the request")
    exc = AuthorizationRedirect(denied, request.redirect_uri, request.state, app=request.app)
    return error_redirect_url(exc, ctx.policy.issuer)
