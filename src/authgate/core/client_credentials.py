"""The credentials a client presents at the token, revocation and introspection endpoints
(RFC 6749 §2.3.1, §3.2.1; RFC 7523 §2.2; OAuth 2.1 §2.4), read but not yet checked, and the
methods a client may use.

"The client MUST NOT use more than one authentication method in each request" (RFC 6749
§2.3). What is read here names a client; only ``client_auth.authenticate`` proves it. The rate
limits key on the name too, which is why this reading stands apart from the proof.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote_plus

from authgate.core.client_assertion import ASSERTION_TYPE
from authgate.core.errors import InvalidClientError, InvalidRequestError
from authgate.core.models import App, AuthMethod
from authgate.core.params import Params
from authgate.crypto import jose

#: The kind of authgate secret a client secret is (``agcs_…``).
SECRET_KIND = "cs"


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str | None
    client_secret: str | None
    method: AuthMethod
    client_assertion: str | None = None


def accepted_methods(app: App) -> tuple[AuthMethod, ...]:
    """The methods the token endpoint accepts from ``app``, its registered one first.

    An operator's app that pins no method takes either secret method; otherwise the registered
    method is the only one (DESIGN.md §7) -- except that a client that registered itself with
    ``private_key_jwt`` beside another method (OpenID Connect RP Metadata Choices,
    ``token_endpoint_auth_methods_supported``; core/negotiation.py) has its keys stored, and may
    present an assertion or use its registered method, per request. Only such a client stores
    keys without being ``private_key_jwt``."""
    method = app.token_endpoint_auth_method
    if app.is_public:
        methods: tuple[AuthMethod, ...] = ("none",)
    elif method is None:
        methods = ("client_secret_basic", "client_secret_post")
    else:
        methods = (method,)
    self_registered = app.dynamically_registered or app.metadata_document
    has_keys = app.jwks is not None or bool(app.jwks_uri)
    if self_registered and has_keys and "private_key_jwt" not in methods:
        methods += ("private_key_jwt",)
    return methods


def _check_client_id(client_id: str | None, *, basic: bool) -> None:
    """No client_id holds a control character (they are UUIDs or https URLs), and PostgreSQL
    cannot even compare text with a NUL: such a name is refused here, before any lookup or rate
    limit reads the database, as the unknown client it is (``invalid_client``, 401)."""
    if client_id is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in client_id):
        raise InvalidClientError(debug="control character in client_id", basic=basic)


def _parse_basic(header: str) -> tuple[str, str]:
    _scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClientError(debug="malformed Basic header", basic=True) from exc
    client_id, sep, client_secret = decoded.partition(":")
    if not sep or not client_id:
        raise InvalidClientError(debug="Basic header without client_id:secret", basic=True)
    # RFC 6749 §2.3.1: both are form-urlencoded before being joined.
    client_id = unquote_plus(client_id)
    _check_client_id(client_id, basic=True)
    return client_id, unquote_plus(client_secret)


def _parse_assertion(params: Params, body_id: str | None) -> ClientCredentials:
    """RFC 7523 §2.2: ``client_assertion_type`` + ``client_assertion``; ``client_id`` optional."""
    assertion_type = params.get("client_assertion_type")
    assertion = params.get("client_assertion")
    if assertion_type != ASSERTION_TYPE:
        raise InvalidClientError(
            f"client_assertion_type must be {ASSERTION_TYPE}",
            debug=f"client_assertion_type {assertion_type!r}",
        )
    if not assertion:
        raise InvalidClientError("client_assertion is missing")
    # The client is named by the assertion's sub (§3 item 2; the signature is checked later
    # against that client's keys, and iss/sub/client_id must all agree).
    claims = jose.unverified_claims(assertion)
    subject = claims.get("sub") if claims is not None else None
    if not isinstance(subject, str) or not subject:
        raise InvalidClientError("The client assertion must name the client in sub")
    if body_id is not None and body_id != subject:
        raise InvalidClientError("client_id does not match the client assertion")
    _check_client_id(subject, basic=False)
    return ClientCredentials(subject, None, "private_key_jwt", assertion)


def parse_credentials(authorization: str | None, params: Params) -> ClientCredentials:
    body_id = params.get("client_id")
    body_secret = params.get("client_secret")
    if params.get("client_assertion") is not None or params.get("client_assertion_type"):
        basic = authorization is not None and authorization.lower().startswith("basic ")
        if basic or body_secret is not None:
            raise InvalidRequestError("Use one client authentication method")
        return _parse_assertion(params, body_id)
    if authorization and authorization.split(" ", 1)[0].lower() == "basic":
        client_id, client_secret = _parse_basic(authorization)
        if body_secret is not None:
            raise InvalidRequestError("Use one client authentication method: Basic or the body")
        if body_id is not None and body_id != client_id:
            raise InvalidRequestError("client_id in the body does not match the Basic header")
        return ClientCredentials(client_id, client_secret or None, "client_secret_basic")
    _check_client_id(body_id, basic=False)
    if body_secret is not None:
        return ClientCredentials(body_id, body_secret, "client_secret_post")
    return ClientCredentials(body_id, None, "none")
