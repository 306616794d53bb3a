"""``authgate upstream``: list, add, change and remove the upstream providers people sign in
through (OpenID Providers, and GitHub with ``--kind github``).

The same ``core.upstream.providers`` functions as ``/api/v2/upstream-providers``, acting as
``system``; ``--json`` prints the API's JSON shapes. The client secret is read from standard
input (``--client-secret-stdin``), never from an argument that process lists would show, and
is never printed. With ``--token-auth-method private_key_jwt`` authgate signs with a key of its
own: ``jwks`` and ``certificate`` print what to give the provider, ``rotate-key`` replaces it.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from authgate.cli.common import emit, fields, json_option, open_context, table
from authgate.core.context import SYSTEM, Context
from authgate.core.errors import NotFound
from authgate.core.models import UpstreamProvider
from authgate.core.upstream import client_assertion
from authgate.core.upstream import providers as core
from authgate.schemas.upstream import UpstreamProviderOut

#: ``--token-auth-method auto``: no pinned method (the stored None).
AUTO = "auto"


@click.group()
def upstream() -> None:
    """Upstream providers: sign-in through the organisation's identity provider or GitHub."""


def _describe(out: UpstreamProviderOut) -> str:
    return fields(
        [
            ("ID", out.id),
            ("Button", out.display_name),
            ("Kind", out.kind),
            ("Issuer", out.issuer),
            ("Client ID", out.client_id),
            ("Client secret", "(stored)" if out.has_client_secret else "(none: public client)"),
            ("Scopes", out.scopes),
            ("Redirect path", out.redirect_path),
            ("Allowed domains", ", ".join(out.allowed_domains) or "(any)"),
            ("Link by verified email", out.link_by_verified_email),
            ("Create users", out.jit_create),
            ("Required claim", _claim(out.required_claim, out.required_values)),
            ("Admin claim", _claim(out.admin_claim, out.admin_values)),
            ("Enabled", out.enabled),
            ("Token auth method", out.token_auth_method or "auto"),
            *_key_rows(out),
        ]
    )


def _key_rows(out: UpstreamProviderOut) -> list[tuple[str, Any]]:
    key = out.assertion_key
    if key is None:
        return []
    return [
        ("Assertion audience", out.assertion_audience),
        ("Key id (kid)", key.kid),
        ("Certificate x5t", key.x5t),
        ("Certificate expires", key.not_after.isoformat()),
        ("JWKS URL", key.jwks_uri),
    ]


def _out(ctx: Context, provider: UpstreamProvider) -> UpstreamProviderOut:
    return UpstreamProviderOut.of(provider, ctx.policy.issuer)


def _claim(claim: str | None, values: list[str]) -> str:
    return f"{claim} in {', '.join(values)}" if claim else "(none)"


def _emit(as_json: bool, out: UpstreamProviderOut, heading: str = "") -> None:
    emit(as_json, out.model_dump(mode="json"), lambda: heading + _describe(out))


def _secret(from_stdin: bool) -> str | None:
    return sys.stdin.readline().strip() if from_stdin else None


def _rules(**options: Any) -> dict[str, Any]:
    """The options given (None and empty tuples are "not given"; ``auto`` is None)."""
    given = {k: v for k, v in options.items() if v is not None and v != ()}
    if given.get("token_auth_method") == AUTO:
        given["token_auth_method"] = None
    return given


_OPTIONS = [
    click.option("--display-name", default=None, help="What the sign-in button says."),
    click.option(
        "--issuer", default=None, help="The provider's issuer (https URL); GitHub's base URL."
    ),
    click.option("--client-id", default=None, help="authgate's client id at the provider."),
    click.option("--client-secret-stdin", is_flag=True, help="Read the client secret from stdin."),
    click.option(
        "--scopes", default=None, help='Space-separated ("openid" for OIDC); default per kind.'
    ),
    click.option("--allowed-domain", "allowed_domains", multiple=True, help="Repeat for several."),
    click.option("--link-by-verified-email/--no-link-by-verified-email", default=None),
    click.option("--create-users/--no-create-users", "jit_create", default=None),
    click.option("--required-claim", default=None, help="A claim a new user must have."),
    click.option("--required-value", "required_values", multiple=True),
    click.option("--admin-claim", default=None, help="The claim that makes an administrator."),
    click.option("--admin-value", "admin_values", multiple=True),
    click.option("--enabled/--disabled", default=None),
    click.option(
        "--token-auth-method",
        type=click.Choice([AUTO, *core.AUTH_METHODS]),
        default=None,
        help="How authgate authenticates at the token endpoint (default auto: from discovery).",
    ),
    click.option(
        "--assertion-audience",
        type=click.Choice(list(core.AUDIENCES)),
        default=None,
        help="private_key_jwt: the assertion's aud (default token_endpoint).",
    ),
]


def _with_options(command: Any) -> Any:
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


@upstream.command(name="list")
@json_option
def list_providers(as_json: bool) -> None:
    """List the upstream providers."""
    ctx = open_context()
    out = [_out(ctx, p) for p in ctx.store.list_upstream_providers()]
    rows = [[p.id, p.display_name, p.issuer, "yes" if p.enabled else "no"] for p in out]
    emit(
        as_json,
        [p.model_dump(mode="json") for p in out],
        lambda: table(["ID", "BUTTON", "ISSUER", "ENABLED"], rows),
    )


@upstream.command()
@click.argument("provider_id")
@click.option(
    "--kind",
    type=click.Choice(["oidc", "github"]),
    default="oidc",
    show_default=True,
    help="An OpenID Provider, or GitHub (an OAuth app).",
)
@_with_options
@json_option
def add(provider_id: str, client_secret_stdin: bool, as_json: bool, **options: Any) -> None:
    """Add a provider PROVIDER_ID (--display-name, --issuer and --client-id are required)."""
    given = _rules(**options)
    missing = [n for n in ("display_name", "issuer", "client_id") if n not in given]
    if missing:
        raise click.UsageError(f"missing --{missing[0].replace('_', '-')}")
    spec = core.ProviderSpec(id=provider_id, client_secret=_secret(client_secret_stdin), **given)
    ctx = open_context()
    provider = core.create_provider(ctx, SYSTEM, spec)
    _emit(as_json, _out(ctx, provider), "Added upstream provider.\n")


@upstream.command()
@click.argument("provider_id")
@_with_options
@click.option("--no-client-secret", is_flag=True, help="Remove the stored client secret.")
@json_option
def update(
    provider_id: str,
    client_secret_stdin: bool,
    no_client_secret: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Change a provider: only the options given change."""
    changes = _rules(**options)
    if client_secret_stdin and no_client_secret:
        raise click.UsageError("--no-client-secret cannot be combined with --client-secret-stdin")
    if client_secret_stdin or no_client_secret:
        changes["client_secret"] = _secret(client_secret_stdin) or ""
    ctx = open_context()
    provider = core.update_provider(ctx, SYSTEM, provider_id, changes)
    _emit(as_json, _out(ctx, provider), "Updated upstream provider.\n")


@upstream.command()
@click.argument("provider_id")
@json_option
def remove(provider_id: str, as_json: bool) -> None:
    """Remove a provider and the identities linked through it (the users stay)."""
    core.delete_provider(open_context(), SYSTEM, provider_id)
    emit(as_json, {"id": provider_id, "deleted": True}, f"Removed upstream provider {provider_id}.")


def _key(ctx: Context, provider_id: str) -> tuple[UpstreamProvider, dict[str, Any]]:
    """The provider and the JWK Set of its private_key_jwt key (NotFound without one)."""
    provider = core.get_provider(ctx, provider_id)
    document = client_assertion.published_jwks(provider)
    if document is None:
        raise NotFound(f"The upstream provider {provider_id!r} does not use private_key_jwt")
    return provider, document


@upstream.command()
@click.argument("provider_id")
@json_option
def jwks(provider_id: str, as_json: bool) -> None:
    """Print the public key of private_key_jwt: the JWK Set (--json) or its kid and URL."""
    ctx = open_context()
    provider, document = _key(ctx, provider_id)
    out = _out(ctx, provider)
    emit(as_json, document, lambda: fields(_key_rows(out)))


@upstream.command()
@click.argument("provider_id")
@json_option
def certificate(provider_id: str, as_json: bool) -> None:
    """Print the certificate (PEM) of private_key_jwt, for Entra ID or Auth0 (--json: with its
    kid and x5t)."""
    provider, _ = _key(open_context(), provider_id)
    key = client_assertion.described(provider)
    if key is None:  # _key found its JWK Set, so it has one
        raise NotFound(f"The upstream provider {provider_id!r} does not use private_key_jwt")
    data = {"id": provider.id, "kid": key.kid, "x5t": key.x5t, "certificate": key.certificate_pem}
    if as_json:
        emit(True, data, "")
    else:
        click.echo(key.certificate_pem, nl=False)


@upstream.command(name="rotate-key")
@click.argument("provider_id")
@json_option
def rotate_key(provider_id: str, as_json: bool) -> None:
    """Replace the private_key_jwt key with a new one (give the provider the new certificate)."""
    ctx = open_context()
    provider = core.rotate_assertion_key(ctx, SYSTEM, provider_id)
    _emit(as_json, _out(ctx, provider), "Rotated the assertion key.\n")
