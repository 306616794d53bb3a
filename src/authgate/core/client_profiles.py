"""Known-client profiles: what authgate knows about the MCP clients people use (claude.ai,
Claude Code, ChatGPT, Codex, VS Code, Cursor, mcp-remote, the MCP SDKs).

A profile names a client's metadata document URLs (Client ID Metadata Documents), the hosts
and schemes its redirect URIs use (entries as in ``core/registration_settings.py``: ``claude.ai``,
``127.0.0.1``, ``cursor:``), the names it registers under, its known quirks in plain words,
where that knowledge comes from, and a pinned copy of its public document. The profiles ship
as data (``core/data/client_profiles.json``); an operator adds, overrides or pins one in the
``settings`` table (key ``client_profiles``, an object keyed by profile id), and an operator's
profile replaces a shipped one of the same id.

A profile never widens what a client may do. Two things read it: the admin views (which
profile an app matched, and its quirks), and ``core/client_metadata.py``, which uses a pinned
copy only when the live fetch of that exact document URL fails and no stored copy is usable —
never in preference to a live answer.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal
from urllib.parse import urlsplit

from authgate.core import audit
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import Actor, Context
from authgate.core.errors import NotFound, ValidationFailed
from authgate.core.models import App

SETTING = "client_profiles"
MAX_OPERATOR_PROFILES = 100
MAX_ENTRIES = 32
MAX_TEXT = 500
MAX_DOCUMENT_BYTES = 64 * 1024
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})

Origin = Literal["shipped", "operator", "overridden"]


@dataclass(frozen=True, slots=True)
class Profile:
    """One known client. ``client_names``: prefixes of the names it registers under;
    ``origin``: shipped with authgate, added by the operator, or a shipped one overridden."""

    id: str
    name: str
    document_urls: tuple[str, ...]
    redirect_hosts: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    client_names: tuple[str, ...]
    quirks: tuple[str, ...]
    sources: tuple[str, ...]
    pinned_document: dict[str, Any] | None
    pinned_note: str = ""
    origin: Origin = "shipped"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "document_urls": list(self.document_urls),
            "redirect_hosts": list(self.redirect_hosts),
            "redirect_uris": list(self.redirect_uris),
            "client_names": list(self.client_names),
            "quirks": list(self.quirks),
            "sources": list(self.sources),
            "pinned_document": self.pinned_document,
            "pinned_note": self.pinned_note,
            "origin": self.origin,
        }


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {field}: {message}", validations={field: message})


def _control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _texts(value: Any, field: str, *, required: bool = False) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if (
        not isinstance(value, list)
        or len(value) > MAX_ENTRIES
        or not all(isinstance(v, str) and 0 < len(v.strip()) <= MAX_TEXT for v in value)
        or any(_control(v) for v in value)
    ):
        raise _invalid(field, f"a list of at most {MAX_ENTRIES} non-empty lines")
    if required and not value:
        raise _invalid(field, "at least one entry")
    return tuple(v.strip() for v in value)


def _document_urls(value: Any) -> tuple[str, ...]:
    urls = _texts(value, "document_urls")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or len(parts.path) < 2:
            raise _invalid("document_urls", f"{url} is not an https URL with a path")
    return urls


def _pinned(value: Any, urls: tuple[str, ...]) -> dict[str, Any] | None:
    """The shape of a pinned copy; whether authgate accepts it is decided where documents are
    validated (``client_metadata.app_from_document``), when it is used or checked."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("pinned_document", "a JSON object (the client's metadata document)")
    if len(json.dumps(value)) > MAX_DOCUMENT_BYTES:
        raise _invalid("pinned_document", f"at most {MAX_DOCUMENT_BYTES} bytes")
    if value.get("client_id") not in urls:
        raise _invalid("pinned_document", "its client_id must be one of the document_urls")
    return dict(value)


def parse(value: Any, origin: Origin = "operator", profile_id: str | None = None) -> Profile:
    """A profile from its JSON form (the shipped data and an operator's input alike)."""
    if not isinstance(value, Mapping):
        raise ValidationFailed("A profile is a JSON object")
    if "\\u0000" in json.dumps(dict(value)):  # no field holds one, and PostgreSQL stores none
        raise _invalid("profile", "NUL characters are not allowed")
    pid = profile_id if profile_id is not None else value.get("id")
    if not isinstance(pid, str) or not _ID.fullmatch(pid):
        raise _invalid("id", "1 to 63 lower-case letters, digits and hyphens")
    name = value.get("name")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 64 or _control(name):
        raise _invalid("name", "1 to 64 characters")
    urls = _document_urls(value.get("document_urls"))
    hosts = runtime_settings.check_redirect_hosts(
        list(_texts(value.get("redirect_hosts"), "redirect_hosts")), "redirect_hosts"
    )
    note = value.get("pinned_note", "")
    if not isinstance(note, str) or len(note) > MAX_TEXT or _control(note):
        raise _invalid("pinned_note", f"at most {MAX_TEXT} characters")
    return Profile(
        id=pid,
        name=name.strip(),
        document_urls=urls,
        redirect_hosts=hosts,
        redirect_uris=_texts(value.get("redirect_uris"), "redirect_uris"),
        client_names=_texts(value.get("client_names"), "client_names"),
        quirks=_texts(value.get("quirks"), "quirks"),
        sources=_texts(value.get("sources"), "sources", required=True),
        pinned_document=_pinned(value.get("pinned_document"), urls),
        pinned_note=note,
        origin=origin,
    )


@functools.cache
def shipped() -> tuple[Profile, ...]:
    """The profiles that ship with authgate (read once per process)."""
    text = resources.files("authgate.core").joinpath("data/client_profiles.json").read_text()
    return tuple(parse(p, "shipped") for p in json.loads(text)["profiles"])


def _stored(ctx: Context) -> dict[str, dict[str, Any]]:
    value = ctx.store.get_setting(SETTING)
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, dict)}


def _operator_profiles(ctx: Context) -> list[Profile]:
    shipped_ids = {p.id for p in shipped()}
    found = []
    for pid, value in _stored(ctx).items():
        try:
            found.append(parse(value, "overridden" if pid in shipped_ids else "operator", pid))
        except ValidationFailed:
            continue  # a stored value this version cannot read is skipped, not fatal
    return found


def all_profiles(ctx: Context) -> list[Profile]:
    """The operator's profiles first (they win a match), then the shipped ones not overridden."""
    own = _operator_profiles(ctx)
    replaced = {p.id for p in own}
    return [*own, *(p for p in shipped() if p.id not in replaced)]


def get(ctx: Context, profile_id: str) -> Profile:
    for profile in all_profiles(ctx):
        if profile.id == profile_id:
            return profile
    raise NotFound("No such client profile")


def _audit_fields(profile: Profile) -> dict[str, object]:
    return {
        "name": profile.name,
        "origin": profile.origin,
        "document_urls": list(profile.document_urls),
        "redirect_hosts": list(profile.redirect_hosts),
        "pinned": profile.pinned_document is not None,
    }


def save(ctx: Context, actor: Actor, profile_id: str, value: Any) -> Profile:
    """Add a profile, or override the shipped one of this id; audited ``client_profile.saved``."""
    if isinstance(value, Mapping) and value.get("id") not in (None, profile_id):
        raise _invalid("id", "must match the profile id of the URL")
    parse(value, "operator", profile_id)  # validate before anything is written
    stored = _stored(ctx)
    if profile_id not in stored and len(stored) >= MAX_OPERATOR_PROFILES:
        raise ValidationFailed(f"At most {MAX_OPERATOR_PROFILES} operator profiles")
    body = {k: v for k, v in dict(value).items() if k not in ("id", "origin")}
    ctx.store.set_setting(SETTING, {**stored, profile_id: body})
    profile = get(ctx, profile_id)
    audit.record(
        ctx,
        actor,
        "client_profile.saved",
        target_type="client_profile",
        target_id=profile_id,
        **_audit_fields(profile),
    )
    return profile


def pin(ctx: Context, actor: Actor, profile_id: str, document: dict[str, Any]) -> Profile:
    """Store ``document`` as the profile's pinned copy (an operator's override of the profile,
    keeping everything else); audited ``client_profile.pinned``."""
    current = get(ctx, profile_id)
    body = current.as_json() | {"pinned_document": document, "pinned_note": "pinned by operator"}
    parse(body, "operator", profile_id)
    stored = _stored(ctx)
    if profile_id not in stored and len(stored) >= MAX_OPERATOR_PROFILES:
        raise ValidationFailed(f"At most {MAX_OPERATOR_PROFILES} operator profiles")
    body = {k: v for k, v in body.items() if k not in ("id", "origin")}
    ctx.store.set_setting(SETTING, {**stored, profile_id: body})
    profile = get(ctx, profile_id)
    audit.record(
        ctx,
        actor,
        "client_profile.pinned",
        target_type="client_profile",
        target_id=profile_id,
        document_url=str(document.get("client_id")),
        **_audit_fields(profile),
    )
    return profile


def delete(ctx: Context, actor: Actor, profile_id: str) -> None:
    """Remove the operator's profile (a shipped one of the same id applies again)."""
    stored = _stored(ctx)
    if profile_id not in stored:
        raise NotFound("No operator profile of this id (shipped profiles cannot be deleted)")
    del stored[profile_id]
    ctx.store.set_setting(SETTING, stored)
    audit.record(
        ctx, actor, "client_profile.deleted", target_type="client_profile", target_id=profile_id
    )


# Matching


def _redirects_fit(profile: Profile, uris: Sequence[str]) -> bool:
    """Every redirect URI on the profile's hosts, and at least one that is not loopback (a
    loopback callback alone says nothing about which program is listening)."""
    hosts = profile.redirect_hosts
    if not uris or not hosts or not all(runtime_settings.redirect_allowed(u, hosts) for u in uris):
        return False
    distinctive = [h for h in hosts if h not in _LOOPBACK]
    return bool(distinctive) and any(
        runtime_settings.redirect_allowed(u, distinctive) for u in uris
    )


def _named(profile: Profile, name: str, uris: Sequence[str]) -> bool:
    hosts = profile.redirect_hosts
    fits = bool(uris) and all(runtime_settings.redirect_allowed(u, hosts) for u in uris)
    return fits and any(name.startswith(prefix) for prefix in profile.client_names)


def match(
    ctx: Context,
    client_id: str,
    name: str,
    redirect_uris: Sequence[str],
    *,
    document: bool,
    profiles: Sequence[Profile] | None = None,
) -> Profile | None:
    """The profile a client fits: a document client by its document URL only; a registered
    one by redirect URIs on a host only that client uses, else by its name and redirect URIs
    both as the profile says.
    ``profiles``: ``all_profiles(ctx)`` when already read (a listing reads it once)."""
    if profiles is None:
        profiles = all_profiles(ctx)
    if document:
        # A document client is who its URL says: its redirect URIs name no one.
        return next((p for p in profiles if client_id in p.document_urls), None)
    for profile in profiles:
        if _redirects_fit(profile, redirect_uris):
            return profile
    for profile in profiles:
        if _named(profile, name, redirect_uris):
            return profile
    return None


def match_app(ctx: Context, app: App, profiles: Sequence[Profile] | None = None) -> Profile | None:
    return match(
        ctx,
        app.id,
        app.name,
        app.redirect_uris,
        document=app.metadata_document,
        profiles=profiles,
    )


def pinned_for(ctx: Context, url: str) -> Profile | None:
    """The profile holding a pinned copy of the document at exactly ``url``."""
    for profile in all_profiles(ctx):
        pinned = profile.pinned_document
        if pinned is not None and url in profile.document_urls and pinned.get("client_id") == url:
            return profile
    return None
