"""private_key_jwt client authentication (RFC 7523 §2.2 and §3; OpenID Connect Core §9).

The client proves itself with a JWT it signed with a private key whose public half it
registered (``jwks``) or publishes (``jwks_uri``). Every failure is ``invalid_client`` (RFC
7523 §3.2), with a description that names the rule, never the key material, and consumes
nothing: the ``jti`` is recorded only once every other check has passed.

Audience (draft-ietf-oauth-rfc7523bis): the issuer identifier, as the only value. For clients
written against RFC 7523 and OpenID Connect Core §9, the token endpoint URL as a single string
is accepted too. Anything else is refused: an array that also names another audience (an
assertion made for several servers can be replayed by any of them), and the revocation or
introspection URL (an assertion sent there is not one the client meant for authgate's token
endpoint; the draft closes exactly that door).

Lifetime: ``exp`` at most ``MAX_LIFETIME`` (1 hour, the default of Authlib and other client
libraries) plus ``LEEWAY`` ahead; its ``jti`` is remembered until ``exp`` + ``LEEWAY``, so the
assertion cannot be replayed while it is valid.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from authgate.core.caches import FetchedKeys
from authgate.core.context import Context
from authgate.core.errors import InvalidClientError
from authgate.core.models import App
from authgate.core.ports import FetchBusyError, FetchError
from authgate.crypto import jose

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Asymmetric only: "none" proves nothing, and an HMAC keyed with a *public* key is forgeable.
ALGORITHMS = ["ES256", "EdDSA", "PS256", "RS256"]
LEEWAY = timedelta(seconds=60)
# Authlib's private_key_jwt assertions live one hour (``expires_in=3600``); so may any.
MAX_LIFETIME = timedelta(hours=1)
MAX_JTI_LENGTH = 256
# jwks_uri: keep the keys for the document's max-age within these bounds; on an unknown kid
# fetch again, but at most once a minute (a flood of bogus kids must not become a flood of
# fetches).
KEYS_DEFAULT_TTL = timedelta(minutes=5)
KEYS_MIN_TTL = timedelta(minutes=1)
KEYS_MAX_TTL = timedelta(hours=1)
REFETCH_INTERVAL = timedelta(minutes=1)


def _refused(description: str, debug: str | None = None) -> InvalidClientError:
    return InvalidClientError(f"The client assertion is invalid: {description}", debug=debug)


def jwks_uri_keys(ctx: Context, app: App, kid: str | None) -> list[dict[str, Any]]:
    """The keys ``app`` publishes at its ``jwks_uri``, from this node's copy
    (``caches.ClientKeys``) while it is fresh and knows ``kid``, else fetched again (at most
    once per ``REFETCH_INTERVAL``)."""
    now = ctx.clock.now()
    entry = ctx.caches.client_keys.get(app.id)
    if entry is not None and entry.jwks_uri != app.jwks_uri:
        entry = None  # the client moved its keys
    if entry is not None:
        known = kid is None or any(k.get("kid") == kid for k in entry.keys)
        fresh = entry.error is None and entry.expires_at > now
        if (fresh and known) or now - entry.fetched_at < REFETCH_INTERVAL:
            return _usable(entry)
    return _usable(_fetch_keys(ctx, app, now, entry))


def _usable(entry: FetchedKeys) -> list[dict[str, Any]]:
    if not entry.keys:
        raise _refused(entry.error or "the client's jwks_uri holds no keys")
    return list(entry.keys)


def _fetch_keys(ctx: Context, app: App, now: datetime, previous: FetchedKeys | None) -> FetchedKeys:
    try:
        if ctx.fetcher is None:
            raise FetchError("this server does not fetch jwks_uri")
        try:
            document = ctx.fetcher.fetch(app.jwks_uri)
        except FetchBusyError as exc:
            # Nothing was tried: the keys we had serve, and the next request may fetch.
            if previous is not None and previous.keys:
                return previous
            raise _refused(f"jwks_uri: {exc}", debug="fetch pool busy") from exc
        keys = _key_list(document.body)
        age = document.max_age
        ttl = KEYS_DEFAULT_TTL if age is None else timedelta(seconds=age)
        ttl = min(max(ttl, KEYS_MIN_TTL), KEYS_MAX_TTL)
        entry = FetchedKeys(app.jwks_uri, tuple(keys), now, now + ttl)
    except (FetchError, ValueError) as exc:
        # Keep serving the keys we had (a brief outage of the client's server), but record
        # the attempt so the next one waits REFETCH_INTERVAL.
        kept = previous.keys if previous is not None else ()
        entry = FetchedKeys(app.jwks_uri, kept, now, now, error=f"jwks_uri: {exc}")
    ctx.caches.client_keys.put(app.id, entry)
    return entry


def _key_list(body: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deeply nested: Recursion
        raise ValueError("the key set is not valid JSON") from exc
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise ValueError("the document is not a JWK Set")
    return keys


def token_endpoints(issuer: str) -> frozenset[str]:
    """The token endpoint URLs (and its alias) older clients put in ``aud``."""
    base = issuer.rstrip("/")
    return frozenset({base + "/oauth2/tokens", base + "/oauth2/token"})


def _check_audience(issuer: str, aud: Any) -> None:
    # draft-ietf-oauth-rfc7523bis §4 (updating RFC 7523 §3): "The JWT MUST contain an "aud"
    # (audience) claim containing the issuer identifier [RFC8414] of the authorization server
    # as its sole value."
    if aud == issuer or aud == [issuer]:
        return
    # The token endpoint URL as a single string: what RFC 7523 ("MAY be used") and OpenID
    # Connect Core §9 ("SHOULD be the URL of the Authorization Server's Token Endpoint") told
    # clients to send, and what Authlib still sends by default.
    if isinstance(aud, str) and aud in token_endpoints(issuer):
        return
    if isinstance(aud, list):
        raise _refused("aud must be this authorization server's issuer identifier alone")
    raise _refused("aud must be this authorization server's issuer identifier")


def _time(claims: dict[str, Any], name: str, *, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise _refused(f"the {name} claim is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refused(f"the {name} claim must be a number")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _refused(f"the {name} claim is out of range") from exc


def _check_claims(ctx: Context, app: App, claims: dict[str, Any]) -> tuple[str, datetime]:
    """The §3 rules; returns (jti, exp)."""
    now = ctx.clock.now()
    # §3 items 1-2: "iss" and "sub" MUST both be the client_id.
    if claims.get("iss") != app.id:
        raise _refused("iss must be the client_id")
    if claims.get("sub") != app.id:
        raise _refused("sub must be the client_id")
    _check_audience(ctx.policy.issuer, claims.get("aud"))
    # §3 item 4: "The JWT MUST contain an "exp" (expiration time) claim that limits the time
    # window during which the JWT can be used."
    exp = _time(claims, "exp", required=True)
    assert exp is not None
    if exp + LEEWAY <= now:
        raise _refused("it has expired")
    if exp > now + MAX_LIFETIME + LEEWAY:
        raise _refused("exp is more than 1 hour ahead")
    nbf = _time(claims, "nbf", required=False)
    if nbf is not None and nbf > now + LEEWAY:
        raise _refused("it is not valid yet (nbf)")
    iat = _time(claims, "iat", required=False)
    if iat is not None and iat > now + LEEWAY:
        raise _refused("it was issued in the future (iat)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_LENGTH:
        raise _refused("a jti claim (a unique identifier) is required")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in jti):
        raise _refused("the jti claim must not contain control characters")
    return jti, exp


def verify(ctx: Context, app: App, assertion: str) -> None:
    """Authenticate ``app`` by ``assertion`` or raise ``invalid_client``."""
    header = jose.unverified_header(assertion)
    if header is None:
        raise _refused("it is not a compact JWS")
    if header.get("alg") not in ALGORITHMS:
        raise _refused(f"the algorithm must be one of {', '.join(ALGORITHMS)}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _refused("kid must be a string")
    if app.jwks is not None:
        keys = list(app.jwks.get("keys", []))
    elif app.jwks_uri:
        keys = jwks_uri_keys(ctx, app, kid)
    else:
        raise _refused("the client has registered no keys")
    try:
        _, claims = jose.verify_with_keys(assertion, keys, ALGORITHMS)
    except ValueError as exc:
        raise _refused("the signature does not verify with the client's keys", str(exc)) from exc
    jti, exp = _check_claims(ctx, app, claims)
    # §3 item 7: "The authorization server MAY ensure that JWTs are not replayed by maintaining
    # the set of used "jti" values for the length of time for which the JWT would be
    # considered valid based on the applicable "exp" instant." authgate does, always.
    if not ctx.store.consume_assertion_jti(app.id, jti, exp + LEEWAY, ctx.clock.now()):
        raise _refused("this jti was used already", debug="client assertion replayed")
