"""Plug `TokenVerifier` into a server built with the MCP Python SDK (`pip install mcp`).

The SDK asks a `mcp.server.auth.provider.TokenVerifier` for `verify_token(token) ->
AccessToken | None` and then applies `AuthSettings.required_scopes` and, with
`validate_token_resource`, the audience (RFC 8707) itself; it answers the 401/403 challenges
and serves the RFC 9728 document. `McpTokenVerifier` fills the SDK's `AccessToken` from our
`AccessClaims`: `resource` is the canonical resource the token's `aud` named, `subject` and
the `iss` claim identify the principal (the SDK binds sessions to client, issuer and subject).

The SDK cannot answer 503: when authgate cannot be asked (down, or its metadata names another
issuer than the one configured here), `verify_token` raises and the SDK answers 500. `protect()`
puts the kit's `BearerAuth` in front of the SDK's app, so clients get the kit's answers (401/403
naming the scopes, 503 with `Retry-After` and the reason in the log) and the SDK only ever sees
tokens the kit accepted.

`mcp` is imported only when this module's functions run, so the kit works without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from authgate.resource_server.asgi import BearerAuth
from authgate.resource_server.errors import InvalidToken
from authgate.resource_server.resource_metadata import metadata_url
from authgate.resource_server.verifier import TokenVerifier

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken
    from mcp.server.auth.settings import AuthSettings


class McpTokenVerifier:
    """The MCP SDK's server-side token verifier protocol, backed by `TokenVerifier`.

    An invalid token yields None (the SDK answers 401 `invalid_token`). `VerifierUnavailable`
    is not swallowed: the authorization server being unreachable is an error of ours (500),
    not a reason to send the client through authorization again.
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    async def verify_token(self, token: str) -> AccessToken | None:
        from mcp.server.auth.provider import AccessToken

        try:
            claims = await self.verifier.verify(token)
        except InvalidToken:
            return None
        return AccessToken(
            token=token,
            client_id=claims.client_id,
            scopes=sorted(claims.scopes),
            expires_at=claims.expires_at,
            resource=claims.audience,
            subject=claims.subject,
            claims=dict(claims.raw),
        )


def auth_settings(verifier: TokenVerifier, required_scopes: Sequence[str] = ()) -> AuthSettings:
    """`AuthSettings` for an SDK server that is a resource server of `verifier.issuer`.

    The SDK serves the RFC 9728 document for `resource_server_url` listing the issuer, and
    re-checks each token's resource against it (our verifier has already checked `aud`).
    """
    from mcp.server.auth.settings import AuthSettings

    return AuthSettings(
        issuer_url=verifier.issuer,
        resource_server_url=verifier.resource,
        required_scopes=list(required_scopes) or None,
        validate_token_resource=True,
    )


def protect(sdk_app: ASGIApp, verifier: TokenVerifier, required_scopes: Sequence[str]) -> ASGIApp:
    """The SDK's streamable HTTP app behind `BearerAuth`; its RFC 9728 document (under
    `/.well-known/`) stays public. A token is checked by both (the SDK keeps its own view of
    the caller, which binds sessions to it); only the kit's refusals reach clients."""
    guarded = BearerAuth(
        sdk_app,
        verifier,
        required_scopes=required_scopes,
        resource_metadata_url=metadata_url(verifier.resource),
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/.well-known/"):
            await sdk_app(scope, receive, send)
        else:
            await guarded(scope, receive, send)

    return app
