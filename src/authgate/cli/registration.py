"""``authgate registration``: switch dynamic client registration (RFC 7591) and metadata-document
clients on or off, set their limits, and manage initial access tokens; and ``authgate apps
purge``, which deletes unused self-registered clients (of both kinds).

The same ``core.registration_settings`` / ``core.client_expiry`` functions as
``/api/v2/oauth2-provider/settings``, acting as ``system``; ``--json`` prints the API's JSON
shapes. A running server sees a change within its settings cache time (``policy.cache_ttl``,
30 s).
"""

from __future__ import annotations

from datetime import timedelta

import click

from authgate.cli import access
from authgate.cli.common import emit, fields, json_option, open_context, table
from authgate.core import client_expiry
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import SYSTEM
from authgate.core.models import RegistrationSettings
from authgate.core.registration_settings import SettingsChange
from authgate.schemas import (
    InitialAccessTokenCreated,
    InitialAccessTokenOut,
    RegistrationSettingsOut,
)


@click.group()
def registration() -> None:
    """Dynamic client registration: on/off, limits, initial access tokens."""


def _describe(value: RegistrationSettings) -> str:
    return fields(
        [
            ("Dynamic registration", "enabled" if value.enabled else "disabled"),
            (
                "Initial access token",
                "required" if value.initial_access_token_required else "not required",
            ),
            ("Redirect hosts", ", ".join(value.redirect_hosts) or "(any)"),
            ("Max clients", value.max_clients or "(no limit)"),
            (
                "Unused clients expire",
                f"after {value.client_ttl_days} days" if value.client_ttl_days else "never",
            ),
            ("Metadata documents", "enabled" if value.documents_enabled else "disabled"),
            ("Document hosts", ", ".join(value.document_hosts) or "(any)"),
            ("Denied document hosts", ", ".join(value.document_denied_hosts) or "(none)"),
            ("Max document clients", value.document_max_clients or "(no limit)"),
        ]
    )


def _show(as_json: bool, value: RegistrationSettings, heading: str = "") -> None:
    out = RegistrationSettingsOut.of(value).model_dump(mode="json")
    emit(as_json, out, lambda: f"{heading}{_describe(value)}")


def _change(change: SettingsChange, as_json: bool) -> None:
    _show(as_json, runtime_settings.update(open_context(), SYSTEM, change), "Updated.\n")


@registration.command()
@json_option
def status(as_json: bool) -> None:
    """Show the registration settings."""
    _show(as_json, runtime_settings.load(open_context()))


@registration.command()
@json_option
def enable(as_json: bool) -> None:
    """Accept new clients at POST /oauth2/register."""
    _change(SettingsChange(enabled=True), as_json)


@registration.command()
@json_option
def disable(as_json: bool) -> None:
    """Refuse new clients (403); registered clients keep working and managing themselves."""
    _change(SettingsChange(enabled=False), as_json)


@registration.command(name="set")
@click.option(
    "--require-initial-access-token/--no-require-initial-access-token",
    "token_required",
    default=None,
    help="Whether registering needs an initial access token (`registration tokens create`).",
)
@click.option(
    "--redirect-host",
    "redirect_hosts",
    multiple=True,
    help="Allow redirect URIs on this host (`example.com`, `*.example.com`, `127.0.0.1`) or "
    "private-use scheme (`myapp:`). Repeat for several; replaces the list.",
)
@click.option("--any-redirect-host", is_flag=True, help="Clear the list: any host is allowed.")
@click.option(
    "--max-clients", type=click.IntRange(min=0), help="Most registered clients; 0 = no limit."
)
@click.option(
    "--client-ttl-days",
    type=click.IntRange(min=0),
    help="Delete self-registered clients (registered or metadata-document) unused for this "
    "many days; 0 = never.",
)
@click.option(
    "--documents/--no-documents",
    "documents_enabled",
    default=None,
    help="Whether an https URL is accepted as client_id (Client ID Metadata Documents).",
)
@click.option(
    "--document-host",
    "document_hosts",
    multiple=True,
    help="Accept metadata documents only from this host (`example.com`, `*.example.com`). "
    "Repeat for several; replaces the list. While an initial access token is required, "
    "documents are accepted only from these hosts.",
)
@click.option("--any-document-host", is_flag=True, help="Clear the document host list.")
@click.option(
    "--deny-document-host",
    "denied_hosts",
    multiple=True,
    help="Never accept metadata documents from this host. Repeat for several; replaces the list.",
)
@click.option("--no-denied-document-hosts", is_flag=True, help="Clear the denied host list.")
@click.option(
    "--max-document-clients",
    type=click.IntRange(min=0),
    help="Most metadata-document clients stored at once; 0 = no limit.",
)
@json_option
def set_(
    token_required: bool | None,
    redirect_hosts: tuple[str, ...],
    any_redirect_host: bool,
    max_clients: int | None,
    client_ttl_days: int | None,
    documents_enabled: bool | None,
    document_hosts: tuple[str, ...],
    any_document_host: bool,
    denied_hosts: tuple[str, ...],
    no_denied_document_hosts: bool,
    max_document_clients: int | None,
    as_json: bool,
) -> None:
    """Change some settings; the others stay as they are."""
    if redirect_hosts and any_redirect_host:
        raise click.UsageError("--redirect-host and --any-redirect-host exclude each other")
    if document_hosts and any_document_host:
        raise click.UsageError("--document-host and --any-document-host exclude each other")
    if denied_hosts and no_denied_document_hosts:
        raise click.UsageError(
            "--deny-document-host and --no-denied-document-hosts exclude each other"
        )
    change = SettingsChange(
        initial_access_token_required=token_required,
        redirect_hosts=() if any_redirect_host else (redirect_hosts or None),
        max_clients=max_clients,
        client_ttl_days=client_ttl_days,
        documents_enabled=documents_enabled,
        document_hosts=() if any_document_host else (document_hosts or None),
        document_denied_hosts=() if no_denied_document_hosts else (denied_hosts or None),
        document_max_clients=max_document_clients,
    )
    if change == SettingsChange():
        raise click.UsageError("Nothing to change: give at least one option (see --help)")
    _change(change, as_json)


@registration.group()
def tokens() -> None:
    """Initial access tokens: whoever holds one may register clients while they are required."""


@tokens.command(name="create")
@click.option("--name", required=True, help="Who or what the token is for.")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Expire after this many days.")
@click.option("--max-uses", type=click.IntRange(min=1), help="Registrations it allows.")
@click.option(
    "--service-access",
    "service_access",
    multiple=True,
    metavar="'RESOURCE [SCOPE ...]'",
    help="A resource (and scopes of it) a client registered with the token may reach with "
    "client_credentials; repeat for several. Without it: nothing until an operator grants it.",
)
@json_option
def create_token(
    name: str,
    expires_in_days: int | None,
    max_uses: int | None,
    service_access: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a token; the full value is printed this once only."""
    entries = [access.parse_entry(v) for v in service_access if v.strip()]
    token, value = runtime_settings.create_initial_access_token(
        open_context(),
        SYSTEM,
        name,
        expires_in=timedelta(days=expires_in_days) if expires_in_days else None,
        max_uses=max_uses,
        access=entries,
    )
    out = InitialAccessTokenCreated(**InitialAccessTokenOut.of(token).model_dump(), token=value)
    emit(
        as_json,
        out.model_dump(mode="json"),
        lambda: (
            fields(
                [
                    ("Token ID", token.id),
                    ("Initial access token", value),
                    ("Service access", access.describe(token.service_access)),
                ]
            )
            + "\n"
            "Store the token now: it will not be shown again. Clients send it as "
            "`Authorization: Bearer …` to POST /oauth2/register."
        ),
    )


@tokens.command(name="list")
@json_option
def list_tokens(as_json: bool) -> None:
    """List initial access tokens (never their values)."""
    found = runtime_settings.list_initial_access_tokens(open_context())
    out = [InitialAccessTokenOut.of(t) for t in found]
    rows = [
        [
            t.id,
            t.name,
            t.expires_at.isoformat() if t.expires_at else "never",
            f"{t.uses}/{t.max_uses}" if t.max_uses else str(t.uses),
            access.describe(t.service_access),
        ]
        for t in found
    ]
    emit(
        as_json,
        [t.model_dump(mode="json") for t in out],
        lambda: table(["ID", "NAME", "EXPIRES", "USES", "SERVICE ACCESS"], rows),
    )


@tokens.command(name="delete")
@click.argument("token_id")
@json_option
def delete_token(token_id: str, as_json: bool) -> None:
    """Withdraw a token (clients registered with it stay)."""
    runtime_settings.delete_initial_access_token(open_context(), SYSTEM, token_id)
    emit(as_json, {"id": token_id, "deleted": True}, f"Deleted initial access token {token_id}.")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@json_option
def purge(dry_run: bool, as_json: bool) -> None:
    """Delete self-registered apps (dynamically registered and metadata-document clients)
    unused for the registration client TTL."""
    ctx = open_context()
    ttl_days = runtime_settings.load(ctx).client_ttl_days
    stale = client_expiry.purge_stale_self_registered_apps(ctx, SYSTEM, dry_run=dry_run)
    listed = [
        {
            "id": app.id,
            "name": app.name,
            "last_seen_at": (app.last_used_at or app.created_at).isoformat(),
        }
        for app in stale
    ]
    data = {"dry_run": dry_run, "ttl_days": ttl_days, "apps": listed}

    def text() -> str:
        if ttl_days == 0:
            return "Unused clients never expire (registration client TTL is 0): nothing to do."
        verb = "Would delete" if dry_run else "Deleted"
        rows = [[a["id"], a["name"], a["last_seen_at"]] for a in listed]
        heading = f"{verb} {len(stale)} app(s) unused for {ttl_days} days."
        return heading if not rows else f"{heading}\n{table(['ID', 'NAME', 'LAST SEEN'], rows)}"

    emit(as_json, data, text)
