"""The client_credentials grant (RFC 6749 §4.4): a confidential client acting for itself.

"The client credentials grant type MUST only be used by confidential clients" (§4.4); "A
refresh token SHOULD NOT be included" (§4.4.3). Audience and scope are only what an operator
granted the app (``core/service_access.py``: nothing by default); the token's ``sub`` is the
client.

The token belongs to no stored grant: a grant is a user's consent and the family of a refresh
chain (DESIGN.md §4), and this token has neither. Its own row holds everything that revokes it
(its client, the secret it was issued with) and everything introspection answers.
"""

from __future__ import annotations

from authgate.core import admin_scope, flows, service_access
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
        requested = params.get("scope")
        resource, scope = service_access.authorize(
            ctx, client.app, params.get("resource"), requested
        )
        scope = admin_scope.withhold(
            ctx, client.app, resource.identifier, scope, requested=requested
        )
        flows.note(resource=resource.identifier)
        now = ctx.clock.now()
        subject = Grant(  # what the token is minted from, not stored (family=False)
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
            subject,
            resource,
            secret_id=client.secret.id if client.secret else None,
            with_refresh=False,
            scope=scope,
            family=False,
        )
        ctx.store.create_access_token(minted.access)
        return minted.response(now)
