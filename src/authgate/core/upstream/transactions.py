"""The authorization request to an upstream provider (OpenID Connect Core 1.0 §3.1.2.1) and
the transaction that remembers it: code flow, PKCE S256 (RFC 7636), ``state``, ``nonce``.

The transaction is stored, not kept in a cookie, so any node can finish the callback; only a
SHA-256 of ``state`` is stored (the value travels only through the browser), and the callback
consumes it at most once (``ports.UpstreamStore.consume_upstream_transaction``).

GitHub (``kind`` "github") takes the same request at ``{issuer}/login/oauth/authorize``
("Authorizing OAuth apps": ``client_id``, ``redirect_uri``, ``scope``, ``state``, and PKCE
S256, which GitHub verifies when it is sent) without ``nonce``: it issues no ID token that
could carry one, so the transaction stores none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from authgate.core.context import Context
from authgate.core.models import UpstreamProvider, UpstreamTransaction
from authgate.core.upstream import discovery, github, providers, token_auth
from authgate.core.upstream.errors import UpstreamInvalidError, UpstreamRefusedError
from authgate.crypto import pkce, secrets

#: How long a person may take at the provider before the callback is refused.
TTL = timedelta(minutes=10)
STATE_LENGTH = 43
NONCE_LENGTH = 43
VERIFIER_LENGTH = 64  # RFC 7636 §4.1: 43-128 characters of the unreserved set


def callback_path(provider_id: str) -> str:
    return f"/login/upstream/{provider_id}/callback"


def jwks_path(provider_id: str) -> str:
    """Where authgate publishes its ``private_key_jwt`` key for this provider."""
    return f"/login/upstream/{provider_id}/jwks"


def redirect_uri(ctx: Context, provider_id: str) -> str:
    """What the operator registers at the provider: the issuer's origin and path, then the
    callback path."""
    return ctx.policy.issuer.rstrip("/") + callback_path(provider_id)


def usable_provider(ctx: Context, provider_id: str) -> UpstreamProvider:
    provider = providers.find(ctx, provider_id)
    if provider is None or not provider.enabled:
        raise UpstreamRefusedError(
            "This way of signing in is not available.", reason="provider_unknown"
        )
    return provider


def state_hash(state: str) -> str:
    return secrets.sha256_hex(f"upstream-state:{state}")


@dataclass(frozen=True, slots=True)
class Started:
    provider: UpstreamProvider
    url: str  # where the browser goes: the provider's authorization endpoint
    state: str  # kept in a cookie of this browser too (``consume``)


def _with_query(url: str, params: dict[str, str]) -> str:
    """§3.1.2.1 allows an authorization endpoint with a query of its own: keep it."""
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def start(ctx: Context, provider_id: str, return_to: str) -> Started:
    """Store a transaction and build the authorization request for it."""
    provider = usable_provider(ctx, provider_id)
    oidc = provider.kind == "oidc"
    if oidc:
        meta = discovery.metadata(ctx, provider)
        # Refused before the person is sent away, rather than after they signed in there.
        token_auth.check_supported(provider, meta)
        endpoint = str(meta["authorization_endpoint"])
    else:
        endpoint = github.authorization_endpoint(provider)
    state = secrets.random_string(STATE_LENGTH)
    nonce = secrets.random_string(NONCE_LENGTH) if oidc else ""
    verifier = secrets.random_string(VERIFIER_LENGTH)
    now = ctx.clock.now()
    ctx.store.create_upstream_transaction(
        UpstreamTransaction(
            state_hash=state_hash(state),
            provider_id=provider.id,
            nonce=nonce,
            code_verifier=verifier,
            return_to=return_to,
            created_at=now,
            expires_at=now + TTL,
        )
    )
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri(ctx, provider.id),
        "scope": provider.scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
    }
    if not oidc:
        del params["response_type"], params["nonce"]
    return Started(provider, _with_query(endpoint, params), state)


def consume(
    ctx: Context, provider_id: str, state: str | None, browser_state: str | None
) -> UpstreamTransaction:
    """The transaction ``state`` names, consumed; refused when unknown, expired, already used
    (a replayed callback), begun with another provider (a mix-up), or begun in another browser:
    ``browser_state`` is the state this browser's cookie holds, so a callback URL made by an
    attacker for their own account cannot sign a victim in (login CSRF, RFC 9700 §4.7)."""
    found = None
    bound = bool(state and browser_state and secrets.constant_time_equal(state, browser_state))
    if state and bound and len(state) <= 512:
        found = ctx.store.consume_upstream_transaction(state_hash(state), ctx.clock.now())
    if found is None or found.provider_id != provider_id:
        raise UpstreamInvalidError(
            "This sign-in link has expired or was already used. Please start again.",
            reason="state_invalid",
            debug="unknown, expired, used or another provider's state",
        )
    return found
