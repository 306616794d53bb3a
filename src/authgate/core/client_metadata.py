"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP).

A ``client_id`` that is an https URL names a JSON document, published by the client, that
describes it: "the authorization server MUST fetch the metadata document ... and MUST validate
that the client_id property in the document matches the URL of the document". authgate keeps
the document as an app row (``id`` = the URL, ``metadata_document=True``), because codes,
grants and tokens reference apps; the row is a cache, refreshed once ``metadata_expires_at``
has passed (the document's ``Cache-Control: max-age``, kept between 5 minutes and 24 hours,
1 hour without one).

Failures — the fetch or the validation — are remembered on this node for a minute, so a
broken client cannot make authgate fetch on every request. Stale-if-error: if a *fetch* fails
(network, timeout, HTTP status) while a stored copy expired less than 24 hours ago, that copy
keeps being used; a document that was fetched but is invalid is never papered over this way.
When there is no such copy, the pinned copy of a known client's document
(core/client_profiles.py) is used instead, validated like a fetched one and audited as
``client_profile.pinned_copy_used``; a live answer always wins over it.

Fetches run on the fetcher's own bounded threads (``fetch/pool.py``); when they are at a limit
the fetch is refused at once (``FetchBusyError``): a stored copy serves, else ``invalid_client``
says the document could not be fetched now. Such a refusal is not remembered as a failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from authgate.core import (
    app_events,
    audit,
    client_profiles,
    document_policy,
    flows,
    negotiation,
    rate_limits,
    redirect_uris,
    scopes,
)
from authgate.core import registration_settings as runtime_settings
from authgate.core.caches import DocumentFailure
from authgate.core.context import SYSTEM, Actor, Context
from authgate.core.errors import InvalidClientError, OAuthError
from authgate.core.models import App, AuthMethod, GrantType, RegistrationSettings
from authgate.core.ports import FetchBusyError, FetchedDocument, FetchError
from authgate.crypto import jose

MAX_URL_LENGTH = 2048
MAX_NAME = 64
MIN_TTL = timedelta(minutes=5)
MAX_TTL = timedelta(hours=24)
DEFAULT_TTL = timedelta(hours=1)
FAILURE_TTL = timedelta(seconds=60)
STALE_IF_ERROR = timedelta(hours=24)
DEFAULT_GRANTS: tuple[GrantType, ...] = ("authorization_code", "refresh_token")
ALLOWED_GRANTS = frozenset({"authorization_code", "refresh_token"})
# Nothing secret can be shared through a public document: a key or nothing.
AUTH_METHODS: tuple[AuthMethod, ...] = ("none", "private_key_jwt")
MAX_KEYS = 16


class InvalidDocument(Exception):
    """The document was fetched but cannot describe a client; the message is client-safe."""


def is_document_url(client_id: str) -> bool:
    """Whether ``client_id`` names a metadata document (any https URL; validated on load)."""
    return client_id.startswith("https://")


def names_new_document(ctx: Context, client_id: str | None) -> bool:
    """Whether a request naming ``client_id`` may have to fetch a metadata document: an https
    URL this node has not served a client from yet (a stranger, or a new client). The web
    layer runs such requests on threads of their own (``web/threads.py``), so that a flood of
    them, fetching or refused, never queues in front of the clients already known."""
    return (
        ctx.fetcher is not None
        and client_id is not None
        and is_document_url(client_id)
        and client_id not in ctx.caches.known_documents
    )


def document_host(app: App) -> str | None:
    """The host that vouches for a metadata-document client (shown on the consent page)."""
    if not app.metadata_document:
        return None
    return urlsplit(app.id).hostname


def check_url(url: str) -> None:
    """The client identifier URL rules of the draft (§3); raises InvalidDocument."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidDocument(f"the client_id URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidDocument("the client_id URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise InvalidDocument("the client_id is not a valid URL") from exc
    # "Client identifier URLs MUST have an "https" scheme, MUST contain a path component,
    # MUST NOT contain single-dot or double-dot path segments, ... MUST NOT contain a
    # fragment component and MUST NOT contain a username or password."
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidDocument("the client_id URL must be https with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidDocument("the client_id URL must not contain user information")
    if parts.fragment or "#" in url:
        raise InvalidDocument("the client_id URL must not contain a fragment")
    if len(parts.path) < 2:
        raise InvalidDocument("the client_id URL must have a path")
    segments = {unquote(segment) for segment in parts.path.split("/")}
    if "." in segments or ".." in segments:
        raise InvalidDocument("the client_id URL must not contain dot segments")


def _refused(reason: str) -> InvalidClientError:
    return document_policy.refused(reason)


def _usable_stale(stored: App | None, now: datetime) -> App | None:
    if stored is None or stored.metadata_expires_at is None:
        return None
    return stored if stored.metadata_expires_at + STALE_IF_ERROR > now else None


def load_document_client(ctx: Context, url: str, actor: Actor | None = None) -> App:
    """The client described by the metadata document at ``url``, from the stored copy while it
    is fresh, else fetched and validated; raises ``invalid_client`` with the reason. The
    operator's controls (core/document_policy.py) apply to every use; ``actor`` (who asks, from
    where) counts against the limits on documents not stored yet."""
    try:
        check_url(url)
    except InvalidDocument as exc:
        _fetch_refused(url, "client_document_invalid")
        raise _refused(str(exc)) from exc
    stored = ctx.store.get_app(url)
    if stored is not None and not stored.metadata_document:
        return stored  # an app registered under this id by other means stays what it is
    settings = runtime_settings.current(ctx)
    try:
        document_policy.check_url_host(url, settings)
        app = _fresh_or_fetched(ctx, url, stored, actor, settings)
        document_policy.check_redirect_uris(app, settings)
    except OAuthError as exc:
        _fetch_refused(url, "rate_limited" if exc.status_code == 429 else "client_document_refused")
        raise
    ctx.caches.known_documents.add(url)
    return app


def _fetch_refused(url: str, reason: str) -> None:
    """The flow's document step, unless a more precise one was recorded already."""
    trace = flows.current()
    if trace is None or trace.reason_hint is None:
        flows.step("document_fetch", "refused", reason, url=url[:MAX_URL_LENGTH])


def _fresh_or_fetched(
    ctx: Context, url: str, stored: App | None, actor: Actor | None, settings: RegistrationSettings
) -> App:
    now = ctx.clock.now()
    if stored is not None and stored.metadata_expires_at and stored.metadata_expires_at > now:
        return stored
    failure = ctx.caches.client_documents.get(url, now)
    if failure is not None:
        stale = _usable_stale(stored, now) if failure.stale_ok else None
        if stale is not None:
            return stale
        bad = "client_document_fetch_failed" if failure.stale_ok else "client_document_invalid"
        _fetch_refused(url, bad)
        raise _refused(failure.reason)
    if ctx.fetcher is None:
        raise _refused("this server does not fetch client metadata documents")
    if stored is None:
        document_policy.admit_new(ctx, actor, settings)
    fetched = _fetch_or_fallback(ctx, url, stored, actor, settings, now)
    if isinstance(fetched, App):
        return fetched
    return _accept_document(ctx, url, stored, fetched, settings, now)


def _fetch_or_fallback(
    ctx: Context,
    url: str,
    stored: App | None,
    actor: Actor | None,
    settings: RegistrationSettings,
    now: datetime,
) -> FetchedDocument | App:
    """The live document; when the fetch fails, a usable stored or pinned copy instead."""
    source = rate_limits.source(actor.ip) if actor is not None and actor.ip else None
    try:
        return fetch_document(ctx, url, source)
    except FetchBusyError as exc:
        # Nothing was tried: not the document's failure, so not remembered; a stored copy,
        # even expired (within STALE_IF_ERROR), serves until a fetch can run.
        stale = _usable_stale(stored, now)
        if stale is not None:
            return stale
        _fetch_refused(url, "unavailable")
        raise document_policy.refused(str(exc), debug="fetch pool busy") from exc
    except FetchError as exc:
        _remember_failure(ctx, url, now, str(exc), stale_ok=True)
        stale = _usable_stale(stored, now)
        if stale is not None:
            return stale
        pinned = _from_pinned_copy(ctx, url, stored, settings, str(exc))
        if pinned is not None:
            return pinned
        _fetch_refused(url, "client_document_fetch_failed")
        raise _refused(str(exc)) from exc


def _accept_document(
    ctx: Context,
    url: str,
    stored: App | None,
    document: FetchedDocument,
    settings: RegistrationSettings,
    now: datetime,
) -> App:
    """Read the fetched document, check it against the operator's controls and store it;
    a refusal is remembered, so the next request does not fetch again."""
    try:
        app, dropped = read_document(url, document.body, stored, now, document.max_age)
    except InvalidDocument as exc:
        _remember_failure(ctx, url, now, str(exc), stale_ok=False)
        _fetch_refused(url, "client_document_invalid")
        raise _refused(str(exc)) from exc
    try:
        document_policy.check_redirect_uris(app, settings)
    except InvalidClientError as exc:
        # Not stored: a client the operator's controls refuse leaves no row behind.
        _remember_failure(ctx, url, now, exc.description, stale_ok=False)
        raise
    ctx.store.upsert_app(app)
    flows.step("document_fetch", url=url[:MAX_URL_LENGTH])
    ctx.caches.client_documents.forget(url)
    _audit(ctx, stored, app, dropped)
    return app


def _remember_failure(
    ctx: Context, url: str, now: datetime, reason: str, *, stale_ok: bool
) -> None:
    failure = DocumentFailure(now + FAILURE_TTL, reason, stale_ok)
    ctx.caches.client_documents.remember(url, now, failure)


def fetch_document(ctx: Context, url: str, source: str | None = None) -> FetchedDocument:
    """The one place authgate fetches a client's metadata document (SSRF-safe fetcher);
    ``source``: the network of whoever asked, None for an operator's check or pin."""
    if ctx.fetcher is None:
        raise FetchError("this server does not fetch client metadata documents")
    return ctx.fetcher.fetch(url, source)


def pinned_body(profile: client_profiles.Profile) -> bytes:
    return json.dumps(profile.pinned_document).encode()


def _from_pinned_copy(
    ctx: Context, url: str, stored: App | None, settings: RegistrationSettings, reason: str
) -> App | None:
    """When the live fetch failed and no stored copy is usable: the pinned copy of a known
    client's document (core/client_profiles.py), validated as a fetched one would be, kept
    for the shortest time so that the live document is tried again soon. Never preferred
    over a live answer."""
    profile = client_profiles.pinned_for(ctx, url)
    if profile is None:
        return None
    now = ctx.clock.now()
    try:
        app, dropped = read_document(url, pinned_body(profile), stored, now, 0)
    except InvalidDocument:
        return None  # the live failure is the reason given
    document_policy.check_redirect_uris(app, settings)
    ctx.store.upsert_app(app)
    _audit(ctx, stored, app, dropped)
    audit.record(
        ctx,
        SYSTEM,
        "client_profile.pinned_copy_used",
        target_type="app",
        target_id=url,
        profile=profile.id,
        origin=profile.origin,
        fetch_error=reason,
    )
    return app


def _audit(
    ctx: Context, before: App | None, after: App, dropped: Mapping[str, tuple[str, ...]]
) -> None:
    """A new client, or a change to what it may do, is security-relevant; a refresh is not.
    ``dropped``: what the document asks for that authgate did not register."""
    fields = app_events.fields(after)
    if before is not None and app_events.fields(before) == fields:
        return
    action = "app.created" if before is None else "app.updated"
    audit.record(
        ctx,
        SYSTEM,
        action,
        target_type="app",
        target_id=after.id,
        dropped=negotiation.as_audit(dropped),
        **fields,
    )


def _ttl(max_age: int | None) -> timedelta:
    if max_age is None:
        return DEFAULT_TTL
    return min(max(timedelta(seconds=max_age), MIN_TTL), MAX_TTL)


def app_from_document(
    url: str, body: bytes, stored: App | None, now: datetime, max_age: int | None
) -> App:
    """Validate the document and turn it into the app row; raises InvalidDocument."""
    return read_document(url, body, stored, now, max_age)[0]


def read_document(
    url: str, body: bytes, stored: App | None, now: datetime, max_age: int | None
) -> tuple[App, Mapping[str, tuple[str, ...]]]:
    """The app row and what negotiation dropped (core/negotiation.py); raises InvalidDocument."""
    # No field of a client holds a NUL, and PostgreSQL stores none (a 503 rather than a refusal).
    if b"\\u0000" in body or b"\x00" in body:
        raise InvalidDocument("the document contains NUL characters")
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deeply nested: Recursion
        raise InvalidDocument("the document is not valid JSON") from exc
    if not isinstance(document, dict):
        raise InvalidDocument("the document is not a JSON object")
    if document.get("client_id") != url:
        raise InvalidDocument("its client_id does not match the URL it was fetched from")
    try:
        negotiated = negotiation.negotiate(document, _RULES)
    except negotiation.Unusable as exc:
        raise InvalidDocument(str(exc)) from exc
    host = urlsplit(url).hostname or url
    app = App(
        id=url,
        name=_name(document.get("client_name"), host),
        icon=_optional_url(document, "logo_uri"),
        redirect_uris=_redirect_uris(document.get("redirect_uris")),
        client_type="public" if negotiated.public else "confidential",
        require_pkce=True,
        token_endpoint_auth_method=negotiated.token_endpoint_auth_method,
        grant_types=negotiated.grant_types,
        scope=_scope(document.get("scope")),
        first_party=False,
        dynamically_registered=False,
        created_at=stored.created_at if stored is not None else now,
        updated_at=now,
        application_type="native" if document.get("application_type") == "native" else "web",
        client_uri=_optional_url(document, "client_uri"),
        jwks=negotiated.jwks,
        jwks_uri=negotiated.jwks_uri,
        software_id=_short_text(document, "software_id"),
        software_version=_short_text(document, "software_version"),
        metadata_document=True,
        metadata_expires_at=now + _ttl(max_age),
        last_used_at=stored.last_used_at if stored is not None else None,
        # What an operator opened to it is the operator's, not the document's: kept on refresh.
        service_access=stored.service_access if stored is not None else (),
    )
    return app, negotiated.dropped


def _name(value: Any, default: str) -> str:
    if value is None:
        return default[:MAX_NAME]
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_NAME:
        raise InvalidDocument(f"client_name must be 1 to {MAX_NAME} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidDocument("client_name must not contain control characters")
    return value.strip()


def _optional_url(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        raise InvalidDocument(f"{name} must be an https URL")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.username or "@" in parts.netloc:
        raise InvalidDocument(f"{name} must be an https URL")
    return value


def _short_text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    return value[:255] if isinstance(value, str) else ""


def _redirect_uris(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise InvalidDocument("redirect_uris must be a non-empty list of URIs")
    try:
        # The document is public: whoever holds it is no more trusted than a public client.
        return redirect_uris.validate_redirect_uris(value, public=True)
    except OAuthError as exc:
        raise InvalidDocument(exc.description) from exc


def _scope(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidDocument("scope must be a string")
    try:
        return scopes.format_scope(scopes.parse_scope(value.strip())) or None
    except OAuthError as exc:
        raise InvalidDocument(f"scope: {exc.description}") from exc


def _method_refusal(method: str) -> str:
    if method.startswith("client_secret"):
        # Nothing secret can be shared through a public document.
        return (
            "token_endpoint_auth_method must be none or private_key_jwt: a metadata document "
            "cannot carry a client secret"
        )
    return "token_endpoint_auth_method must be none or private_key_jwt"


def _keys(document: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The keys of a private_key_jwt client; raises ``negotiation.Unusable``."""
    jwks = document.get("jwks")
    jwks_uri = document.get("jwks_uri")
    # RFC 7591 §2: "The jwks_uri and jwks parameters MUST NOT both be present".
    if (jwks is None) == (jwks_uri is None):
        raise negotiation.Unusable(
            "a private_key_jwt client needs exactly one of jwks and jwks_uri"
        )
    try:
        if jwks_uri is not None:
            return None, _optional_url(dict(document), "jwks_uri")
        return check_jwks(jwks), ""
    except InvalidDocument as exc:
        raise negotiation.Unusable(str(exc)) from exc


_RULES = negotiation.Rules(
    grants=ALLOWED_GRANTS,
    starting_grants=frozenset({"authorization_code"}),
    default_grants=DEFAULT_GRANTS,
    grants_refusal="grant_types must include authorization_code (this server supports "
    "authorization_code and refresh_token for metadata-document clients)",
    methods=AUTH_METHODS,
    default_method="none",
    method_refusal=_method_refusal,
    keys=_keys,
)


def check_jwks(jwks: Any) -> dict[str, Any]:
    """A JWK Set (RFC 7517 §5) of public keys that can verify the client's assertions; raises
    InvalidDocument naming the first key that is not one (does not import, is private or
    symmetric, or is of a type or algorithm authgate does not verify: ``jose``)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidDocument("jwks must be a JWK Set with at least one key")
    if len(jwks["keys"]) > MAX_KEYS:
        raise InvalidDocument(f"jwks may hold at most {MAX_KEYS} keys")
    for index, key in enumerate(jwks["keys"]):
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            raise InvalidDocument("every key in jwks needs a kty")
        if "\\u0000" in json.dumps(key):  # PostgreSQL stores no NUL, even in JSON
            raise InvalidDocument(f"jwks key {index}: NUL characters are not allowed")
        try:
            jose.check_public_signing_jwk(key)
        except ValueError as exc:
            raise InvalidDocument(f"jwks key {index}: {exc}") from exc
    return {"keys": list(jwks["keys"])}
