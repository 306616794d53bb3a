"""What an audit event says about an app: one set of fields for every event that describes an
app as it now is (``app.created``, ``app.updated``, ``client.registered``, ``client.updated``),
whichever way it came — an operator, dynamic registration (RFC 7591/7592) or a metadata
document. docs/audit-events.md lists them; tests/core/test_audit_events_doc.py holds the two
together.

Never a secret: an app's ``jwks`` is named by its key ids only, its registration access token
not at all.
"""

from __future__ import annotations

from authgate.core import service_access
from authgate.core.client_credentials import accepted_methods
from authgate.core.models import App

#: The fields, in the order ``fields`` writes them.
FIELDS = (
    "name",
    "redirect_uris",
    "client_type",
    "require_pkce",
    "grant_types",
    "scope",
    "first_party",
    "admin_access",
    "token_endpoint_auth_method",
    "token_endpoint_auth_methods",
    "application_type",
    "software_id",
    "software_version",
    "jwks_uri",
    "jwks_kids",
    "service_access",
    "dynamically_registered",
    "metadata_document",
)


def fields(app: App) -> dict[str, object]:
    """The app as an audit event's details (see ``FIELDS``)."""
    kids = sorted(str(k.get("kid", "")) for k in (app.jwks or {}).get("keys", []))
    return {
        "name": app.name,
        "redirect_uris": list(app.redirect_uris),
        "client_type": app.client_type,
        "require_pkce": app.require_pkce,
        "grant_types": list(app.grant_types),
        "scope": app.scope,
        "first_party": app.first_party,
        "admin_access": app.admin_access,
        "token_endpoint_auth_method": app.token_endpoint_auth_method,
        # Every method the token endpoint accepts from the app, its registered one first.
        "token_endpoint_auth_methods": list(accepted_methods(app)),
        "application_type": app.application_type,
        "software_id": app.software_id,
        "software_version": app.software_version,
        "jwks_uri": app.jwks_uri,
        "jwks_kids": kids,
        "service_access": service_access.as_json(app.service_access),
        "dynamically_registered": app.dynamically_registered,
        "metadata_document": app.metadata_document,
    }
