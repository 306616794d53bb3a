"""The authorization response from an upstream provider, the code exchange and UserInfo
(OpenID Connect Core 1.0 §3.1.2.5-§3.1.3, §5.3; RFC 9207).

Order matters: the transaction is consumed first (a replayed or forged callback stops there,
before any request leaves authgate), then the response's ``iss`` (mix-up defence), then the
provider's own error, then the exchange and the ID token. GitHub (``kind`` "github") has no
discovery, ``iss`` or ID token: after its error and the code, ``github_api`` exchanges the
code and asks its REST API who signed in; its callback path names the provider, and the
transaction must have been begun with that provider (the mix-up defence of distinct redirect
URIs, RFC 9700 §4.4.2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authgate.core import flows
from authgate.core.context import Context
from authgate.core.models import UpstreamProvider, UpstreamTransaction
from authgate.core.upstream import (
    backchannel,
    discovery,
    github_api,
    id_token,
    token_auth,
    transactions,
)
from authgate.core.upstream.errors import (
    DOWN,
    UpstreamInvalidError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
)

_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
#: Claims UserInfo is asked for when the ID token lacks them.
PROFILE_CLAIMS = ("email", "name")


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Who the provider vouched for: the verified ID token's claims, completed by UserInfo."""

    provider: UpstreamProvider
    claims: dict[str, Any]
    return_to: str


def _check_issuer(provider: UpstreamProvider, meta: dict[str, Any], sent: str | None) -> None:
    # RFC 9207 §2.4: "Clients that support this specification MUST extract the value of the iss
    # parameter from authorization responses they receive if the parameter is present. Clients
    # MUST then decode the value ... and compare the result to the issuer identifier of the
    # authorization server where the authorization request was sent to."  And when the metadata
    # says authorization_response_iss_parameter_supported, a response without it is refused.
    required = meta.get("authorization_response_iss_parameter_supported") is True
    if sent is None and not required:
        return
    if sent != provider.issuer:
        raise UpstreamInvalidError(
            "The answer did not come from the identity provider you were sent to.",
            reason="issuer_mismatch",
            debug="iss missing" if sent is None else f"iss {sent[:200]!r}",
        )


def _provider_error(params: Mapping[str, str]) -> UpstreamRefusedError:
    code = params.get("error", "")
    shown = code if _ERROR_CODE.fullmatch(code) else "error"
    return UpstreamRefusedError(
        f"The identity provider did not sign you in ({shown}).",
        reason="provider_error",
        debug=f"error_description {params.get('error_description', '')[:200]!r}",
    )


def exchange(
    ctx: Context, provider: UpstreamProvider, meta: dict[str, Any], code: str, verifier: str
) -> dict[str, Any]:
    """§3.1.3.1-§3.1.3.3: the token response, with an ``id_token`` and ``token_type`` Bearer."""
    headers, form = token_auth.for_oidc(ctx, provider, meta)
    form |= {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": transactions.redirect_uri(ctx, provider.id),
        "code_verifier": verifier,
    }
    headers |= {"Accept": "application/json"}
    answer = backchannel.send(ctx, "POST", str(meta["token_endpoint"]), headers, form)
    body = backchannel.json_object(answer)
    if answer.status >= 500:
        raise UpstreamUnavailableError(DOWN, debug=f"token endpoint {answer.status}")
    if answer.status != 200 or not isinstance(body.get("id_token"), str):
        error = body.get("error")
        raise UpstreamRefusedError(
            "The identity provider did not complete the sign-in.",
            reason="token_exchange_failed",
            debug=f"HTTP {answer.status}, error {str(error)[:64]!r}",
        )
    return body


def _userinfo(
    ctx: Context, meta: dict[str, Any], tokens: dict[str, Any], claims: dict[str, Any]
) -> dict[str, Any]:
    """§5.3.2: "The sub Claim in the UserInfo Response MUST be verified to exactly match the
    sub Claim in the ID Token; if they do not match, the UserInfo Response values MUST NOT be
    used." Fetched only when the ID token lacks a profile claim and the provider has UserInfo."""
    endpoint = meta.get("userinfo_endpoint")
    access = tokens.get("access_token")
    if all(name in claims for name in PROFILE_CLAIMS) or not isinstance(access, str):
        return {}
    if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
        return {}
    headers = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
    answer = backchannel.send(ctx, "GET", endpoint, headers, None)
    info = backchannel.json_object(answer)
    if answer.status != 200 or info.get("sub") != claims["sub"]:
        raise UpstreamInvalidError(
            id_token.BAD, reason="userinfo_invalid", debug=f"UserInfo HTTP {answer.status}"
        )
    return info


def _code(params: Mapping[str, str]) -> str:
    """The provider's own error, else the code it sent."""
    if "error" in params:
        raise _provider_error(params)
    code = params.get("code")
    if not code or len(code) > 4096:
        raise UpstreamInvalidError(
            id_token.BAD, reason="token_exchange_failed", debug="no code in the response"
        )
    return code


def _oidc(
    ctx: Context,
    provider: UpstreamProvider,
    params: Mapping[str, str],
    transaction: UpstreamTransaction,
) -> dict[str, Any]:
    meta = discovery.metadata(ctx, provider)
    _check_issuer(provider, meta, params.get("iss"))
    code = _code(params)
    tokens = exchange(ctx, provider, meta, code, transaction.code_verifier)
    claims = id_token.verify(ctx, provider, tokens["id_token"], transaction.nonce)
    info = _userinfo(ctx, meta, tokens, claims)
    return {**{k: v for k, v in info.items() if k not in claims}, **claims}


def _github(
    ctx: Context,
    provider: UpstreamProvider,
    params: Mapping[str, str],
    transaction: UpstreamTransaction,
) -> dict[str, Any]:
    code = _code(params)
    auth = token_auth.for_github(ctx, provider)
    redirect = transactions.redirect_uri(ctx, provider.id)
    return github_api.claims(ctx, provider, code, transaction.code_verifier, redirect, auth)


def handle(
    ctx: Context, provider_id: str, params: Mapping[str, str], browser_state: str | None
) -> Authenticated:
    """The callback's query, checked in order (module doc); who the provider vouched for."""
    transaction = transactions.consume(ctx, provider_id, params.get("state"), browser_state)
    # From here on, the sign-in is a step of the authorization it returns to (if any).
    flows.note(flow_id=flows.flow_of_return_to(ctx.secret_key, transaction.return_to))
    provider = transactions.usable_provider(ctx, provider_id)
    vouched = _github if provider.kind == "github" else _oidc
    return Authenticated(
        provider, vouched(ctx, provider, params, transaction), transaction.return_to
    )
