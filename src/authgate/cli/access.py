"""``authgate apps access``: what an app's client_credentials tokens may reach (RFC 6749 §4.4).

An app gets client_credentials tokens only for the resources and scopes granted here (nothing
by default). The same ``core.service_access`` functions as
``/api/v2/oauth2-provider/apps/{app}/service-access``, acting as ``system``; ``--json`` prints
the API's JSON shape (a list of ``{"resource", "scopes"}``).
"""

from __future__ import annotations

import click

from authgate.cli.common import emit, json_option, open_context, table
from authgate.core import clients, service_access
from authgate.core.context import SYSTEM
from authgate.core.models import App, ServiceAccess
from authgate.schemas import service_access_of


@click.group()
def access() -> None:
    """Resources and scopes an app's client_credentials tokens may reach."""


def describe(entries: tuple[ServiceAccess, ...]) -> str:
    """One line per resource: ``resource (scope scope)``; ``(none)`` when nothing is granted."""
    if not entries:
        return "(none)"
    return "; ".join(f"{e.resource} ({' '.join(e.scopes) or 'no scope'})" for e in entries)


def parse_entry(value: str) -> ServiceAccess:
    """``RESOURCE [SCOPE ...]`` as one argument (the form of ``--service-access``)."""
    resource, *granted = value.split()
    return ServiceAccess(resource, tuple(granted))


def _emit(app: App, as_json: bool, heading: str = "") -> None:
    out = service_access_of(app)
    rows = [[e.resource, " ".join(e.scopes) or "(no scope)"] for e in out]
    emit(
        as_json,
        [e.model_dump(mode="json") for e in out],
        lambda: heading + table(["RESOURCE", "SCOPES"], rows),
    )


@access.command(name="list")
@click.argument("app_id")
@json_option
def list_access(app_id: str, as_json: bool) -> None:
    """List what APP_ID's client_credentials tokens may reach."""
    _emit(clients.get_app(open_context(), app_id), as_json)


@access.command()
@click.argument("app_id")
@click.option("--resource", required=True, help="A registered resource's identifier.")
@click.option(
    "--scope", "granted", multiple=True, help="A scope the resource defines; repeat for several."
)
@json_option
def grant(app_id: str, resource: str, granted: tuple[str, ...], as_json: bool) -> None:
    """Let APP_ID's client_credentials tokens reach RESOURCE with these scopes (added to what
    it has). Without --scope: tokens for the resource with no scope."""
    app = service_access.grant(open_context(), SYSTEM, app_id, resource, granted)
    _emit(app, as_json, f"Granted. {app.name} may now get client_credentials tokens for:\n")


@access.command()
@click.argument("app_id")
@click.option("--resource", required=True, help="The resource to take away.")
@click.option(
    "--scope",
    "revoked",
    multiple=True,
    help="Take only this scope away (repeat for several); without it, the whole resource.",
)
@json_option
def revoke(app_id: str, resource: str, revoked: tuple[str, ...], as_json: bool) -> None:
    """Stop issuing APP_ID client_credentials tokens for RESOURCE (or only some scopes).
    Tokens already issued stay valid until they expire or are revoked."""
    app = service_access.revoke(open_context(), SYSTEM, app_id, resource, revoked)
    _emit(app, as_json, "Revoked. What remains:\n")
