"""Client metadata of dynamic client registration (RFC 7591 §2) and of its updates (RFC 7592
§2.2): one check per field, and what a registered client's app row is made of.

Unknown fields are ignored; grant types, response types and authentication methods that
authgate does not support are dropped, not refused, while what remains is usable
(core/negotiation.py). A software statement is refused (RFC 7591 §3.2.2): authgate approves
no issuer of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authgate.core import (
    client_metadata,
    negotiation,
    redirect_uris,
    scopes,
)
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import Context
from authgate.core.errors import (
    InvalidClientMetadataError,
    InvalidRedirectUriError,
    OAuthError,
)
from authgate.core.models import (
    ApplicationType,
    AuthMethod,
    GrantType,
    RegistrationSettings,
)

AUTH_METHODS: tuple[AuthMethod, ...] = (
    "none",
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
)
DEFAULT_METHOD: AuthMethod = "client_secret_basic"
DEFAULT_GRANTS: tuple[GrantType, ...] = ("authorization_code", "refresh_token")
GRANTS = frozenset({"authorization_code", "refresh_token", "client_credentials"})
MAX_NAME = 64
MAX_URL = 2048
MAX_TEXT = 255
MAX_CONTACTS = 10
MAX_CONTACT = 320


class UnapprovedSoftwareStatementError(OAuthError):
    """RFC 7591 §3.2.2: authgate approves no software statement issuer, so it refuses any."""

    error = "unapproved_software_statement"
    redirectable = False


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """Validated RFC 7591 §2 client metadata (empty string / None = not registered)."""

    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: AuthMethod
    grant_types: tuple[GrantType, ...]
    application_type: ApplicationType
    client_name: str
    client_uri: str = ""
    logo_uri: str = ""
    tos_uri: str = ""
    policy_uri: str = ""
    contacts: tuple[str, ...] = ()
    scope: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str = ""
    software_id: str = ""
    software_version: str = ""

    @property
    def public(self) -> bool:
        return self.token_endpoint_auth_method == "none"


def bad(message: str) -> InvalidClientMetadataError:
    return InvalidClientMetadataError(message)


# The metadata checks, one per field (RFC 7591 §2).


def _text(body: Mapping[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad(f"{name} must be a string")
    if len(value) > limit:
        raise bad(f"{name} must be at most {limit} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise bad(f"{name} must not contain control characters")
    return value.strip()


def _https_url(body: Mapping[str, Any], name: str) -> str:
    """``client_uri``, ``logo_uri``, ``tos_uri``, ``policy_uri``, ``jwks_uri``: https only."""
    value = _text(body, name, MAX_URL)
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc or parts.fragment:
        raise bad(f"{name} must be an https URL with a host and no user information")
    return value


def _method_refusal(method: str) -> str:
    return f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}"


def _negotiate(ctx: Context, body: Mapping[str, Any]) -> negotiation.Negotiated:
    """Grant types, response types and auth methods (core/negotiation.py)."""
    rules = negotiation.Rules(
        grants=GRANTS,
        starting_grants=frozenset({"authorization_code", "client_credentials"}),
        default_grants=DEFAULT_GRANTS,
        grants_refusal=(
            "grant_types must include authorization_code or client_credentials "
            f"(this server supports {', '.join(sorted(GRANTS))})"
        ),
        methods=AUTH_METHODS,
        # RFC 7591 §2: "If unspecified or omitted, the default is client_secret_basic".
        default_method=DEFAULT_METHOD,
        method_refusal=_method_refusal,
        keys=lambda b: _keys(ctx, b),
    )
    try:
        return negotiation.negotiate(body, rules)
    except negotiation.Unusable as exc:
        raise bad(str(exc)) from exc


def _application_type(body: Mapping[str, Any]) -> ApplicationType | None:
    value = body.get("application_type")
    if value is not None and value not in ("web", "native"):
        raise bad("application_type must be web or native")
    return value


def _is_native_only(uri: str) -> bool:
    """A loopback http URI (RFC 8252 §7.3) or a private-use scheme (RFC 8252 §7.1)."""
    scheme = urlsplit(uri).scheme.lower()
    return redirect_uris.is_loopback(uri) or scheme not in ("http", "https")


def _is_local_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_application_type(uris: tuple[str, ...], kind: ApplicationType) -> None:
    """OpenID Connect Registration §2: "Web Clients using the OAuth Implicit Grant Type MUST
    only register URLs using the https scheme as redirect_uris; they MUST NOT use localhost as
    the hostname." authgate holds every web client to it; a native client may use loopback http,
    a private-use scheme, or a claimed https URI (RFC 8252 §7.2, as VS Code registers)."""
    if kind != "web":
        return
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme.lower() != "https" or _is_local_host((parts.hostname or "").lower()):
            raise InvalidRedirectUriError(
                "A web client's redirect URIs must be https on a host other than localhost; "
                f"register {uri} with application_type native"
            )


def _redirect_uris(
    body: Mapping[str, Any],
    grants: tuple[GrantType, ...],
    public: bool,
    settings: RegistrationSettings,
) -> tuple[str, ...]:
    value = body.get("redirect_uris")
    if not value and "authorization_code" not in grants:
        return ()  # a client_credentials client sends nobody anywhere
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise InvalidRedirectUriError("redirect_uris must be a non-empty array of URIs")
    uris = redirect_uris.validate_redirect_uris(value, public=public)
    if settings.redirect_hosts:
        for uri in uris:
            if not runtime_settings.redirect_allowed(uri, settings.redirect_hosts):
                raise InvalidRedirectUriError(
                    f"The redirect URI {uri} is not on a host this server accepts for "
                    "dynamically registered clients"
                )
    return uris


def _name(body: Mapping[str, Any], uris: tuple[str, ...], client_uri: str) -> str:
    name = _text(body, "client_name", MAX_NAME)
    if name:
        return name
    source = client_uri or (uris[0] if uris else "")
    parts = urlsplit(source)
    host = parts.hostname or parts.scheme
    return f"Client ({host})"[:MAX_NAME] if host else "Client"


def _contacts(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("contacts")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_CONTACTS:
        raise bad(f"contacts must be an array of at most {MAX_CONTACTS} strings")
    checked = []
    for contact in value:
        if (
            not isinstance(contact, str)
            or not 1 <= len(contact.strip()) <= MAX_CONTACT
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in contact)
        ):
            raise bad(f"every contact must be 1 to {MAX_CONTACT} printable characters")
        checked.append(contact.strip())
    return tuple(checked)


def _scope(body: Mapping[str, Any]) -> str | None:
    value = body.get("scope")
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad("scope must be a space-separated string")
    try:
        return scopes.format_scope(scopes.parse_scope(value.strip())) or None
    except OAuthError as exc:
        raise bad(f"scope: {exc.description}") from exc


def _keys(ctx: Context, body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """``private_key_jwt`` needs the client's public keys: ``jwks`` or ``jwks_uri``; raises
    ``negotiation.Unusable`` when they cannot be used (authgate encrypts nothing to clients, so
    a client without that method registers no keys)."""
    # RFC 7591 §2: "The jwks_uri and jwks parameters MUST NOT both be present".
    if (body.get("jwks") is None) == (body.get("jwks_uri") is None):
        raise negotiation.Unusable("private_key_jwt needs exactly one of jwks and jwks_uri")
    if body.get("jwks_uri") is not None:
        if ctx.fetcher is None:
            raise negotiation.Unusable(
                "this server does not fetch jwks_uri; register the keys as jwks"
            )
        try:
            return None, _https_url(body, "jwks_uri")
        except OAuthError as exc:
            raise negotiation.Unusable(exc.description) from exc
    try:
        return client_metadata.check_jwks(body["jwks"]), ""
    except client_metadata.InvalidDocument as exc:
        raise negotiation.Unusable(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Parsed:
    """The metadata to register, and what the client asked for and was not registered
    (core/negotiation.py), for the audit entry."""

    metadata: ClientMetadata
    dropped: Mapping[str, tuple[str, ...]]


def parse_metadata(ctx: Context, body: Mapping[str, Any], settings: RegistrationSettings) -> Parsed:
    """Validate a registration (or RFC 7592 update) request; unknown fields are ignored
    (RFC 7591 §2: "The authorization server MUST ignore any client metadata sent by the client
    that it does not understand")."""
    if body.get("software_statement") is not None:
        raise UnapprovedSoftwareStatementError(
            "This server does not accept software statements; register without one"
        )
    negotiated = _negotiate(ctx, body)
    public = negotiated.public
    grants = negotiated.grant_types
    stated = _application_type(body)
    uris = _redirect_uris(body, grants, public, settings)
    # Without application_type, the URIs say what the client is: many MCP clients on the
    # user's machine (loopback callbacks) omit it, and would be refused as "web" clients.
    kind: ApplicationType = stated or ("native" if any(_is_native_only(u) for u in uris) else "web")
    _check_application_type(uris, kind)
    client_uri = _https_url(body, "client_uri")
    metadata = ClientMetadata(
        redirect_uris=uris,
        token_endpoint_auth_method=negotiated.token_endpoint_auth_method,
        grant_types=grants,
        application_type=kind,
        client_name=_name(body, uris, client_uri),
        client_uri=client_uri,
        logo_uri=_https_url(body, "logo_uri"),
        tos_uri=_https_url(body, "tos_uri"),
        policy_uri=_https_url(body, "policy_uri"),
        contacts=_contacts(body),
        scope=_scope(body),
        jwks=negotiated.jwks,
        jwks_uri=negotiated.jwks_uri,
        software_id=_text(body, "software_id"),
        software_version=_text(body, "software_version"),
    )
    return Parsed(metadata, negotiated.dropped)


def app_fields(metadata: ClientMetadata) -> dict[str, Any]:
    """The app row's fields that the metadata sets (on registration and on every update)."""
    return {
        "name": metadata.client_name,
        "icon": metadata.logo_uri,
        "redirect_uris": metadata.redirect_uris,
        "client_type": "public" if metadata.public else "confidential",
        "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
        "grant_types": metadata.grant_types,
        "scope": metadata.scope,
        "application_type": metadata.application_type,
        "client_uri": metadata.client_uri,
        "tos_uri": metadata.tos_uri,
        "policy_uri": metadata.policy_uri,
        "contacts": metadata.contacts,
        "jwks": metadata.jwks,
        "jwks_uri": metadata.jwks_uri,
        "software_id": metadata.software_id,
        "software_version": metadata.software_version,
    }
