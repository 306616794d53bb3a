""" "Test this client": what authgate will accept, drop or narrow, and refuse, for a metadata
document URL, a registration body (RFC 7591 §2) or an existing app — and why, in plain words.

Nothing here decides anything: the document goes through ``client_metadata.read_document`` and
the operator's controls (``document_policy``), a registration body through
``registration_metadata.parse_metadata``, exactly as a real request would; what was dropped is
what the negotiation (core/negotiation.py) reports, and what was narrowed compares the asked
scope with the registered one. ``_validated_document`` and ``_validated_registration`` are the
seam to the real validation: each returns what would be registered and what was dropped on the
way.
Nothing is stored and no limit is counted; a document is fetched live, through the one fetch
function of ``client_metadata``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from authgate.core import (
    client_identity,
    client_metadata,
    client_profiles,
    document_policy,
    registration_metadata,
)
from authgate.core import registration_settings as runtime_settings
from authgate.core.client_profiles import Profile
from authgate.core.context import Actor, Context
from authgate.core.errors import InvalidClientError, NotFound, OAuthError, ValidationFailed
from authgate.core.models import App
from authgate.core.ports import FetchError

Outcome = Literal["accept", "drop", "narrow", "refuse", "note"]
Kind = Literal["document", "registration", "app"]
# How a report is shown, in this order (the CLI and the console).
HEADINGS: tuple[tuple[Outcome, str], ...] = (
    ("accept", "Accepted"),
    ("drop", "Dropped"),
    ("narrow", "Narrowed"),
    ("refuse", "Refused"),
    ("note", "Notes"),
)

_CONSENT = {
    "operator": "an app registered by the operator",
    "published": "published by {host}",
    "device": "a program on the user's device, described by {host}",
    "unverified": "unverified (it chose its own name)",
    "impersonating": "unverified, and its name is close to one of the operator's apps",
}


@dataclass(frozen=True, slots=True)
class Finding:
    outcome: Outcome
    field: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"outcome": self.outcome, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class Report:
    """``verdict``: whether authgate would take the client now; ``profile``: the known-client
    profile it matches; ``pinned_copy_used``: the live document could not be fetched and the
    pinned copy was checked instead."""

    kind: Kind
    target: str
    verdict: Literal["accepted", "refused"]
    findings: tuple[Finding, ...]
    profile: Profile | None = None
    pinned_copy_used: bool = False
    registered: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "verdict": self.verdict,
            "profile": self.profile.id if self.profile else None,
            "profile_name": self.profile.name if self.profile else None,
            "pinned_copy_used": self.pinned_copy_used,
            "registered": self.registered,
            "findings": [f.as_json() for f in self.findings],
        }

    def by_outcome(self, outcome: Outcome) -> list[Finding]:
        return [f for f in self.findings if f.outcome == outcome]

    def grouped(self) -> list[tuple[str, list[str]]]:
        """The messages under their headings, in ``HEADINGS`` order, empty ones left out."""
        return [
            (heading, [f.message for f in self.by_outcome(outcome)])
            for outcome, heading in HEADINGS
            if self.by_outcome(outcome)
        ]


def _report(
    kind: Kind,
    target: str,
    findings: list[Finding],
    profile: Profile | None = None,
    *,
    pinned: bool = False,
    registered: dict[str, Any] | None = None,
) -> Report:
    if profile is not None:
        findings.append(Finding("note", "profile", f"Matches the known client {profile.name}."))
        findings.extend(Finding("note", "quirk", q) for q in profile.quirks)
    refused = any(f.outcome == "refuse" for f in findings)
    return Report(
        kind,
        target,
        "refused" if refused else "accepted",
        tuple(findings),
        profile,
        pinned,
        registered or {},
    )


def _list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


_DROPPED = {
    "grant_types": "The grant type {value} is not supported by authgate; the client is "
    "registered without it.",
    "response_types": "The response type {value} is not supported (only code); it is left out.",
    "token_endpoint_auth_methods": "The auth method {value} is offered but not used: the "
    "client will authenticate with {method}.",
    "token_endpoint_auth_methods_supported": "token_endpoint_auth_methods_supported is not a "
    "list of method names ({value}); it is ignored.",
}


def _dropped(dropped: Mapping[str, tuple[str, ...]], method: str | None) -> list[Finding]:
    """What the negotiation (core/negotiation.py) left out, in plain words."""
    return [
        Finding(
            "drop",
            name,
            _DROPPED.get(name, "{value} is not supported and is left out.").format(
                value=value, method=method or "a client secret"
            ),
        )
        for name, values in dropped.items()
        for value in values
    ]


def _narrowed(incoming: Mapping[str, Any], scope: str | None) -> list[Finding]:
    asked = incoming.get("scope")
    if not isinstance(asked, str) or asked.split() == (scope or "").split():
        return []
    kept = scope or "(no scope limit)"
    return [Finding("narrow", "scope", f"The scope {asked!r} is registered as {kept!r}.")]


def _accepted(
    name: str, uris: tuple[str, ...], grants: tuple[str, ...], method: str | None, kind: str
) -> list[Finding]:
    return [
        Finding("accept", "client_name", f"Shown as {name!r}."),
        Finding("accept", "redirect_uris", "Redirects to " + ", ".join(uris) + "."),
        Finding("accept", "grant_types", "May use " + ", ".join(grants) + "."),
        Finding(
            "accept",
            "token_endpoint_auth_method",
            f"A {kind} client that authenticates with {method or 'any secret method'}.",
        ),
    ]


def _registered(app: App) -> dict[str, Any]:
    return {
        "client_id": app.id,
        "client_name": app.name,
        "redirect_uris": list(app.redirect_uris),
        "grant_types": list(app.grant_types),
        "token_endpoint_auth_method": app.token_endpoint_auth_method,
        "client_type": app.client_type,
        "scope": app.scope,
    }


# The seam to the real validation: what would be registered, and what was dropped.


def _validated_document(ctx: Context, url: str, body: bytes) -> tuple[App, list[Finding]]:
    app, dropped = client_metadata.read_document(url, body, None, ctx.clock.now(), None)
    try:
        incoming = json.loads(body)
    except ValueError:
        incoming = {}
    changes = _dropped(dropped, app.token_endpoint_auth_method)
    return app, changes + _narrowed(incoming, app.scope)


def _validated_registration(
    ctx: Context, body: Mapping[str, Any]
) -> tuple[registration_metadata.ClientMetadata, list[Finding]]:
    settings = runtime_settings.current(ctx)
    parsed = registration_metadata.parse_metadata(ctx, body, settings)
    metadata = parsed.metadata
    changes = _dropped(parsed.dropped, metadata.token_endpoint_auth_method)
    return metadata, changes + _narrowed(body, metadata.scope)


# The three kinds of target.


def _fetched_or_pinned(
    ctx: Context, url: str, findings: list[Finding]
) -> tuple[bytes | None, bool]:
    try:
        return client_metadata.fetch_document(ctx, url).body, False
    except FetchError as exc:
        profile = client_profiles.pinned_for(ctx, url)
        if profile is None:
            findings.append(
                Finding("refuse", "client_id", f"The document could not be fetched: {exc}.")
            )
            return None, False
        findings.append(
            Finding(
                "note",
                "client_id",
                f"The live document could not be fetched ({exc}); authgate would use the "
                f"pinned copy of the {profile.name} profile, checked below.",
            )
        )
        return client_metadata.pinned_body(profile), True


def check_document(ctx: Context, url: str) -> Report:
    """Fetch and validate the metadata document at ``url`` as a sign-in would."""
    findings: list[Finding] = []
    profile = client_profiles.match(ctx, url, "", (), document=True)
    try:
        client_metadata.check_url(url)
        document_policy.check_url_host(url, runtime_settings.current(ctx))
    except client_metadata.InvalidDocument as exc:
        return _report("document", url, [Finding("refuse", "client_id", f"{exc}.")], profile)
    except InvalidClientError as exc:
        return _report("document", url, [Finding("refuse", "client_id", exc.description)], profile)
    body, pinned = _fetched_or_pinned(ctx, url, findings)
    if body is None:
        return _report("document", url, findings, profile)
    try:
        app, changes = _validated_document(ctx, url, body)
        document_policy.check_redirect_uris(app, runtime_settings.current(ctx))
    except client_metadata.InvalidDocument as exc:
        findings.append(Finding("refuse", "document", f"The document is refused: {exc}."))
        return _report("document", url, findings, profile, pinned=pinned)
    except InvalidClientError as exc:
        findings.append(Finding("refuse", "redirect_uris", exc.description))
        return _report("document", url, findings, profile, pinned=pinned)
    findings += _accepted(
        app.name,
        app.redirect_uris,
        app.grant_types,
        app.token_endpoint_auth_method,
        app.client_type,
    )
    findings += changes
    who = client_identity.identity(ctx, app)
    label = _CONSENT[who.kind].format(host=who.host)
    findings.append(Finding("note", "consent", f"The consent page will show it as {label}."))
    return _report("document", url, findings, profile, pinned=pinned, registered=_registered(app))


def check_registration(ctx: Context, body: Any) -> Report:
    """Validate a registration request body (RFC 7591 §2) as ``POST /oauth2/register`` would."""
    findings: list[Finding] = []
    if not isinstance(body, Mapping):
        findings.append(Finding("refuse", "body", "A registration body is a JSON object."))
        return _report("registration", "registration body", findings)
    settings = runtime_settings.current(ctx)
    if not settings.enabled:
        findings.append(
            Finding("refuse", "registration", "Dynamic client registration is switched off.")
        )
    elif settings.initial_access_token_required:
        findings.append(
            Finding("note", "registration", "Registering needs an initial access token.")
        )
    name = body.get("client_name") if isinstance(body.get("client_name"), str) else ""
    uris = tuple(_list(body.get("redirect_uris")))
    profile = client_profiles.match(ctx, "", str(name), uris, document=False)
    try:
        metadata, changes = _validated_registration(ctx, body)
    except OAuthError as exc:
        findings.append(Finding("refuse", exc.error, exc.description))
        return _report("registration", "registration body", findings, profile)
    kind = "public" if metadata.public else "confidential"
    findings += _accepted(
        metadata.client_name,
        metadata.redirect_uris,
        metadata.grant_types,
        metadata.token_endpoint_auth_method,
        kind,
    )
    findings += changes
    registered = {
        "client_name": metadata.client_name,
        "redirect_uris": list(metadata.redirect_uris),
        "grant_types": list(metadata.grant_types),
        "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
        "client_type": kind,
        "scope": metadata.scope,
    }
    return _report("registration", "registration body", findings, profile, registered=registered)


def check_app(ctx: Context, app_id: str) -> Report:
    """An existing app: a document client's document is fetched and checked again; any other
    app is described as registered."""
    app = ctx.store.get_app(app_id) if len(app_id) <= 255 and "\x00" not in app_id else None
    if app is None:
        raise NotFound("No such app")
    if app.metadata_document:
        report = check_document(ctx, app.id)
        stored = Finding("note", "app", "Stored from its metadata document; checked again now.")
        return Report(
            "app",
            app.id,
            report.verdict,
            (stored, *report.findings),
            report.profile,
            report.pinned_copy_used,
            report.registered,
        )
    origin = "dynamically registered" if app.dynamically_registered else "created by an operator"
    findings = [Finding("note", "app", f"An app {origin}.")]
    findings += _accepted(
        app.name,
        app.redirect_uris,
        app.grant_types,
        app.token_endpoint_auth_method,
        app.client_type,
    )
    return _report(
        "app", app.id, findings, client_profiles.match_app(ctx, app), registered=_registered(app)
    )


def check(
    ctx: Context,
    *,
    document_url: str | None = None,
    registration_body: Any = None,
    app_id: str | None = None,
) -> Report:
    """Exactly one of the three targets."""
    given = [v is not None for v in (document_url, registration_body, app_id)]
    if sum(given) != 1:
        raise ValidationFailed(
            "Give exactly one of document_url, registration and app_id",
            validations={"target": "exactly one of document_url, registration and app_id"},
        )
    if document_url is not None:
        return check_document(ctx, document_url)
    if app_id is not None:
        return check_app(ctx, app_id)
    return check_registration(ctx, registration_body)


def pin_live(ctx: Context, actor: Actor, profile_id: str, url: str | None = None) -> Profile:
    """Pin what the profile's document URL serves now (the first URL unless ``url`` is given)."""
    profile = client_profiles.get(ctx, profile_id)
    target = url or (profile.document_urls[0] if profile.document_urls else None)
    if target is None:
        raise ValidationFailed(
            "This profile has no document URL to fetch",
            validations={"document_urls": "add the document URL first"},
        )
    try:
        fetched = client_metadata.fetch_document(ctx, target)
        document = json.loads(fetched.body)
    except FetchError as exc:
        raise ValidationFailed(
            f"The document could not be fetched: {exc}", validations={"url": str(exc)}
        ) from exc
    except ValueError as exc:
        raise ValidationFailed(
            "The document is not valid JSON", validations={"url": "not JSON"}
        ) from exc
    return client_profiles.pin(ctx, actor, profile_id, document)
