"""Upstream providers: their configuration, checked in one place, and the client secret sealed
at rest the way signing keys are (AES-256-GCM, a key derived from AUTHGATE_SECRET_KEY, the
provider id as associated data, so a sealed secret cannot be moved to another provider).

The management API, the CLI and the startup configuration all come through here, so they
share one set of rules and one audit trail (``upstream_provider.created`` / ``.updated`` /
``.deleted``). The secret is write-only: nothing here returns it except ``client_secret``,
which the code exchange alone calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any, get_args
from urllib.parse import urlsplit

from authgate.core import audit
from authgate.core.context import Actor, Context
from authgate.core.errors import Conflict, NotFound, ValidationFailed
from authgate.core.models import UpstreamKind, UpstreamProvider
from authgate.core.ports import DuplicateKeyError
from authgate.core.upstream import github
from authgate.core.upstream.errors import invalid_setting
from authgate.crypto import encryption

PURPOSE = "authgate upstream client secrets v1"
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")
_CLAIM = re.compile(r"[A-Za-z0-9_:./-]{1,64}")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
MAX_VALUES = 64
#: The kinds of provider core knows, in the order forms offer them (from ``UpstreamKind``).
KINDS: tuple[UpstreamKind, ...] = get_args(UpstreamKind)
#: The scopes of an OpenID Provider when the operator names none.
OIDC_SCOPES = ("openid", "email", "profile")


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What an operator sets. ``client_secret``: None keeps the stored one on an update (and
    means a public client on creation); "" removes it. ``scopes`` "" is the kind's default
    (``OIDC_SCOPES``, ``github.DEFAULT_SCOPES``). ``kind`` "github": ``issuer`` is GitHub's
    web base URL (``github.py``)."""

    id: str
    display_name: str
    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: str = ""
    allowed_domains: tuple[str, ...] = ()
    link_by_verified_email: bool = False
    jit_create: bool = False
    required_claim: str | None = None
    required_values: tuple[str, ...] = ()
    admin_claim: str | None = None
    admin_values: tuple[str, ...] = ()
    enabled: bool = True
    kind: str = "oidc"


#: The fields of a spec an update may change (all but ``id``).
SPEC_FIELDS = tuple(f.name for f in fields(ProviderSpec) if f.name != "id")


def _problem(field: str, message: str) -> ValidationFailed:
    return invalid_setting(field, message)


def _check_issuer(issuer: str) -> str:
    """OIDC Discovery §4.3: the issuer "MUST exactly match" the one in its metadata, so it is
    kept byte for byte; it must be an https URL without query or fragment (§2)."""
    parts = urlsplit(issuer)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise _problem("issuer", "an https URL without query or fragment")
    if len(issuer) > 512 or any(ord(c) <= 0x20 for c in issuer):
        raise _problem("issuer", "at most 512 characters, no spaces")
    return issuer


def _check_values(field: str, values: tuple[str, ...], pattern: re.Pattern[str]) -> None:
    if len(values) > MAX_VALUES:
        raise _problem(field, f"at most {MAX_VALUES} values")
    for value in values:
        if not pattern.fullmatch(value):
            raise _problem(field, f"not a valid value: {value[:64]!r}")


def _check_claim(field: str, claim: str | None, values: tuple[str, ...]) -> None:
    if claim is not None and not _CLAIM.fullmatch(claim):
        raise _problem(field, "a claim name: 1-64 of A-Z a-z 0-9 _ : . / -")
    if claim is not None and not values:
        raise _problem(field, "a claim needs at least one value")
    if any(not v or len(v) > 256 for v in values):
        raise _problem(field, "values of 1-256 characters")


def _check_scopes(spec: ProviderSpec) -> str:
    scopes = spec.scopes.split()
    if not all(_SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise _problem("scopes", "space-separated scope tokens")
    if spec.kind == "github":
        scopes = github.check_scopes(scopes, any(github.memberships(spec)))
    else:
        scopes = scopes or list(OIDC_SCOPES)
        if "openid" not in scopes:
            raise _problem("scopes", "space-separated scope tokens that include 'openid'")
    return " ".join(dict.fromkeys(scopes))


def _check_kind(spec: ProviderSpec) -> str:
    """The rules of the kind; the issuer as stored."""
    if spec.kind not in KINDS:
        raise _problem("kind", "one of: " + ", ".join(KINDS))
    if spec.kind == "oidc":
        return _check_issuer(spec.issuer)
    if spec.client_secret == "":
        raise _problem("client_secret", "a GitHub OAuth app needs its client secret")
    github.check_claim("required_claim", spec.required_claim, spec.required_values)
    github.check_claim("admin_claim", spec.admin_claim, spec.admin_values)
    github.check_memberships(spec)
    return github.check_issuer(spec.issuer)


def check(spec: ProviderSpec) -> ProviderSpec:
    """The spec as stored (normalised), or ``ValidationFailed`` naming the field."""
    if not _SLUG.fullmatch(spec.id):
        raise _problem("id", "1-40 characters: a-z, 0-9 and '-', starting with a letter or digit")
    name = spec.display_name.strip()
    if not 1 <= len(name) <= 64:
        raise _problem("display_name", "1-64 characters")
    if not 1 <= len(spec.client_id) <= 256 or any(ord(c) < 0x20 for c in spec.client_id):
        raise _problem("client_id", "1-256 printable characters")
    if spec.client_secret is not None and len(spec.client_secret) > 512:
        raise _problem("client_secret", "at most 512 characters")
    domains = tuple(d.strip().lower().rstrip(".") for d in spec.allowed_domains)
    _check_values("allowed_domains", domains, _DOMAIN)
    _check_claim("required_claim", spec.required_claim, spec.required_values)
    _check_claim("admin_claim", spec.admin_claim, spec.admin_values)
    issuer = _check_kind(spec)
    return replace(
        spec,
        display_name=name,
        issuer=issuer,
        scopes=_check_scopes(spec),
        allowed_domains=domains,
    )


def _key(ctx: Context) -> bytes:
    return encryption.derive_key(ctx.secret_key, PURPOSE)


def _seal(ctx: Context, provider_id: str, secret: str | None) -> str | None:
    if not secret:
        return None
    return encryption.encrypt(_key(ctx), secret.encode(), provider_id.encode())


def client_secret(ctx: Context, provider: UpstreamProvider) -> str | None:
    """The provider's client secret in clear, for the code exchange only."""
    if provider.client_secret is None:
        return None
    sealed = provider.client_secret
    return encryption.decrypt(_key(ctx), sealed, provider.id.encode()).decode()


def _described(provider: UpstreamProvider) -> dict[str, Any]:
    """What an audit event says of a provider: every setting, never the secret."""
    return {
        "display_name": provider.display_name,
        "kind": provider.kind,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "has_client_secret": provider.client_secret is not None,
        "scopes": provider.scopes,
        "allowed_domains": list(provider.allowed_domains),
        "link_by_verified_email": provider.link_by_verified_email,
        "jit_create": provider.jit_create,
        "required_claim": provider.required_claim,
        "admin_claim": provider.admin_claim,
        "enabled": provider.enabled,
    }


def _model(
    ctx: Context, spec: ProviderSpec, sealed: str | None, created: UpstreamProvider | None
) -> UpstreamProvider:
    now = ctx.clock.now()
    kind: UpstreamKind = "github" if spec.kind == "github" else "oidc"
    return UpstreamProvider(
        id=spec.id,
        display_name=spec.display_name,
        kind=kind,
        issuer=spec.issuer,
        client_id=spec.client_id,
        client_secret=sealed,
        scopes=spec.scopes,
        created_at=created.created_at if created else now,
        updated_at=now,
        allowed_domains=spec.allowed_domains,
        link_by_verified_email=spec.link_by_verified_email,
        jit_create=spec.jit_create,
        required_claim=spec.required_claim,
        required_values=spec.required_values,
        admin_claim=spec.admin_claim,
        admin_values=spec.admin_values,
        enabled=spec.enabled,
    )


def create_provider(ctx: Context, actor: Actor, spec: ProviderSpec) -> UpstreamProvider:
    spec = check(spec)
    if spec.kind == "github" and not spec.client_secret:
        raise _problem("client_secret", "a GitHub OAuth app needs its client secret")
    provider = _model(ctx, spec, _seal(ctx, spec.id, spec.client_secret), None)
    try:
        ctx.store.create_upstream_provider(provider)
    except DuplicateKeyError as exc:
        raise Conflict(f"An upstream provider {spec.id!r} already exists") from exc
    audit.record(
        ctx,
        actor,
        "upstream_provider.created",
        target_type="upstream_provider",
        target_id=provider.id,
        **_described(provider),
    )
    return provider


def spec_of(provider: UpstreamProvider) -> ProviderSpec:
    """The provider's settings as a spec (``client_secret`` None: keep the stored one)."""
    values = {name: getattr(provider, name) for name in SPEC_FIELDS if name != "client_secret"}
    return ProviderSpec(id=provider.id, **values)


def is_id(value: str) -> bool:
    """Whether ``value`` can be a provider's id (a path segment may be anything)."""
    return _SLUG.fullmatch(value) is not None


def find(ctx: Context, provider_id: str) -> UpstreamProvider | None:
    """The provider, or None; a name that cannot be an id is not looked up."""
    if not is_id(provider_id):
        return None
    return ctx.store.get_upstream_provider(provider_id)


def get_provider(ctx: Context, provider_id: str) -> UpstreamProvider:
    provider = find(ctx, provider_id)
    if provider is None:
        raise NotFound("No such upstream provider")
    return provider


def update_provider(
    ctx: Context, actor: Actor, provider_id: str, changes: dict[str, Any]
) -> UpstreamProvider:
    """Change the settings named in ``changes`` (``SPEC_FIELDS``); the rest stay."""
    old = get_provider(ctx, provider_id)
    unknown = set(changes) - set(SPEC_FIELDS)
    if unknown:
        raise _problem(sorted(unknown)[0], "not a setting of an upstream provider")
    spec = check(replace(spec_of(old), **changes))
    secret = changes.get("client_secret")
    sealed = old.client_secret if secret is None else _seal(ctx, old.id, secret)
    provider = _model(ctx, spec, sealed, old)
    ctx.store.update_upstream_provider(provider)
    ctx.caches.upstream_documents.forget(provider.id)
    audit.record(
        ctx,
        actor,
        "upstream_provider.updated",
        target_type="upstream_provider",
        target_id=provider.id,
        fields=sorted(changes),
        **_described(provider),
    )
    return provider


def delete_provider(ctx: Context, actor: Actor, provider_id: str) -> None:
    if find(ctx, provider_id) is None or not ctx.store.delete_upstream_provider(provider_id):
        raise NotFound("No such upstream provider")
    ctx.caches.upstream_documents.forget(provider_id)
    audit.record(
        ctx,
        actor,
        "upstream_provider.deleted",
        target_type="upstream_provider",
        target_id=provider_id,
    )


def enabled_providers(ctx: Context) -> list[UpstreamProvider]:
    """The buttons of the sign-in page."""
    return [p for p in ctx.store.list_upstream_providers() if p.enabled]


def apply_configuration(ctx: Context, actor: Actor, specs: list[ProviderSpec]) -> list[str]:
    """Make the stored providers match ``specs`` (infrastructure as code, at startup): create
    the missing, update those whose settings differ; providers not named are left alone.
    Idempotent: a second run changes nothing and audits nothing. Returns the ids changed."""
    changed: list[str] = []
    for spec in specs:
        checked = check(spec)
        old = ctx.store.get_upstream_provider(checked.id)
        if old is None:
            create_provider(ctx, actor, checked)
            changed.append(checked.id)
            continue
        differs = {
            name: getattr(checked, name)
            for name in SPEC_FIELDS
            if name != "client_secret" and getattr(checked, name) != getattr(old, name)
        }
        stored = client_secret(ctx, old)
        if (checked.client_secret or None) != stored:
            differs["client_secret"] = checked.client_secret or ""
        if differs:
            update_provider(ctx, actor, checked.id, differs)
            changed.append(checked.id)
    return changed
