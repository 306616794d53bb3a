"""Finding the authorization server's endpoints from its metadata (RFC 8414 §3).

"The issuer value returned MUST be identical to the authorization server's issuer identifier
value into which the well-known URI string was inserted" (RFC 8414 §3.3): a document naming
another issuer is refused, so a redirected or spoofed metadata URL cannot hand us its keys.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authgate.resource_server.errors import VerifierUnavailable

WELL_KNOWN = "/.well-known/oauth-authorization-server"
MAX_METADATA_BYTES = 256 * 1024


def metadata_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"{WELL_KNOWN}{path}", "", ""))


def parse_metadata(body: bytes, issuer: str) -> dict[str, Any]:
    """The metadata document, checked to be a JSON object naming exactly our issuer."""
    if len(body) > MAX_METADATA_BYTES:
        raise VerifierUnavailable("the authorization server metadata is too large")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise VerifierUnavailable("the authorization server metadata is not JSON") from exc
    if not isinstance(document, dict):
        raise VerifierUnavailable("the authorization server metadata is not a JSON object")
    named = document.get("issuer")
    if named != issuer:
        # Both issuers in the message: the usual cause is a resource server configured with
        # another spelling of the same server (`http://127.0.0.1:3000` for `localhost:3000`).
        raise VerifierUnavailable(
            f"the authorization server metadata names another issuer: {_shown(named)}, not "
            f"{issuer!r} (configure the issuer exactly as the authorization server spells it)"
        )
    return document


def _shown(value: object) -> str:
    """A value from the document, short enough for a log line."""
    text = repr(value)
    return text if len(text) <= 200 else f"{text[:200]}…"


def endpoint(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or urlsplit(value).scheme not in ("https", "http"):
        raise VerifierUnavailable(f"the authorization server metadata has no {name}")
    return value
