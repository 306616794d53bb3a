"""Resource indicators (RFC 8707 §2).

"The value of the resource parameter MUST be an absolute URI ... MUST NOT include a fragment
component." The token's audience is the resource; without one, authgate's own API.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from authgate.core.errors import InvalidTargetError

MAX_RESOURCE_LENGTH = 2048


def canonical_resource(value: str) -> str:
    """Validate a resource indicator and return its canonical form.

    Canonical form: scheme and host lower-cased, the default port (:443 for https, :80 for http)
    dropped, and an empty path or a lone trailing slash removed, so `https://mcp.example.com/`
    and `https://MCP.example.com:443` name the same resource. Path and query are kept as sent.
    """
    if len(value) > MAX_RESOURCE_LENGTH or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidTargetError("The resource parameter is invalid")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidTargetError("The resource parameter is invalid") from exc
    if not parts.scheme or not parts.netloc or "#" in value:
        raise InvalidTargetError("The resource must be an absolute URI without a fragment")
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidTargetError("The resource must be an http or https URI")
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if parts.username or parts.password or not host:
        raise InvalidTargetError("The resource parameter is invalid")
    default = {"https": 443, "http": 80}[scheme]
    netloc = host if port in (None, default) else f"{host}:{port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def same_resource(a: str, b: str) -> bool:
    try:
        return canonical_resource(a) == canonical_resource(b)
    except InvalidTargetError:
        return False
