"""Scope syntax and negotiation (RFC 6749 §3.3).

"scope = scope-token *( SP scope-token ); scope-token = 1*( %x21 / %x23-5B / %x5D-7E )".
"""

from __future__ import annotations

import re

from authgate.core.errors import InvalidScopeError

_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")
MAX_SCOPE_LENGTH = 1024


def parse_scope(value: str | None) -> tuple[str, ...]:
    """Split a scope string into its tokens, in order, without duplicates."""
    if not value:
        return ()
    if len(value) > MAX_SCOPE_LENGTH:
        raise InvalidScopeError("The scope parameter is too long")
    tokens: list[str] = []
    for token in value.split(" "):
        if not _SCOPE_TOKEN.fullmatch(token):
            raise InvalidScopeError("The scope parameter is malformed")
        if token not in tokens:
            tokens.append(token)
    return tuple(tokens)


def format_scope(tokens: tuple[str, ...] | list[str]) -> str:
    return " ".join(tokens)


def negotiate(requested: str | None, allowed: str | None, known: tuple[str, ...]) -> str:
    """The scope to grant. Every requested scope must be one the resource understands
    (``known``) and, if the app has an allow-list, one it may ask for. Without a request,
    the app's allow-list limited to what the resource understands (or nothing)."""
    wanted = parse_scope(requested)
    permitted = parse_scope(allowed) if allowed is not None else None
    if not wanted:
        return format_scope([t for t in permitted or () if t in known])
    for token in wanted:
        if token not in known:
            raise InvalidScopeError(f"The resource does not define the scope {token!r}")
        if permitted is not None and token not in permitted:
            raise InvalidScopeError(f"The app may not request the scope {token!r}")
    return format_scope(wanted)


def narrow(requested: str | None, granted: str) -> str:
    """A refresh may ask for less than was granted, never more (RFC 6749 §6)."""
    if requested is None:
        return granted
    wanted = parse_scope(requested)
    have = parse_scope(granted)
    extra = [t for t in wanted if t not in have]
    if extra:
        raise InvalidScopeError("The requested scope exceeds the scope originally granted")
    return format_scope(wanted)
