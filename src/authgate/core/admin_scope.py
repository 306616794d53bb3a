"""authgate's own administrative scope: only for apps an operator created and marked for it.

DESIGN.md §7: "only for apps an operator created and marked for them; never for self-registered
or document clients". Anyone may register a client (RFC 7591, metadata documents); one "Allow"
by an administrator must not hand such a client the management API. RFC 6749 §3.3: "The
authorization server MAY fully or partially ignore the scope requested by the client, based on
the authorization server policy": the scope is narrowed away (the response's ``scope`` and the
consent page show what is granted), and a request that asked for nothing else is
``invalid_scope``, since a token without any of it is not what the client wanted.

The rule is applied wherever a scope is granted (authorize, refresh, client_credentials) and
again wherever the management API reads one (``web/deps.py``), so a grant issued before an app
lost the mark, or before this rule, is not honoured either.
"""

from __future__ import annotations

from authgate.core import scopes
from authgate.core.context import Context
from authgate.core.errors import InvalidScopeError
from authgate.core.models import App

#: The scope of authgate's own API (``resources.OWN_API_SCOPES``) that administers authgate.
ADMIN_SCOPE = "admin"
ADMIN_SCOPES = frozenset({ADMIN_SCOPE})


def may_administer(app: App | None) -> bool:
    """Whether ``app`` may hold authgate's administrative scopes: an operator marked it, and it
    did not register itself (whatever its stored flag says)."""
    return (
        app is not None
        and app.admin_access
        and not (app.dynamically_registered or app.metadata_document)
    )


def withhold(ctx: Context, app: App, resource: str, scope: str, *, requested: str | None) -> str:
    """``scope`` (granted for ``resource``) without the administrative scopes ``app`` may not
    have; ``invalid_scope`` when ``requested`` asked for nothing but those."""
    if resource != ctx.policy.audience or may_administer(app):
        return scope
    granted = scopes.parse_scope(scope)
    kept = [name for name in granted if name not in ADMIN_SCOPES]
    if len(kept) == len(granted):
        return scope
    wanted = scopes.parse_scope(requested)
    if wanted and all(name in ADMIN_SCOPES for name in wanted):
        raise InvalidScopeError(
            "The scope admin is only for apps an operator created and marked for it"
        )
    return scopes.format_scope(kept)
