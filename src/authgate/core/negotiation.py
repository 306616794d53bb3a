"""Metadata negotiation: what authgate keeps of the grant types, response types and
authentication methods a client asks for (RFC 7591 §2; OpenID Connect RP Metadata Choices).

"The authorization server MAY reject or replace any of the client's requested metadata values
submitted during the registration and substitute them with suitable values" (RFC 7591 §2). The
one rule, for dynamic registration bodies and Client ID Metadata Documents alike: a value
authgate does not support (``urn:ietf:params:oauth:grant-type:jwt-bearer`` from claude.ai,
``…:device_code`` from VS Code, ``response_types`` other than ``code``, an auth method it does
not implement or cannot use) is *dropped*, not refused, as long as what remains is usable; the
request is refused only when nothing usable remains (no grant the client can start a flow with,
no auth method it can use), with the reason of the first value dropped.

Auth methods: the client offers ``token_endpoint_auth_method`` and/or the list
``token_endpoint_auth_methods_supported`` (RP Metadata Choices, as ChatGPT publishes: it names
``private_key_jwt`` and lists ``["none", "private_key_jwt"]``). The registered method is
``none`` if offered (the client is public: it may always present nothing), else the one it
named, else the first usable one; a usable ``private_key_jwt`` offered beside it is kept too
(its keys are stored), so that the token endpoint honours either per request
(``client_credentials.accepted_methods``). Whatever was
offered but not registered is reported in ``dropped``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authgate.core.models import AuthMethod, GrantType

#: Keys of a client: (``jwks``, ``jwks_uri``); raises ``Unusable`` with a client-safe reason.
KeyReader = Callable[[Mapping[str, Any]], tuple[dict[str, Any] | None, str]]


class Unusable(Exception):
    """Nothing usable remains; the message is client-safe."""


@dataclass(frozen=True, slots=True)
class Rules:
    """What one kind of client (registered, or a metadata document) may have."""

    grants: frozenset[str]
    #: At least one of these must remain (a flow the client can start).
    starting_grants: frozenset[str]
    default_grants: tuple[GrantType, ...]
    grants_refusal: str
    methods: tuple[AuthMethod, ...]
    default_method: AuthMethod
    method_refusal: Callable[[str], str]
    keys: KeyReader


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What was registered, and what was dropped (field → values, in the client's order)."""

    grant_types: tuple[GrantType, ...]
    token_endpoint_auth_method: AuthMethod
    #: Every method the token endpoint accepts from this client, the registered one first.
    auth_methods: tuple[AuthMethod, ...]
    jwks: dict[str, Any] | None = None
    jwks_uri: str = ""
    dropped: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def public(self) -> bool:
        """A client that may authenticate with nothing is public, whatever else it offers."""
        return "none" in self.auth_methods


def negotiate(body: Mapping[str, Any], rules: Rules) -> Negotiated:
    """Keep what authgate supports of ``body``; raises ``Unusable`` when nothing usable remains."""
    dropped: dict[str, list[str]] = {}
    method, methods, keys = _auth_methods(body, rules, dropped)
    grants = _grants(body, rules, public="none" in methods, dropped=dropped)
    _response_types(body, grants, dropped)
    jwks, jwks_uri = keys if keys is not None else (None, "")
    return Negotiated(
        grant_types=grants,
        token_endpoint_auth_method=method,
        auth_methods=methods,
        jwks=jwks,
        jwks_uri=jwks_uri,
        dropped={name: tuple(values) for name, values in dropped.items() if values},
    )


def as_audit(dropped: Mapping[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """``dropped`` as an audit detail (JSON lists)."""
    return {name: list(values) for name, values in dropped.items()}


def _strings(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return list(dict.fromkeys(value))


def _auth_methods(
    body: Mapping[str, Any], rules: Rules, dropped: dict[str, list[str]]
) -> tuple[AuthMethod, tuple[AuthMethod, ...], tuple[dict[str, Any] | None, str] | None]:
    named = body.get("token_endpoint_auth_method")
    if named is not None and not isinstance(named, str):
        raise Unusable(rules.method_refusal(repr(named)))
    listed = body.get("token_endpoint_auth_methods_supported")
    offered = _strings(listed) if listed is not None else []
    if offered is None:  # not a list of names: nothing to choose from, the rest decides
        dropped.setdefault("token_endpoint_auth_methods_supported", []).append(str(listed)[:64])
        offered = []
    candidates = list(dict.fromkeys(([named] if named else []) + offered))
    if not candidates:
        candidates = [rules.default_method]
    usable: list[AuthMethod] = []
    keys: tuple[dict[str, Any] | None, str] | None = None
    reasons: list[str] = []
    for candidate in candidates:
        if candidate not in rules.methods:
            reasons.append(rules.method_refusal(candidate))
            dropped.setdefault("token_endpoint_auth_methods", []).append(candidate)
            continue
        if candidate == "private_key_jwt":
            try:
                keys = rules.keys(body)
            except Unusable as exc:
                reasons.append(str(exc))
                dropped.setdefault("token_endpoint_auth_methods", []).append(candidate)
                continue
        usable.append(candidate)  # in rules.methods
    if not usable:
        raise Unusable(reasons[0])
    # "none" among the usable ones makes the client public whatever else it offers: it may
    # always authenticate with nothing, so no other method adds to what it can do.
    chosen: AuthMethod = "none" if "none" in usable else (named if named in usable else usable[0])
    methods: tuple[AuthMethod, ...] = (chosen,)
    if chosen != "private_key_jwt" and "private_key_jwt" in usable:
        methods += ("private_key_jwt",)
    for candidate in usable:
        if candidate not in methods:  # usable, but a client has one secret method at most
            dropped.setdefault("token_endpoint_auth_methods", []).append(candidate)
    return chosen, methods, keys


def _grants(
    body: Mapping[str, Any], rules: Rules, *, public: bool, dropped: dict[str, list[str]]
) -> tuple[GrantType, ...]:
    value = body.get("grant_types")
    if value is None:
        return rules.default_grants
    names = _strings(value)
    if not names:
        raise Unusable(rules.grants_refusal)
    kept: list[GrantType] = []
    for name in names:
        # RFC 6749 §4.4: "The client credentials grant type MUST only be used by confidential
        # clients" -- dropped from a public one like any grant it cannot use.
        if name in rules.grants and not (public and name == "client_credentials"):
            kept.append(name)  # type: ignore[arg-type]  # checked: in rules.grants
        else:
            dropped.setdefault("grant_types", []).append(name)
    if not any(g in rules.starting_grants for g in kept):
        if public and "client_credentials" in names and "client_credentials" in rules.grants:
            raise Unusable("client_credentials is only for confidential clients")
        raise Unusable(rules.grants_refusal)
    return tuple(kept)


def _response_types(
    body: Mapping[str, Any], grants: tuple[GrantType, ...], dropped: dict[str, list[str]]
) -> None:
    value = body.get("response_types")
    if value is None:
        return
    names = _strings(value)
    if names is None:
        raise Unusable("response_types must be an array of strings")
    for name in names:
        if name != "code":
            dropped.setdefault("response_types", []).append(name)
    # RFC 7591 §2.1: authorization_code goes with the code response type, and only with it.
    if ("code" in names) != ("authorization_code" in grants):
        raise Unusable(
            "response_types code and grant_types authorization_code go together: the only "
            "response type this server supports is code"
        )
