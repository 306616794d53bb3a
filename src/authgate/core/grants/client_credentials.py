"""The client_credentials grant (RFC 6749 §4.4): a confidential client acting for itself.

"The client credentials grant type MUST only be used by confidential clients" (§4.4); "A
refresh token SHOULD NOT be included" (§4.4.3). Audience and scope follow the same rules as the
other grants; the token's ``sub`` is the client.
"""

from __future__ import annotations

from authgate.core import resources, scopes
from authgate.core.client_auth import AuthenticatedClient
from authgate.core.context import Actor, Context
from authgate.core.errors import UnauthorizedClientError
from authgate.core.models import Grant
from authgate.core.params import Params
from authgate.core.tokens import TokenResponse, mint
from authgate.crypto import ids


class ClientCredentialsGrant:
    grant_type = "client_credentials"

    def handle(
        self, ctx: Context, client: AuthenticatedClient, params: Params, actor: Actor
    ) -> TokenResponse:
        if client.app.is_public or client.method == "none":
            raise UnauthorizedClientError("client_credentials is only for confidential clients")
        resource = resources.resolve(ctx, params.get("resource"))
        scope = scopes.negotiate(
            params.get("scope"), client.app.scope, resources.scope_names(resource)
        )
        now = ctx.clock.now()
        grant = Grant(
            id=ids.time_ordered_id(),
            app_id=client.app.id,
            user_id=None,
            resource=resource.identifier,
            scope=scope,
            auth_time=None,
            created_at=now,
        )
        minted = mint(
            ctx,
            grant,
            resource,
            secret_id=client.secret.id if client.secret else None,
            with_refresh=False,
            scope=scope,
        )
        ctx.store.create_grant(grant, minted.access)
        return minted.response(now)
