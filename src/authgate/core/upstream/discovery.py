"""An upstream provider's metadata (OpenID Connect Discovery 1.0 §4) and JWK Set, cached per
provider for ``TTL`` on this node; the JWK Set is loaded again, once, when an ID token names a
``kid`` it does not hold (the provider rotated its keys).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from authgate.core.context import Context
from authgate.core.models import UpstreamProvider
from authgate.core.ports import FetchError
from authgate.core.upstream.errors import DOWN, UpstreamInvalidError, UpstreamUnavailableError

TTL = timedelta(minutes=15)
#: The metadata members authgate uses, each an https URL.
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


def _get_json(ctx: Context, url: str) -> dict[str, Any]:
    if ctx.upstream is None:
        raise UpstreamUnavailableError(DOWN, debug="no upstream HTTP client on this node")
    try:
        document = ctx.upstream.get_json(url)
        value = json.loads(document.body)
    except FetchError as exc:
        raise UpstreamUnavailableError(DOWN, debug=f"{url}: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise UpstreamUnavailableError(DOWN, debug=f"{url}: not JSON") from exc
    if not isinstance(value, dict):
        raise UpstreamUnavailableError(DOWN, debug=f"{url}: not a JSON object")
    return value


def _https(value: object) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme == "https"


def discovery_url(issuer: str) -> str:
    """§4.1: the issuer with any trailing "/" removed, then "/.well-known/openid-configuration"."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def metadata(ctx: Context, provider: UpstreamProvider) -> dict[str, Any]:
    now = ctx.clock.now()
    key = (provider.id, "metadata")
    cached = ctx.caches.upstream_documents.get(key, now, TTL)
    if cached is not None:
        return cached
    document = _get_json(ctx, discovery_url(provider.issuer))
    # §4.3: "The issuer value returned MUST be identical to the Issuer URL that was used as
    # the prefix to /.well-known/openid-configuration to retrieve the configuration information."
    if document.get("issuer") != provider.issuer:
        raise UpstreamInvalidError(
            "The identity provider is not set up correctly on this sign-in service.",
            reason="issuer_mismatch",
            debug=f"discovery issuer {str(document.get('issuer'))[:200]!r} "
            f"is not {provider.issuer!r}",
        )
    missing = [name for name in ENDPOINTS if not _https(document.get(name))]
    if missing:
        raise UpstreamUnavailableError(DOWN, debug=f"metadata lacks https {', '.join(missing)}")
    ctx.caches.upstream_documents.put(key, now, document)
    return document


def jwks(ctx: Context, provider: UpstreamProvider, *, reload: bool = False) -> list[dict[str, Any]]:
    now = ctx.clock.now()
    key = (provider.id, "jwks")
    cached = None if reload else ctx.caches.upstream_documents.get(key, now, TTL)
    if cached is None:
        cached = _get_json(ctx, str(metadata(ctx, provider)["jwks_uri"]))
        keys = cached.get("keys")
        if not isinstance(keys, list):
            raise UpstreamUnavailableError(DOWN, debug="the JWK Set has no keys array")
        ctx.caches.upstream_documents.put(key, now, cached)
    return [k for k in cached["keys"] if isinstance(k, dict)]
