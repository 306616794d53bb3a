"""Upstream providers: their configuration, checked in one place, and the client secret sealed
at rest the way signing keys are (AES-256-GCM, a key derived from AUTHGATE_SECRET_KEY, the
provider id as associated data, so a sealed secret cannot be moved to another provider).

The management API, the CLI and the startup configuration all come through here, so they
share one set of rules and one audit trail (``upstream_provider.created`` / ``.updated`` /
``.deleted`` / ``.key_rotated``). The secret is write-only: nothing here returns it except
``client_secret``, which the code exchange alone calls. A provider whose ``token_auth_method``
is ``private_key_jwt`` holds a key authgate generated (``client_assertion.py``) instead of a
secret: made when the method becomes ``private_key_jwt``, dropped when it stops being,
replaced by ``rotate_assertion_key``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any, get_args
from urllib.parse import urlsplit

from authgate.core import audit
from authgate.core.context import Actor, Context
from authgate.core.errors import Conflict, NotFound, ValidationFailed
from authgate.core.models import (
    AssertionAudience,
    UpstreamAuthMethod,
    UpstreamKind,
    UpstreamProvider,
)
from authgate.core.ports import DuplicateKeyError
from authgate.core.upstream import client_assertion, github
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
#: The token endpoint authentication methods an operator may pin (None: auto, from discovery).
AUTH_METHODS: tuple[UpstreamAuthMethod, ...] = get_args(UpstreamAuthMethod)
#: Those GitHub takes: it has no client assertions.
GITHUB_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
AUDIENCES: tuple[AssertionAudience, ...] = get_args(AssertionAudience)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What an operator sets. ``client_secret``: None keeps the stored one on an update (and
    means a public client on creation); "" removes it. ``scopes`` "" is the kind's default
    (``OIDC_SCOPES``, ``github.DEFAULT_SCOPES``). ``kind`` "github": ``issuer`` is GitHub's
    web base URL (``github.py``). ``token_auth_method`` None: auto (Basic, or the form when
    discovery offers only that); ``assertion_audience`` is read only with ``private_key_jwt``."""

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
    token_auth_method: str | None = None
    assertion_audience: str = "token_endpoint"


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


def _check_auth(spec: ProviderSpec, stored_secret: bool) -> None:
    """The token endpoint's authentication: a method the kind has, and a client secret exactly
    when the method uses one (``private_key_jwt`` signs with authgate's key: a secret beside
    it would be a second credential nobody uses, so it is refused, not kept)."""
    method = spec.token_auth_method
    methods = GITHUB_AUTH_METHODS if spec.kind == "github" else AUTH_METHODS
    if method is not None and method not in methods:
        raise _problem("token_auth_method", "none (auto) or one of: " + ", ".join(methods))
    if spec.assertion_audience not in AUDIENCES:
        raise _problem("assertion_audience", "one of: " + ", ".join(AUDIENCES))
    has_secret = stored_secret if spec.client_secret is None else bool(spec.client_secret)
    if method == "private_key_jwt" and has_secret:
        raise _problem(
            "client_secret", "private_key_jwt signs with authgate's key: remove the client secret"
        )
    if method is not None and method.startswith("client_secret_") and not has_secret:
        raise _problem("client_secret", f"{method} needs a client secret")


def check(spec: ProviderSpec, *, stored_secret: bool = False) -> ProviderSpec:
    """The spec as stored (normalised), or ``ValidationFailed`` naming the field.
    ``stored_secret``: the provider holds a secret that a ``client_secret`` None keeps."""
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
    _check_auth(spec, stored_secret)
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
    """What an audit event says of a provider: every setting, never the secret or the
    private key (the key's ``kid`` is public: the JWKS publishes it)."""
    key = client_assertion.described(provider)
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
        "token_auth_method": provider.token_auth_method,
        "assertion_audience": provider.assertion_audience,
        "assertion_kid": key.kid if key else None,
    }


Sealed = tuple[str | None, str | None]


def _assertion_key(ctx: Context, spec: ProviderSpec, kept: UpstreamProvider | None) -> Sealed:
    """(sealed private key, certificate) the provider holds after the change: the kept one
    while it uses ``private_key_jwt``, a new one when it starts to, none otherwise."""
    if spec.token_auth_method != "private_key_jwt":
        return None, None
    if kept is not None and kept.assertion_key and kept.assertion_certificate:
        return kept.assertion_key, kept.assertion_certificate
    return client_assertion.new_key(ctx, spec.id)


def _model(
    ctx: Context, spec: ProviderSpec, sealed: str | None, created: UpstreamProvider | None
) -> UpstreamProvider:
    now = ctx.clock.now()
    kind: UpstreamKind = "github" if spec.kind == "github" else "oidc"
    method = next((m for m in AUTH_METHODS if m == spec.token_auth_method), None)
    audience = next(a for a in AUDIENCES if a == spec.assertion_audience)
    key, certificate = _assertion_key(ctx, spec, created)
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
        token_auth_method=method,
        assertion_audience=audience,
        assertion_key=key,
        assertion_certificate=certificate,
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
    spec = check(replace(spec_of(old), **changes), stored_secret=old.client_secret is not None)
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


def rotate_assertion_key(ctx: Context, actor: Actor, provider_id: str) -> UpstreamProvider:
    """Replace the provider's ``private_key_jwt`` key with a new one, at once: the old key
    signs nothing more, so the provider must be given the new certificate or read the JWKS
    again (Okta and Keycloak do when they meet an unknown ``kid``)."""
    old = get_provider(ctx, provider_id)
    before = client_assertion.described(old)
    if old.token_auth_method != "private_key_jwt" or before is None:
        raise Conflict(f"The upstream provider {provider_id!r} does not use private_key_jwt")
    key, certificate = client_assertion.new_key(ctx, old.id)
    provider = replace(
        old, assertion_key=key, assertion_certificate=certificate, updated_at=ctx.clock.now()
    )
    ctx.store.update_upstream_provider(provider)
    after = client_assertion.of_certificate(certificate)
    audit.record(
        ctx,
        actor,
        "upstream_provider.key_rotated",
        target_type="upstream_provider",
        target_id=provider.id,
        previous_kid=before.kid,
        kid=after.kid,
        not_after=after.not_after.isoformat(),
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
        # Here a spec without a client_secret means none (a public client or private_key_jwt).
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
