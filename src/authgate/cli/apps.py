"""``authgate apps``: create, list, show and delete OAuth clients, and manage their secrets.

The same ``core.clients`` functions as ``/api/v2/oauth2-provider/apps``, acting as ``system``;
``--json`` prints the API's JSON shapes.
"""

from __future__ import annotations

import click

from authgate.cli.common import emit, fields, json_option, open_context, table
from authgate.core import clients
from authgate.core.context import SYSTEM
from authgate.schemas import AppOut, SecretCreated, SecretOut

ADMIN_ACCESS_HELP = (
    "Let the app be granted authgate's own admin scope (the management API, with an "
    "administrator's consent). Other apps asking for it get it narrowed away."
)


@click.group()
def apps() -> None:
    """OAuth clients ("apps") and their secrets."""


def _keys(app: AppOut) -> str:
    if app.jwks_uri:
        return f"published at {app.jwks_uri}"
    kids = [str(k.get("kid") or "(no kid)") for k in (app.jwks or {}).get("keys", [])]
    return f"{len(kids)} registered: {', '.join(kids)}"


def _describe(app: AppOut) -> str:
    pairs: list[tuple[str, object]] = [
        ("ID (client_id)", app.id),
        ("Name", app.name),
        ("Type", app.client_type),
        ("Redirect URIs", ", ".join(app.redirect_uris) or "(none)"),
        ("PKCE required", "yes" if app.require_pkce else "no"),
        ("Auth method", app.token_endpoint_auth_method or "client_secret_basic or _post"),
        ("Grant types", " ".join(app.grant_types)),
        ("Scope", app.scope or "(any)"),
        ("First party", "yes" if app.first_party else "no"),
        ("Admin access", "yes" if app.admin_access else "no"),
        ("Dynamically registered", "yes" if app.dynamically_registered else "no"),
        ("Service access", _service_access(app)),
    ]
    if app.metadata_document:
        pairs.append(("Metadata document", "yes"))
    if app.dynamically_registered or app.metadata_document:
        pairs.append(("Application type", app.application_type))
    if app.token_endpoint_auth_method == "private_key_jwt":
        pairs.append(("Keys", _keys(app)))
    pairs += [
        ("Created", app.created_at.isoformat()),
        ("Authorization endpoint", app.endpoints.authorization),
        ("Token endpoint", app.endpoints.token),
    ]
    return fields(pairs)


def _service_access(app: AppOut) -> str:
    """What client_credentials tokens may reach (``authgate apps access``)."""
    if not app.service_access:
        return "(none)"
    return "; ".join(
        f"{e.resource} ({' '.join(e.scopes) or 'no scope'})" for e in app.service_access
    )


@apps.command()
@click.option("--name", required=True, help="Shown to users on the consent page.")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="Repeat for several. Required unless the app has no authorization_code grant.",
)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(sorted(clients.SUPPORTED_GRANTS)),
    help="Repeat for several (default: authorization_code and refresh_token). "
    "An app with only client_credentials needs no redirect URI.",
)
@click.option("--public", is_flag=True, help="A public client (no secret, PKCE only).")
@click.option("--no-pkce", is_flag=True, help="Let a legacy confidential client skip PKCE.")
@click.option("--scope", default=None, help="The scopes the app may ask for (space-separated).")
@click.option("--first-party", is_flag=True, help="Mark the app as first party (operated by you).")
@click.option("--icon", default=None, help="An http(s) URL of the app's icon.")
@click.option("--admin-access", is_flag=True, help=ADMIN_ACCESS_HELP)
@json_option
def create(
    name: str,
    redirect_uris: tuple[str, ...],
    grant_types: tuple[str, ...],
    public: bool,
    no_pkce: bool,
    scope: str | None,
    first_party: bool,
    icon: str | None,
    admin_access: bool,
    as_json: bool,
) -> None:
    """Register an app. Confidential apps then need `authgate apps secrets create`."""
    grants = grant_types or clients.DEFAULT_GRANTS
    if not redirect_uris and "authorization_code" in grants:
        raise click.UsageError(
            "--redirect-uri is required unless the app has no authorization_code grant "
            "(e.g. --grant-type client_credentials)"
        )
    ctx = open_context()
    app = clients.create_app(
        ctx,
        SYSTEM,
        clients.AppFields(
            name=name,
            icon=icon,
            redirect_uris=list(redirect_uris),
            client_type="public" if public else "confidential",
            require_pkce=False if no_pkce else None,
            grant_types=list(grant_types) or None,
            scope=scope,
            first_party=first_party,
            admin_access=admin_access,
        ),
    )
    out = AppOut.of(app, ctx.policy.issuer)
    emit(as_json, out.model_dump(mode="json"), lambda: f"Created app.\n{_describe(out)}")


@apps.command()
@click.argument("app_id")
@click.option("--admin-access/--no-admin-access", default=None, help=ADMIN_ACCESS_HELP)
@json_option
def update(app_id: str, admin_access: bool | None, as_json: bool) -> None:
    """Change an app; what is not given stays as it is."""
    ctx = open_context()
    fields = clients.AppFields(admin_access=admin_access)
    out = AppOut.of(clients.update_app(ctx, SYSTEM, app_id, fields), ctx.policy.issuer)
    emit(as_json, out.model_dump(mode="json"), lambda: f"Updated app.\n{_describe(out)}")


@apps.command(name="list")
@json_option
def list_apps(as_json: bool) -> None:
    """List every app."""
    ctx = open_context()
    out = [AppOut.of(app, ctx.policy.issuer) for app in ctx.store.list_apps()]
    rows = [
        [a.id, a.name, a.client_type, "yes" if a.admin_access else "no", " ".join(a.redirect_uris)]
        for a in out
    ]
    emit(
        as_json,
        [a.model_dump(mode="json") for a in out],
        lambda: table(["ID", "NAME", "TYPE", "ADMIN", "REDIRECT URIS"], rows),
    )


@apps.command()
@click.argument("app_id")
@json_option
def show(app_id: str, as_json: bool) -> None:
    """Show one app."""
    ctx = open_context()
    out = AppOut.of(clients.get_app(ctx, app_id), ctx.policy.issuer)
    emit(as_json, out.model_dump(mode="json"), lambda: _describe(out))


@apps.command()
@click.argument("app_id")
@json_option
def delete(app_id: str, as_json: bool) -> None:
    """Delete an app with its secrets, grants and tokens."""
    clients.delete_app(open_context(), SYSTEM, app_id)
    emit(as_json, {"id": app_id, "deleted": True}, f"Deleted app {app_id}.")


@apps.group()
def secrets() -> None:
    """Client secrets of an app (several at once, for rotation)."""


@secrets.command(name="create")
@click.argument("app_id")
@json_option
def create_secret(app_id: str, as_json: bool) -> None:
    """Create a secret; the full value is printed this once only."""
    secret, value = clients.create_secret(open_context(), SYSTEM, app_id)
    out = SecretCreated(id=secret.id, client_secret_full=value)
    emit(
        as_json,
        out.model_dump(mode="json"),
        lambda: (
            f"{fields([('Secret ID', out.id), ('Client secret', value)])}\n"
            "Store the client secret now: it will not be shown again."
        ),
    )


@secrets.command(name="list")
@click.argument("app_id")
@json_option
def list_secrets(app_id: str, as_json: bool) -> None:
    """List an app's secrets (only their last 6 characters)."""
    out = [SecretOut.of(secret) for secret in clients.list_secrets(open_context(), app_id)]
    rows = [
        [s.id, s.client_secret_truncated, s.last_used_at.isoformat() if s.last_used_at else "never"]
        for s in out
    ]
    emit(
        as_json,
        [s.model_dump(mode="json") for s in out],
        lambda: table(["ID", "LAST 6", "LAST USED"], rows),
    )


@secrets.command(name="delete")
@click.argument("app_id")
@click.argument("secret_id")
@json_option
def delete_secret(app_id: str, secret_id: str, as_json: bool) -> None:
    """Delete a secret and revoke every grant whose tokens were issued with it."""
    clients.delete_secret(open_context(), SYSTEM, app_id, secret_id)
    emit(as_json, {"id": secret_id, "deleted": True}, f"Deleted secret {secret_id}.")
