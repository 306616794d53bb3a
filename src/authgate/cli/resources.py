"""``authgate resources``: register, list, show, change and delete resources (RFC 8707).

The same ``core.resources`` functions as ``/api/v2/resources``, acting as ``system``; ``--json``
prints the API's JSON shapes. A resource is named by its id or its identifier (any spelling of
the same canonical URI).
"""

from __future__ import annotations

import click

from authgate.cli.common import emit, fields, json_option, open_context, table
from authgate.core import resources as core
from authgate.core.context import SYSTEM
from authgate.core.models import ScopeInfo
from authgate.schemas import ResourceOut


@click.group()
def resources() -> None:
    """Registered resources: the MCP servers and APIs tokens are issued for."""


def _scope(value: str) -> ScopeInfo:
    name, _, description = value.partition("=")
    return ScopeInfo(name.strip(), description.strip())


def _scopes(values: tuple[str, ...], clear: bool) -> tuple[ScopeInfo, ...] | None:
    if clear and values:
        raise click.UsageError("--no-scopes cannot be combined with --scope")
    if clear:
        return ()
    return tuple(_scope(v) for v in values) if values else None


def _introspectors(values: tuple[str, ...], clear: bool) -> tuple[str, ...] | None:
    if clear and values:
        raise click.UsageError("--no-introspectors cannot be combined with --introspector")
    if clear:
        return ()
    return values or None


def _describe(out: ResourceOut) -> str:
    scopes = ", ".join(
        f"{s.name} ({s.description})" if s.description else s.name for s in out.scopes
    )
    ttl = f"{out.access_token_ttl} s" if out.access_token_ttl else "(server default)"
    return fields(
        [
            ("ID", out.id),
            ("Identifier", out.identifier),
            ("Name", out.name),
            ("Scopes", scopes or "(none)"),
            ("Token format", out.token_format),
            ("Access token TTL", ttl),
            ("Introspectors", ", ".join(out.introspectors) or "(none)"),
            ("Created", out.created_at.isoformat()),
            ("Updated", out.updated_at.isoformat()),
        ]
    )


def _emit(as_json: bool, out: ResourceOut, heading: str = "") -> None:
    emit(as_json, out.model_dump(mode="json"), lambda: heading + _describe(out))


scope_option = click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="NAME=DESCRIPTION",
    help="A scope and what the consent page says it allows; repeat for several.",
)
format_option = click.option(
    "--format",
    "--token-format",
    "token_format",
    type=click.Choice(core.TOKEN_FORMATS),
    default=None,
    help="Access tokens as RFC 9068 JWTs (default) or opaque agat_… strings.",
)
ttl_option = click.option(
    "--ttl",
    type=click.IntRange(core.MIN_TTL, core.MAX_TTL),
    default=None,
    help="Access-token lifetime in seconds (default: the server's).",
)
introspector_option = click.option(
    "--introspector",
    "introspectors",
    multiple=True,
    metavar="APP_ID",
    help="A confidential app allowed to introspect this resource's tokens; repeat for several.",
)


@resources.command()
@click.option("--identifier", required=True, metavar="URI", help="The resource URI (the `aud`).")
@click.option("--name", required=True, help="Shown to users on the consent page.")
@scope_option
@format_option
@ttl_option
@introspector_option
@json_option
def create(
    identifier: str,
    name: str,
    scopes: tuple[str, ...],
    token_format: str | None,
    ttl: int | None,
    introspectors: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a resource."""
    resource = core.create_resource(
        open_context(),
        SYSTEM,
        core.ResourceFields(
            identifier=identifier,
            name=name,
            scopes=_scopes(scopes, False),
            token_format=token_format,
            access_token_ttl=ttl,
            introspectors=introspectors,
        ),
    )
    _emit(as_json, ResourceOut.of(resource), "Registered resource.\n")


@resources.command(name="list")
@json_option
def list_resources(as_json: bool) -> None:
    """List every resource, authgate's own API included."""
    out = [ResourceOut.of(r) for r in open_context().store.list_resources()]
    rows = [
        [r.id, r.identifier, r.name, r.token_format, " ".join(s.name for s in r.scopes)]
        for r in out
    ]
    emit(
        as_json,
        [r.model_dump(mode="json") for r in out],
        lambda: table(["ID", "IDENTIFIER", "NAME", "FORMAT", "SCOPES"], rows),
    )


@resources.command()
@click.argument("resource")
@json_option
def show(resource: str, as_json: bool) -> None:
    """Show one resource (by id or identifier)."""
    _emit(as_json, ResourceOut.of(core.get_resource(open_context(), core.reference(resource))))


@resources.command()
@click.argument("resource")
@click.option("--name", default=None, help="A new display name.")
@scope_option
@click.option("--no-scopes", is_flag=True, help="Remove every scope.")
@format_option
@ttl_option
@introspector_option
@click.option("--no-introspectors", is_flag=True, help="Remove every introspector.")
@json_option
def update(
    resource: str,
    name: str | None,
    scopes: tuple[str, ...],
    no_scopes: bool,
    token_format: str | None,
    ttl: int | None,
    introspectors: tuple[str, ...],
    no_introspectors: bool,
    as_json: bool,
) -> None:
    """Change a resource. Only the options given change; --scope and --introspector replace
    the whole list. The identifier cannot change."""
    updated = core.update_resource(
        open_context(),
        SYSTEM,
        core.reference(resource),
        core.ResourceFields(
            name=name,
            scopes=_scopes(scopes, no_scopes),
            token_format=token_format,
            access_token_ttl=ttl,
            introspectors=_introspectors(introspectors, no_introspectors),
        ),
    )
    _emit(as_json, ResourceOut.of(updated), "Updated resource.\n")


@resources.command()
@click.argument("resource")
@json_option
def delete(resource: str, as_json: bool) -> None:
    """Delete a resource: no new tokens for it (authgate's own API cannot be deleted)."""
    ctx = open_context()
    found = core.get_resource(ctx, core.reference(resource))
    core.delete_resource(ctx, SYSTEM, found.id)
    emit(
        as_json,
        {"id": found.id, "identifier": found.identifier, "deleted": True},
        f"Deleted resource {found.identifier} ({found.id}).",
    )
