"""Admin console: upstream identity providers (sign-in through the organisation's IdP).

Every change calls ``core.upstream.providers`` — the functions behind
``/api/v2/upstream-providers`` and ``authgate upstream`` — so it is checked and audited the
same way. The client secret is write-only: a field sets or replaces it, a box removes it, and
no page ever shows it, not even the form sent back after a refusal. Of the ``private_key_jwt``
key a provider's page shows the public parts, offers the certificate for download and a
button that rotates the key; the private half never reaches a page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from authgate.core.accounts import SignedIn
from authgate.core.errors import InvalidRequestError, ManagementError, ValidationFailed
from authgate.core.models import UpstreamProvider
from authgate.core.upstream import client_assertion, providers
from authgate.core.upstream.transactions import callback_path, jwks_path
from authgate.web import deps
from authgate.web.pages import common

LIST = "/admin/upstream"
#: What each field is called on the form, for refusals in plain words.
LABELS = {
    "id": "ID",
    "kind": "Kind",
    "display_name": "Button text",
    "issuer": "Issuer",
    "client_id": "Client ID",
    "client_secret": "Client secret",
    "scopes": "Scopes",
    "allowed_domains": "Allowed email domains",
    "link_by_verified_email": "Link by verified email",
    "jit_create": "Create users",
    "required_claim": "Required claim",
    "required_values": "Required values",
    "admin_claim": "Administrator claim",
    "admin_values": "Administrator values",
    "enabled": "Enabled",
    "remove_client_secret": "Remove the client secret",
    "token_auth_method": "Token endpoint authentication",
    "assertion_audience": "Assertion audience",
}
BOXES = ("link_by_verified_email", "jit_create", "enabled")
TEXTS = ("display_name", "issuer", "client_id", "scopes", "required_claim", "admin_claim")
LINES = ("allowed_domains", "required_values", "admin_values")
#: Drop-downs; an empty ``token_auth_method`` is auto (None).
CHOICES = ("token_auth_method", "assertion_audience")


def provider_path(provider_id: str) -> str:
    return f"{LIST}/{quote(provider_id, safe='')}"


def _refused(field: str, message: str) -> ValidationFailed:
    return ValidationFailed("The provider was not saved", validations={field: message})


def plain(failure: ManagementError) -> ManagementError:
    """The refusal with each field named as the form labels it."""
    if not failure.validations:
        return failure
    named = {LABELS.get(k, k): v for k, v in failure.validations.items()}
    return type(failure)("The provider was not saved", validations=named)


def _box(form: FormData, name: str) -> bool:
    """A checkbox: absent (unticked) or "on"; anything else is refused, not guessed."""
    values = form.getlist(name)
    if not values:
        return False
    if values != ["on"]:
        raise _refused(name, "a box is ticked or not")
    return True


def _one(form: FormData, name: str) -> str:
    """A text field sent at most once (a repeated field is refused, not picked from)."""
    values = form.getlist(name)
    if len(values) > 1:
        raise _refused(name, "sent more than once")
    return common.text(form, name)


def _secret(form: FormData, *, creating: bool) -> str | None:
    """None keeps the stored secret (or, when creating, means a public client); "" removes."""
    typed = form.getlist("client_secret")
    if len(typed) > 1:
        raise _refused("client_secret", "sent more than once")
    if not all(isinstance(v, str) for v in typed):
        raise _refused("client_secret", "text, not a file")
    secret = str(typed[0]) if typed else ""
    padded = secret[:1].isspace() or secret[-1:].isspace()
    if padded or any(ord(c) < 0x20 for c in secret):
        raise _refused("client_secret", "no spaces around it and no control characters")
    remove = _box(form, "remove_client_secret")
    if remove and (secret or creating):
        raise _refused("remove_client_secret", "either type a new secret or remove it, not both")
    if remove:
        return ""
    return secret or None


def settings_from(form: FormData, *, creating: bool) -> dict[str, Any]:
    """The form as the settings of ``providers.ProviderSpec`` (every field, strictly)."""
    values: dict[str, Any] = {name: _one(form, name) for name in TEXTS}
    for claim in ("required_claim", "admin_claim"):
        values[claim] = values[claim] or None
    for name in LINES:
        values[name] = tuple(line.strip() for line in _one(form, name).splitlines() if line.strip())
    for name in BOXES:
        values[name] = _box(form, name)
    values["client_secret"] = _secret(form, creating=creating)
    values["token_auth_method"] = _one(form, "token_auth_method") or None
    values["assertion_audience"] = _one(form, "assertion_audience") or "token_endpoint"
    if creating:
        kind = _one(form, "kind") or providers.KINDS[0]
        if kind not in providers.KINDS:
            raise _refused("kind", "one of: " + ", ".join(providers.KINDS))
        values |= {"id": _one(form, "id"), "kind": kind}
    return values


def _values(form: FormData | None, provider: UpstreamProvider | None) -> dict[str, Any]:
    """What the form shows: the posted values after a refusal (never the secret), else the
    provider's, else a new provider's defaults."""
    if form is not None:
        named = ("id", "kind", *TEXTS, *LINES, *CHOICES)
        shown = {name: common.text(form, name) for name in named}
        return shown | {name: form.get(name) == "on" for name in BOXES}
    if provider is not None:
        shown = {name: getattr(provider, name) or "" for name in ("id", "kind", *TEXTS, *CHOICES)}
        shown |= {name: "\n".join(getattr(provider, name)) for name in LINES}
        return shown | {name: getattr(provider, name) for name in BOXES}
    new = providers.ProviderSpec(id="", display_name="", issuer="", client_id="")
    shown = {name: getattr(new, name) or "" for name in ("id", "kind", *TEXTS, *CHOICES)}
    return shown | dict.fromkeys(LINES, "") | {name: getattr(new, name) for name in BOXES}


def rules(provider: UpstreamProvider) -> list[str]:
    """Who may sign in through the provider, in a few words each."""
    said = []
    if provider.link_by_verified_email:
        said.append("links by verified email")
    if provider.jit_create:
        domains = ", ".join(provider.allowed_domains) or "any domain"
        said.append(f"creates users ({domains})")
    if provider.required_claim:
        said.append(f"requires {provider.required_claim}: {', '.join(provider.required_values)}")
    if provider.admin_claim:
        said.append(f"admins by {provider.admin_claim}: {', '.join(provider.admin_values)}")
    return said or ["linked users only"]


async def _list_page(
    request: Request,
    who: SignedIn,
    *,
    form: FormData | None = None,
    failure: ManagementError | None = None,
) -> Response:
    found = await run_in_threadpool(deps.ctx_of(request).store.list_upstream_providers)
    return common.page(
        request,
        "admin_upstream.html",
        who,
        status=failure.status if failure else 200,
        providers=found,
        rules=rules,
        kinds=providers.KINDS,
        auth_methods=providers.AUTH_METHODS,
        audiences=providers.AUDIENCES,
        values=_values(form, None),
        failure=plain(failure) if failure else None,
    )


async def list_providers(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    return await _list_page(request, who)


async def create_provider(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    try:
        spec = providers.ProviderSpec(**settings_from(form, creating=True))
    except ValidationFailed as exc:
        return await _list_page(request, who, form=form, failure=exc)
    made = await common.attempt(
        providers.create_provider, deps.ctx_of(request), common.actor(request, who), spec
    )
    if isinstance(made, ManagementError):
        return await _list_page(request, who, form=form, failure=made)
    return common.done(provider_path(made.id), "provider-created")


async def _target(request: Request) -> UpstreamProvider | Response:
    found = await run_in_threadpool(
        providers.find, deps.ctx_of(request), request.path_params["provider_id"]
    )
    if found is None:
        return common.error(request, InvalidRequestError("No such upstream provider"), 404)
    return found


async def _provider_page(
    request: Request,
    who: SignedIn,
    provider: UpstreamProvider,
    *,
    form: FormData | None = None,
    failure: ManagementError | None = None,
) -> Response:
    issuer = deps.ctx_of(request).policy.issuer
    return common.page(
        request,
        "admin_upstream_provider.html",
        who,
        status=failure.status if failure else 200,
        provider=provider,
        auth_methods=providers.AUTH_METHODS,
        audiences=providers.AUDIENCES,
        key=client_assertion.described(provider),
        jwks_url=issuer.rstrip("/") + jwks_path(provider.id),
        redirect_uri=issuer + callback_path(provider.id),
        values=_values(form, provider),
        failure=plain(failure) if failure else None,
    )


async def show_provider(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    provider = await _target(request)
    if not isinstance(provider, UpstreamProvider):
        return provider
    return await _provider_page(request, who, provider)


Read = Callable[[FormData, UpstreamProvider], dict[str, Any]]


async def _change(request: Request, read: Read, notice: str) -> Response:
    """Apply the changes ``read(form, provider)`` names to the provider of the path."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    provider = await _target(request)
    if not isinstance(provider, UpstreamProvider):
        return provider
    try:
        changes = read(form, provider)
    except ValidationFailed as exc:
        return await _provider_page(request, who, provider, form=form, failure=exc)
    ctx = deps.ctx_of(request)
    actor = common.actor(request, who)
    updated = await common.attempt(providers.update_provider, ctx, actor, provider.id, changes)
    if isinstance(updated, ManagementError):
        return await _provider_page(request, who, provider, form=form, failure=updated)
    return common.done(provider_path(provider.id), notice)


async def update_provider(request: Request) -> Response:
    def read(form: FormData, provider: UpstreamProvider) -> dict[str, Any]:
        """The settings that differ from the stored ones (so the audit names those only)."""
        settings = settings_from(form, creating=False)
        secret = settings.pop("client_secret")
        spec = replace(providers.spec_of(provider), **settings, client_secret=secret)
        normal = providers.check(spec, stored_secret=provider.client_secret is not None)
        changes = {k: settings[k] for k in settings if getattr(normal, k) != getattr(provider, k)}
        return changes if secret is None else changes | {"client_secret": secret}

    return await _change(request, read, "provider-saved")


async def enable_provider(request: Request) -> Response:
    return await _change(request, lambda _, __: {"enabled": True}, "provider-enabled")


async def disable_provider(request: Request) -> Response:
    return await _change(request, lambda _, __: {"enabled": False}, "provider-disabled")


async def delete_provider(request: Request) -> Response:
    """Delete a provider (a ticked box confirms it) with the identities linked through it."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    provider = await _target(request)
    if not isinstance(provider, UpstreamProvider):
        return provider
    if form.getlist("confirm") != ["on"]:
        failure = ManagementError(f"Tick the box to confirm that {provider.id} be deleted")
        return await _provider_page(request, who, provider, failure=failure)
    ctx = deps.ctx_of(request)
    gone = await common.attempt(
        providers.delete_provider, ctx, common.actor(request, who), provider.id
    )
    if isinstance(gone, ManagementError):
        return await _provider_page(request, who, provider, failure=gone)
    return common.done(LIST, "provider-deleted")


async def rotate_key(request: Request) -> Response:
    """Replace the provider's ``private_key_jwt`` key (``providers.rotate_assertion_key``)."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    provider = await _target(request)
    if not isinstance(provider, UpstreamProvider):
        return provider
    ctx = deps.ctx_of(request)
    rotated = await common.attempt(
        providers.rotate_assertion_key, ctx, common.actor(request, who), provider.id
    )
    if isinstance(rotated, ManagementError):
        return await _provider_page(request, who, provider, failure=rotated)
    return common.done(provider_path(provider.id), "provider-key-rotated")


async def certificate(request: Request) -> Response:
    """The certificate of the ``private_key_jwt`` key, as a download (PEM)."""
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    provider = await _target(request)
    if not isinstance(provider, UpstreamProvider):
        return provider
    key = client_assertion.signing(provider)
    if key is None:
        failure = InvalidRequestError("The provider does not use private_key_jwt")
        return common.error(request, failure, 404)
    disposition = f'attachment; filename="authgate-{provider.id}.pem"'
    return Response(
        key.certificate_pem,
        media_type="application/x-pem-file",
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
    )
