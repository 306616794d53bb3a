"""Protected resource metadata (RFC 9728 §2, §3.1).

"Protected resource metadata ... is obtained by inserting a well-known URI string into the
protected resource's resource identifier between the host component and the path and/or query
components, if any" (RFC 9728 §3.1). A resource without a path gets the plain well-known URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authgate.resource_server.canonical import canonical_resource

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def metadata_path(resource: str) -> str:
    """The path (and query) at which this resource's metadata is served."""
    parts = urlsplit(canonical_resource(resource))
    return f"{WELL_KNOWN}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def metadata_url(resource: str) -> str:
    """The absolute URL of the metadata: the value of `resource_metadata` in challenges."""
    parts = urlsplit(canonical_resource(resource))
    path, _, query = metadata_path(resource).partition("?")
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def document(
    resource: str,
    authorization_servers: Sequence[str],
    scopes_supported: Sequence[str] | None = None,
    resource_name: str | None = None,
) -> dict[str, Any]:
    """RFC 9728 §2: `resource` is required; "bearer_methods_supported" says header only (RFC
    6750 §2.1), because a token in a URL ends up in logs."""
    body: dict[str, Any] = {
        "resource": canonical_resource(resource),
        "authorization_servers": list(authorization_servers),
        "bearer_methods_supported": ["header"],
    }
    if scopes_supported is not None:
        body["scopes_supported"] = list(scopes_supported)
    if resource_name is not None:
        body["resource_name"] = resource_name
    return body
