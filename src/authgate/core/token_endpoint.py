"""The token endpoint (RFC 6749 §3.2): client authentication, then the grant's handler."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from authgate.core import client_auth, client_credentials, flows
from authgate.core.context import Actor, Context
from authgate.core.errors import UnauthorizedClientError, UnsupportedGrantTypeError
from authgate.core.grants.authorization_code import AuthorizationCodeGrant
from authgate.core.grants.base import GrantHandler
from authgate.core.grants.client_credentials import ClientCredentialsGrant
from authgate.core.grants.refresh_token import RefreshTokenGrant
from authgate.core.models import App
from authgate.core.params import Params
from authgate.core.ports import StoreUnavailableError
from authgate.core.tokens import TokenResponse

log = logging.getLogger("authgate.token")
TOUCH_INTERVAL = timedelta(hours=1)
GRANTS: Mapping[str, GrantHandler] = {
    handler.grant_type: handler
    for handler in (AuthorizationCodeGrant(), RefreshTokenGrant(), ClientCredentialsGrant())
}


def exchange(
    ctx: Context, params: Params, authorization: str | None, actor: Actor
) -> TokenResponse:
    grant_type = params.get("grant_type")
    handler = GRANTS.get(grant_type or "")
    if handler is None:
        raise UnsupportedGrantTypeError("The grant type is missing or unsupported")
    creds = client_credentials.parse_credentials(authorization, params)
    client = client_auth.authenticate(ctx, creds, actor)
    # Said by the step that follows (flows.authenticated): the method, never a value.
    flows.authenticated(client.method)
    if grant_type not in client.app.grant_types:
        raise UnauthorizedClientError(f"The client may not use the {grant_type} grant")
    response = handler.handle(ctx, client, params, actor.as_client(client.app.id))
    _touch(ctx, client.app)
    return response


def _touch(ctx: Context, app: App) -> None:
    """Only a successful token request counts as use (unused registered clients expire); the
    write is skipped when the last one is recent, to keep it off the hot path."""
    now = ctx.clock.now()
    if app.last_used_at is None or now - app.last_used_at > TOUCH_INTERVAL:
        try:
            ctx.store.touch_app(app.id, now)
        except StoreUnavailableError as exc:
            # The tokens are committed: a 503 now would make the client retry a consumed code
            # (a replay, which revokes the grant). The touch waits for the next request.
            log.warning("could not record the use of app %s: %s", app.id, exc)
