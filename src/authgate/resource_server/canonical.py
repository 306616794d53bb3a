"""Canonical resource identifiers (RFC 8707 §2, RFC 9728 §1.2).

"The value of the resource parameter MUST be an absolute URI ... MUST NOT include a fragment
component." One resource has one identifier: scheme and host lower-cased, the default port
dropped, and a lone trailing "/" removed, so `https://MCP.example.com:443/` and
`https://mcp.example.com` name the same resource. Path and query are kept as they are.

A trailing "/" on a path does not make another resource either: `https://host/mcp/` and
`https://host/mcp` are one resource (`same_resource`), whichever spelling was registered. The
token's `aud` is the registered spelling; a client, or a resource server, may use the other.
This module is the one copy of the rule: authgate's server (`core.resources`) calls it too.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MAX_RESOURCE_LENGTH = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}


class InvalidResource(ValueError):
    """The value is not an absolute http(s) URI without a fragment or user information."""


def canonical_resource(value: str) -> str:
    """Return the canonical form of a resource identifier, or raise `InvalidResource`."""
    if len(value) > MAX_RESOURCE_LENGTH or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidResource("the resource identifier is too long or has control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidResource("the resource identifier is not a valid URI") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc or "#" in value:
        raise InvalidResource("the resource must be an absolute http(s) URI without a fragment")
    host = (parts.hostname or "").lower()
    # Any "@" in the authority is user information, even an empty one ("https://@host"):
    # refused, so that no two readers of the identifier disagree on its host.
    if parts.username is not None or parts.password is not None or not host:
        raise InvalidResource("the resource must name a host and no user information")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def trailing_slash_twin(identifier: str) -> str | None:
    """The other spelling of a canonical identifier: its path with one trailing "/" removed, or
    one added; None for a bare origin, whose only spelling is without a path."""
    parts = urlsplit(identifier)
    if not parts.path:
        return None
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def spellings(identifier: str) -> tuple[str, ...]:
    """Every spelling of a canonical identifier that names the same resource, itself first."""
    twin = trailing_slash_twin(identifier)
    return (identifier,) if twin is None else (identifier, twin)


def same_resource(a: str, b: str) -> bool:
    """True when both are valid identifiers of the same resource: equal once canonical, or
    differing only by one trailing "/" on the path."""
    try:
        return canonical_resource(b) in spellings(canonical_resource(a))
    except InvalidResource:
        return False
