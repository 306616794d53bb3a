"""authgate's resource-server kit: verify the access tokens authgate issues, in any ASGI app or
MCP server. Imports only the standard library, joserfc, httpx and Starlette's ASGI types —
never the rest of authgate — so a resource server can use it on its own. See README.md.

The names below are loaded on first use (PEP 562): authgate's core imports
``resource_server.canonical`` (one rule for resource identifiers on both sides), and that must
not bring httpx or Starlette into the core's process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authgate.resource_server.asgi import BearerAuth, protected_resource_metadata_app
    from authgate.resource_server.canonical import InvalidResource, canonical_resource
    from authgate.resource_server.claims import AccessClaims
    from authgate.resource_server.errors import InvalidToken, VerifierUnavailable
    from authgate.resource_server.introspection import Introspection
    from authgate.resource_server.resource_metadata import metadata_url
    from authgate.resource_server.verifier import TokenVerifier

_MODULES = {
    "AccessClaims": "claims",
    "BearerAuth": "asgi",
    "Introspection": "introspection",
    "InvalidResource": "canonical",
    "InvalidToken": "errors",
    "TokenVerifier": "verifier",
    "VerifierUnavailable": "errors",
    "canonical_resource": "canonical",
    "metadata_url": "resource_metadata",
    "protected_resource_metadata_app": "asgi",
}
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


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
