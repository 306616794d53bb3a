"""How authgate authenticates itself at an upstream provider's token endpoint: a client secret
(RFC 6749 §2.3.1, ``client_secret_basic`` or ``client_secret_post``), a client assertion
(RFC 7523 §2.2, ``private_key_jwt``: ``client_assertion.py``), or only its ``client_id`` (a
public client).

The method is the provider's ``token_auth_method``; None (auto) keeps the choice authgate
always made: Basic, or the form when discovery offers only that. An explicit method that the
provider's discovery document does not list is refused before anything is sent
(``auth_method_unsupported``): the provider would refuse it, and the operator learns why from
the audit instead of from a generic ``invalid_client``.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from authgate.core.context import Context
from authgate.core.models import UpstreamProvider
from authgate.core.upstream import client_assertion, providers
from authgate.core.upstream.errors import DOWN, UpstreamInvalidError, UpstreamUnavailableError
from authgate.crypto.encryption import DecryptionError

#: (headers, form fields) of the token request.
Auth = tuple[dict[str, str], dict[str, str]]
#: RFC 8414 §2: "If omitted, the default is "client_secret_basic"".
DEFAULT_METHODS = ["client_secret_basic"]


def secret(ctx: Context, provider: UpstreamProvider) -> str | None:
    """The client secret in clear, or None (a public client, or ``private_key_jwt``)."""
    try:
        return providers.client_secret(ctx, provider)
    except DecryptionError as exc:  # AUTHGATE_SECRET_KEY changed since it was sealed
        raise UpstreamUnavailableError(DOWN, debug="client secret unreadable") from exc


def basic(client_id: str, client_secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: both parts form-encoded before they are joined and base64-encoded."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def _with_secret(provider: UpstreamProvider, method: str, value: str | None) -> Auth:
    if value is None:  # refused when stored (providers.py); a row edited by hand
        raise UpstreamUnavailableError(DOWN, debug=f"{method} without a client secret")
    if method == "client_secret_post":
        return {}, {"client_id": provider.client_id, "client_secret": value}
    return basic(provider.client_id, value), {}


def check_supported(provider: UpstreamProvider, meta: dict[str, Any]) -> None:
    """Refuse an explicit method the provider's metadata lists as unsupported (when it lists
    any). OIDC Discovery §3: ``token_endpoint_auth_methods_supported`` is "JSON array
    containing a list of Client Authentication methods supported by this Token Endpoint"."""
    method = provider.token_auth_method
    listed = meta.get("token_endpoint_auth_methods_supported")
    if method is None or not isinstance(listed, list) or method in listed:
        return
    raise UpstreamInvalidError(
        "The identity provider is not set up correctly on this sign-in service.",
        reason="auth_method_unsupported",
        debug=f"{method} not in token_endpoint_auth_methods_supported {listed[:8]!r}",
    )


def for_oidc(ctx: Context, provider: UpstreamProvider, meta: dict[str, Any]) -> Auth:
    """(headers, form fields) that authenticate authgate at an OpenID Provider."""
    check_supported(provider, meta)
    method = provider.token_auth_method
    if method == "private_key_jwt":
        endpoint = str(meta["token_endpoint"])
        audience = endpoint if provider.assertion_audience == "token_endpoint" else provider.issuer
        return {}, {
            "client_id": provider.client_id,
            "client_assertion_type": client_assertion.ASSERTION_TYPE,
            "client_assertion": client_assertion.assertion(ctx, provider, audience),
        }
    value = secret(ctx, provider)
    if method is not None:
        return _with_secret(provider, method, value)
    if value is None:
        return {}, {"client_id": provider.client_id}
    methods = meta.get("token_endpoint_auth_methods_supported", DEFAULT_METHODS)
    if isinstance(methods, list) and "client_secret_basic" not in methods:
        return _with_secret(provider, "client_secret_post", value)
    return _with_secret(provider, "client_secret_basic", value)


def for_github(ctx: Context, provider: UpstreamProvider) -> Auth:
    """GitHub's token endpoint ("Authorizing OAuth apps", step 2): the secret in the form
    unless the operator asked for Basic; ``client_id`` in the form either way (GitHub lists it
    as a parameter of the request, and RFC 6749 §3.2.1 allows it next to Basic)."""
    method = provider.token_auth_method or "client_secret_post"
    headers, form = _with_secret(provider, method, secret(ctx, provider))
    return headers, {"client_id": provider.client_id, **form}
