"""Authorization server metadata (RFC 8414 §2), the OpenID Provider metadata built on it
(OpenID Connect Discovery 1.0 §3), and protected resource metadata (RFC 9728 §2).

"The issuer value returned MUST be identical to the authorization server's issuer identifier
value into which the well-known URI string was inserted" (RFC 8414 §3.3): every place authgate
names itself uses the one configured string.
"""

from __future__ import annotations

from typing import Any

from authgate.core import id_tokens, scopes
from authgate.core.client_assertion import ALGORITHMS as ASSERTION_ALGORITHMS
from authgate.core.policy import Policy
from authgate.core.token_endpoint import GRANTS


def well_known_paths(issuer: str) -> list[str]:
    """Where the metadata is served: root form, plus the path-insertion form (RFC 8414 §3.1)."""
    path = issuer.split("://", 1)[-1].partition("/")[2].strip("/")
    base = "/.well-known/oauth-authorization-server"
    return [base] if not path else [f"{base}/{path}", base]


def openid_paths(issuer: str) -> list[str]:
    """ "OpenID Providers supporting Discovery MUST make a JSON document available at the path
    formed by concatenating the string /.well-known/openid-configuration to the Issuer"
    (OIDC Discovery §4); the root form too when the issuer has a path (RFC 8414 §5)."""
    path = issuer.split("://", 1)[-1].partition("/")[2].strip("/")
    base = "/.well-known/openid-configuration"
    return [base] if not path else [f"/{path}{base}", base]


def _openid_fields(policy: Policy, base: str) -> dict[str, Any]:
    """What the OpenID Provider document adds to the RFC 8414 one (OIDC Discovery §3)."""
    claims = {*id_tokens.TOKEN_CLAIMS}
    for released in id_tokens.SCOPE_CLAIMS.values():
        claims.update(released)
    return {
        "userinfo_endpoint": f"{base}/oauth2/userinfo",
        # The keys of the access tokens sign the ID tokens (core/id_tokens.py).
        "id_token_signing_alg_values_supported": [policy.signing_alg],
        "subject_types_supported": ["public"],
        "claims_supported": sorted(claims),
        "claim_types_supported": ["normal"],
        "acr_values_supported": [id_tokens.ACR_PASSWORD, id_tokens.ACR_UPSTREAM],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        # Discovery §3: request_uri_parameter_supported is true when omitted; authgate reads
        # neither request objects nor the claims parameter.
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


def authorization_server(
    policy: Policy,
    scopes_supported: list[str],
    *,
    client_id_metadata_documents: bool = False,
    registration_endpoint: bool = False,
    openid: bool = False,
) -> dict[str, Any]:
    """``scopes_supported``: every scope a registered resource defines; the document adds
    ``offline_access`` (accepted everywhere, core/scopes.py), so that a client that requests the
    whole list (as the MCP SDKs do when a resource lists no scopes) asks for what it can get.
    ``openid``: the OpenID Provider document (``openid_paths``): this one, plus the OpenID
    fields and the OpenID scopes authgate honours. The RFC 8414 document leaves those scopes out
    (they are accepted there too), so that an MCP client that asks for every scope listed
    does not start asking for ID tokens it never wanted.
    ``client_id_metadata_documents``: whether https URLs are accepted as client_id (the
    caller passes ``ctx.fetcher is not None``). ``registration_endpoint``: whether dynamic
    registration is on (the runtime setting, ``core.registration_settings``)."""
    issuer = policy.issuer
    base = issuer.rstrip("/")
    auth_methods = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
    confidential_methods = auth_methods[:3]
    signing_algs = sorted(ASSERTION_ALGORITHMS)
    document: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "token_endpoint": f"{base}/oauth2/tokens",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/oauth2/revoke",
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": signing_algs,
        "introspection_endpoint": f"{base}/oauth2/introspect",
        "introspection_endpoint_auth_methods_supported": confidential_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": signing_algs,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "access_token_signing_alg_values_supported": [policy.signing_alg],
        "grant_types_supported": sorted(GRANTS),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": signing_algs,
        "scopes_supported": sorted({*scopes_supported, scopes.OFFLINE_ACCESS}),
        "authorization_response_iss_parameter_supported": True,
        "resource_indicators_supported": True,
    }
    if client_id_metadata_documents:
        document["client_id_metadata_document_supported"] = True
    if registration_endpoint:
        document["registration_endpoint"] = f"{base}/oauth2/register"  # RFC 8414 §2
    if openid:
        document.update(_openid_fields(policy, base))
        listed = {*scopes_supported, scopes.OFFLINE_ACCESS, *id_tokens.HONOURED}
        document["scopes_supported"] = sorted(listed)
    return document


def protected_resource(policy: Policy, scopes_supported: list[str]) -> dict[str, Any]:
    return {
        "resource": policy.audience,
        "authorization_servers": [policy.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes_supported,
        "resource_name": "authgate management API",
    }
