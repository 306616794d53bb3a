"""Scope syntax and negotiation (RFC 6749 §3.3).

"scope = scope-token *( SP scope-token ); scope-token = 1*( %x21 / %x23-5B / %x5D-7E )".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from authgate.core.errors import InvalidScopeError

_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")
MAX_SCOPE_LENGTH = 1024


#: Asked for by clients, never defined by a resource: a refresh token is issued without it
#: (DESIGN.md §5), so it is accepted and left out of the token's scope.
OFFLINE_ACCESS = "offline_access"
#: OpenID Connect scopes (OIDC Core §5.4): accepted; those authgate honours with ``openid``
#: (core/id_tokens.py) are issued, the others left out unless the resource defines them.
OPENID_SCOPES = frozenset({"openid", "profile", "email", "address", "phone"})
#: What a client may send beside the scopes of a resource without being refused.
ACCEPTED_EXTRAS = frozenset({OFFLINE_ACCESS}) | OPENID_SCOPES


def parse_scope(value: str | None) -> tuple[str, ...]:
    """Split a scope string into its tokens, in order, without duplicates. Spaces around and
    between the tokens are tolerated (clients join lists carelessly); anything else that is
    not a scope-token is ``invalid_scope``."""
    if not value:
        return ()
    if len(value) > MAX_SCOPE_LENGTH:
        raise InvalidScopeError("The scope parameter is too long")
    tokens: list[str] = []
    for token in value.split(" "):
        if not token:
            continue
        if not _SCOPE_TOKEN.fullmatch(token):
            raise InvalidScopeError("The scope parameter is malformed")
        if token not in tokens:
            tokens.append(token)
    return tuple(tokens)


def format_scope(tokens: tuple[str, ...] | list[str]) -> str:
    return " ".join(tokens)


def allow_list(app_scope: str | None, defined: Sequence[str]) -> tuple[str, ...] | None:
    """The app's registered ``scope`` as an allow-list, or None for no restriction. A
    registration ``scope`` made only of names no resource defines (claude.ai registers
    ``"claudeai"``) restricts nothing: it would otherwise leave the client no usable token.
    ``defined``: every scope name any registered resource defines."""
    names = parse_scope(app_scope) if app_scope is not None else None
    if names is None or not set(names) & set(defined):
        return None
    return names


def negotiate(
    requested: str | None,
    allowed: tuple[str, ...] | None,
    known: tuple[str, ...],
    honoured: frozenset[str] = frozenset(),
) -> str:
    """The scope to grant (RFC 6749 §3.3: "The authorization server MAY fully or partially
    ignore the scope requested by the client, based on the authorization server policy").

    The request narrowed to what the resource defines (``known``) and the app may have
    (``allowed``, from ``allow_list``; None = anything); a name the resource does not define
    (``offline_access``, OpenID scopes, another resource's scopes) is left out, and may leave
    an empty scope. ``invalid_scope`` only when the client asked for scopes of this resource
    (beside ``ACCEPTED_EXTRAS``) and may have none of them: a token without any of them is not
    what it wanted. Without a request, the app's allow-list limited to what the resource
    defines (or nothing). ``honoured``: names granted beside the resource's (the OpenID scopes
    of ``id_tokens.openid_scopes``), kept in the order they were asked for."""
    wanted = parse_scope(requested)
    if not wanted:
        return format_scope([t for t in allowed or () if t in known])
    granted = [t for t in wanted if t in known and (allowed is None or t in allowed)]
    substantive = [t for t in wanted if t not in ACCEPTED_EXTRAS or t in known]
    if not granted and substantive and all(t in known for t in substantive):
        raise InvalidScopeError(f"The app may not request the scope {substantive[0]!r}")
    return format_scope([t for t in wanted if t in granted or t in honoured])


def narrow(requested: str | None, granted: str, known: tuple[str, ...] = ()) -> str:
    """A refresh may ask for less than was granted, never more (RFC 6749 §6). A name neither
    granted nor defined by the resource (``offline_access``, a client's own label) could never
    have been granted, so it is left out rather than refused: clients send on refresh the scope
    they sent at authorization. A scope the resource defines but was not granted is a widening:
    ``invalid_scope``. Nothing left: what was granted."""
    if requested is None:
        return granted
    wanted = parse_scope(requested)
    have = parse_scope(granted)
    if any(t not in have and t in known for t in wanted):
        raise InvalidScopeError("The requested scope exceeds the scope originally granted")
    kept = [t for t in wanted if t in have]
    return format_scope(kept) if kept else granted
