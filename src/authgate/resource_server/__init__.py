"""authgate's resource-server kit: verify the access tokens authgate issues, in any ASGI app or
MCP server. Imports only the standard library, joserfc, httpx and Starlette's ASGI types —
never the rest of authgate — so a resource server can use it on its own. See README.md.
"""

from authgate.resource_server.asgi import BearerAuth, protected_resource_metadata_app
from authgate.resource_server.canonical import InvalidResource, canonical_resource
from authgate.resource_server.claims import AccessClaims
from authgate.resource_server.errors import InvalidToken, VerifierUnavailable
from authgate.resource_server.introspection import Introspection
from authgate.resource_server.resource_metadata import metadata_url
from authgate.resource_server.verifier import TokenVerifier

__all__ = [
    "AccessClaims",
    "BearerAuth",
    "Introspection",
    "InvalidResource",
    "InvalidToken",
    "TokenVerifier",
    "VerifierUnavailable",
    "canonical_resource",
    "metadata_url",
    "protected_resource_metadata_app",
]
