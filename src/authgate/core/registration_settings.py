"""Runtime settings of self-registered clients — dynamic client registration (RFC 7591), its
initial access tokens, and Client ID Metadata Documents — kept in the ``settings`` table so that
an administrator changes them while authgate runs, and every node sees the change within
``policy.cache_ttl``.

Unlike ``config.py`` (environment, read once at start), these are changed through
``/api/v2/oauth2-provider/settings`` or ``authgate registration …``; each change is audited.
A missing or unreadable value is its default (DESIGN.md §7: registration on, abuse controls
on). The redirect-host allow-list and the expiry of unused clients govern both kinds of
self-registered client; metadata documents have their own switch, cap and document-host lists
(core/document_policy.py). Initial access tokens (RFC 7591 §3, "initial access token") are a
short list kept in one setting: only their SHA-256 is stored, like every other authgate secret.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from authgate.core import audit, service_access
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidTokenError, NotFound, ValidationFailed
from authgate.core.models import RegistrationSettings, ServiceAccess
from authgate.crypto import secrets

ENABLED = "dynamic_registration_enabled"
TOKEN_REQUIRED = "registration_initial_access_token_required"
REDIRECT_HOSTS = "registration_redirect_hosts"
MAX_CLIENTS = "registration_max_clients"
CLIENT_TTL_DAYS = "registration_client_ttl_days"
INITIAL_ACCESS_TOKENS = "registration_initial_access_tokens"
DOCUMENTS_ENABLED = "client_metadata_documents_enabled"
DOCUMENT_HOSTS = "client_metadata_document_hosts"
DOCUMENT_DENIED_HOSTS = "client_metadata_document_denied_hosts"
DOCUMENT_MAX_CLIENTS = "client_metadata_max_clients"

INITIAL_ACCESS_TOKEN_KIND = "iat"
MAX_REDIRECT_HOSTS = 100
MAX_INITIAL_ACCESS_TOKENS = 100
MAX_TOKEN_NAME = 64
LIMIT_MAX_CLIENTS = 1_000_000
LIMIT_TTL_DAYS = 3650
# `example.com`, `*.example.com` (any subdomain), `127.0.0.1`, `[::1]`, or `myapp:` (a
# private-use scheme, whatever follows it).
_HOST_ENTRY = re.compile(
    r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\]"
    r"|[a-z][a-z0-9+.-]*:"
)


# A document URL's host: as above, without the private-use scheme form.
_DOCUMENT_HOST_ENTRY = re.compile(
    r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\]"
)


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """A partial update: None = unchanged."""

    enabled: bool | None = None
    initial_access_token_required: bool | None = None
    redirect_hosts: Sequence[str] | None = None
    max_clients: int | None = None
    client_ttl_days: int | None = None
    documents_enabled: bool | None = None
    document_hosts: Sequence[str] | None = None
    document_denied_hosts: Sequence[str] | None = None
    document_max_clients: int | None = None


_KEYS = {
    "enabled": ENABLED,
    "initial_access_token_required": TOKEN_REQUIRED,
    "redirect_hosts": REDIRECT_HOSTS,
    "max_clients": MAX_CLIENTS,
    "client_ttl_days": CLIENT_TTL_DAYS,
    "documents_enabled": DOCUMENTS_ENABLED,
    "document_hosts": DOCUMENT_HOSTS,
    "document_denied_hosts": DOCUMENT_DENIED_HOSTS,
    "document_max_clients": DOCUMENT_MAX_CLIENTS,
}
DEFAULTS = RegistrationSettings()


def _stored(ctx: Context, name: str) -> Any:
    """The stored value of one setting, or its default when absent or of the wrong type."""
    value = ctx.store.get_setting(_KEYS[name])
    default = getattr(DEFAULTS, name)
    if isinstance(default, bool):
        return value if isinstance(value, bool) else default
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return value if ok else default
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return default


def load(ctx: Context) -> RegistrationSettings:
    """The settings as stored now (uncached: the CLI, and the cache below, use this)."""
    return RegistrationSettings(**{f.name: _stored(ctx, f.name) for f in fields(DEFAULTS)})


def current(ctx: Context) -> RegistrationSettings:
    """The settings as this node knows them: its copy, trusted for ``policy.cache_ttl``. The
    node that makes a change invalidates its copy, so it sees the change at once; other nodes
    see it within the TTL."""
    value = cached(ctx)
    if value is None:
        value = load(ctx)
        ctx.caches.registration_settings.put(ctx.clock.now(), value)
    return value


def cached(ctx: Context) -> RegistrationSettings | None:
    """``current`` if this node's copy is fresh, else None; never reads the database."""
    return ctx.caches.registration_settings.get(ctx.clock.now(), ctx.policy.cache_ttl)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {field}: {message}", validations={field: message})


def check_redirect_hosts(
    hosts: Sequence[str], field: str = "redirect_hosts", *, schemes: bool = True
) -> tuple[str, ...]:
    if isinstance(hosts, str) or len(hosts) > MAX_REDIRECT_HOSTS:
        raise _invalid(field, f"a list of at most {MAX_REDIRECT_HOSTS} host names")
    pattern = _HOST_ENTRY if schemes else _DOCUMENT_HOST_ENTRY
    what = "a host name, *.domain, an IP address" + (" or a scheme like myapp:" if schemes else "")
    checked: list[str] = []
    for host in hosts:
        entry = host.strip().lower() if isinstance(host, str) else ""
        if len(entry) > 253 or not pattern.fullmatch(entry):
            raise _invalid(field, f"{host!r} is not {what}")
        checked.append(entry)
    return tuple(dict.fromkeys(checked))


def host_matches(host: str, entries: Sequence[str]) -> bool:
    """Whether ``host`` (lower case; an IPv6 address without brackets) is one of the entries:
    ``example.com`` is that host only, ``*.example.com`` any host below it (not itself)."""
    for entry in entries:
        if entry.endswith(":"):
            continue  # a private-use scheme, not a host
        if host == entry.strip("[]") or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


def redirect_allowed(uri: str, hosts: Sequence[str]) -> bool:
    """Whether a redirect URI is on the allow-list ``hosts`` (an https/http host entry, or a
    private-use scheme entry such as ``cursor:``); the list must not be empty."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if f"{scheme}:" in hosts:
        return True
    return scheme in ("http", "https") and host_matches((parts.hostname or "").lower(), hosts)


def _check_count(field: str, value: int, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise _invalid(field, f"a whole number from 0 to {upper}")
    return value


def _validated(change: SettingsChange) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("enabled", "initial_access_token_required", "documents_enabled"):
        value = getattr(change, name)
        if value is not None:
            if not isinstance(value, bool):
                raise _invalid(name, "true or false")
            values[name] = value
    if change.redirect_hosts is not None:
        values["redirect_hosts"] = check_redirect_hosts(change.redirect_hosts)
    if change.max_clients is not None:
        values["max_clients"] = _check_count("max_clients", change.max_clients, LIMIT_MAX_CLIENTS)
    if change.client_ttl_days is not None:
        values["client_ttl_days"] = _check_count(
            "client_ttl_days", change.client_ttl_days, LIMIT_TTL_DAYS
        )
    for name in ("document_hosts", "document_denied_hosts"):
        hosts = getattr(change, name)
        if hosts is not None:
            values[name] = check_redirect_hosts(hosts, name, schemes=False)
    if change.document_max_clients is not None:
        values["document_max_clients"] = _check_count(
            "document_max_clients", change.document_max_clients, LIMIT_MAX_CLIENTS
        )
    return values


def update(ctx: Context, actor: Actor, change: SettingsChange) -> RegistrationSettings:
    """Validate every field first, then write the changed ones; audited as ``settings.updated``."""
    values = _validated(change)
    before = load(ctx)
    after = replace(before, **values)
    changed = {k: v for k, v in values.items() if getattr(before, k) != v}
    for name, value in changed.items():
        ctx.store.set_setting(_KEYS[name], list(value) if isinstance(value, tuple) else value)
    ctx.caches.registration_settings.invalidate()
    if changed:
        audit.record(
            ctx,
            actor,
            "settings.updated",
            target_type="settings",
            target_id="registration",
            changed=sorted(changed),
            **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(after).items()},
        )
    return after


# Initial access tokens (RFC 7591 §3: "the client MAY be required to present an initial access
# token"): created by an administrator and handed to whoever may register clients.


@dataclass(frozen=True, slots=True)
class InitialAccessToken:
    id: str
    name: str
    prefix: str
    token_hash: str
    created_at: datetime
    expires_at: datetime | None = None
    max_uses: int | None = None
    uses: int = 0
    # What a client registered with this token may reach with client_credentials (an
    # operator's grant made in advance); nothing by default.
    service_access: tuple[ServiceAccess, ...] = ()

    def usable(self, now: datetime) -> bool:
        live = self.expires_at is None or now < self.expires_at
        return live and (self.max_uses is None or self.uses < self.max_uses)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "token_hash": self.token_hash,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "max_uses": self.max_uses,
            "uses": self.uses,
            "service_access": service_access.as_json(self.service_access),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> InitialAccessToken:
        expires = value.get("expires_at")
        return cls(
            id=str(value["id"]),
            name=str(value["name"]),
            prefix=str(value["prefix"]),
            token_hash=str(value["token_hash"]),
            created_at=datetime.fromisoformat(value["created_at"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            max_uses=value.get("max_uses"),
            uses=int(value.get("uses", 0)),
            service_access=service_access.from_json(value.get("service_access")),
        )


def list_initial_access_tokens(ctx: Context) -> list[InitialAccessToken]:
    stored = ctx.store.get_setting(INITIAL_ACCESS_TOKENS)
    if not isinstance(stored, list):
        return []
    return [InitialAccessToken.from_json(v) for v in stored if isinstance(v, dict)]


def _save(ctx: Context, tokens: Sequence[InitialAccessToken]) -> None:
    ctx.store.set_setting(INITIAL_ACCESS_TOKENS, [t.as_json() for t in tokens])


def create_initial_access_token(
    ctx: Context,
    actor: Actor,
    name: str,
    *,
    expires_in: timedelta | None = None,
    max_uses: int | None = None,
    access: Sequence[ServiceAccess] = (),
) -> tuple[InitialAccessToken, str]:
    """A new token; its value is returned this once only. ``access``: the resources and
    scopes a client registered with it may reach with client_credentials."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_TOKEN_NAME or any(ord(c) < 0x20 for c in name):
        raise _invalid("name", f"1 to {MAX_TOKEN_NAME} printable characters")
    if expires_in is not None and expires_in <= timedelta(0):
        raise _invalid("expires_in", "a positive duration")
    if max_uses is not None:
        _check_count("max_uses", max_uses, LIMIT_MAX_CLIENTS)
        if max_uses == 0:
            raise _invalid("max_uses", "at least 1 (omit it for no limit)")
    granted = service_access.validate(ctx, access)
    existing = list_initial_access_tokens(ctx)
    if len(existing) >= MAX_INITIAL_ACCESS_TOKENS:
        raise ValidationFailed(
            f"At most {MAX_INITIAL_ACCESS_TOKENS} initial access tokens; delete unused ones"
        )
    now = ctx.clock.now()
    value = secrets.generate(INITIAL_ACCESS_TOKEN_KIND)
    token = InitialAccessToken(
        id=str(uuid.uuid4()),
        name=name,
        prefix=value.prefix,
        token_hash=value.hash,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        max_uses=max_uses,
        service_access=granted,
    )
    _save(ctx, [*existing, token])
    audit.record(
        ctx,
        actor,
        "initial_access_token.created",
        target_type="initial_access_token",
        target_id=token.id,
        name=token.name,
        prefix=token.prefix,
        expires_at=token.expires_at.isoformat() if token.expires_at else None,
        max_uses=token.max_uses,
        service_access=service_access.as_json(token.service_access),
    )
    return token, value.value


def delete_initial_access_token(ctx: Context, actor: Actor, token_id: str) -> None:
    existing = list_initial_access_tokens(ctx)
    kept = [t for t in existing if t.id != token_id]
    if len(kept) == len(existing):
        raise NotFound("No such initial access token")
    _save(ctx, kept)
    audit.record(
        ctx,
        actor,
        "initial_access_token.deleted",
        target_type="initial_access_token",
        target_id=token_id,
    )


#: The ``debug`` of each refusal of an initial access token (read by core/flow_reasons.py).
INITIAL_ACCESS_TOKEN_MISSING = "missing or malformed initial access token"
INITIAL_ACCESS_TOKEN_INVALID = "unknown, expired or used-up initial access token"


def check_initial_access_token(ctx: Context, value: str | None) -> InitialAccessToken:
    """The live token ``value`` names, or 401 ``invalid_token`` (RFC 6750 §3.1)."""
    parsed = secrets.parse(value, INITIAL_ACCESS_TOKEN_KIND) if value else None
    if parsed is None:
        raise InvalidTokenError(
            "A valid initial access token is required to register a client",
            debug=INITIAL_ACCESS_TOKEN_MISSING,
        )
    now = ctx.clock.now()
    for token in list_initial_access_tokens(ctx):
        if token.prefix == parsed.prefix and secrets.constant_time_equal(
            token.token_hash, parsed.hash
        ):
            if token.usable(now):
                return token
            break
    raise InvalidTokenError(
        "A valid initial access token is required to register a client",
        debug=INITIAL_ACCESS_TOKEN_INVALID,
    )


def use_initial_access_token(ctx: Context, token_id: str) -> None:
    """Count one registration made with the token. A read-modify-write of one setting: two
    registrations racing on the last use of a limited token may both succeed (best effort)."""
    _save(
        ctx,
        [
            replace(t, uses=t.uses + 1) if t.id == token_id else t
            for t in list_initial_access_tokens(ctx)
        ],
    )
