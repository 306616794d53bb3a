"""``authgate db``: bring the database schema up to date, say where it stands, and delete
expired rows (what ``authgate serve`` also does every ``AUTHGATE_CLEANUP_INTERVAL_SECONDS``)."""

from __future__ import annotations

from datetime import timedelta

import click

from authgate import storage
from authgate.cli.common import (
    emit,
    fields,
    json_option,
    load_settings,
    open_services,
    redacted_url,
)
from authgate.core import cleanup as housekeeping
from authgate.core import flow_log


@click.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
@json_option
def upgrade(as_json: bool) -> None:
    """Migrate the database to the newest schema (creates a SQLite file if needed)."""
    url = load_settings().resolved_database_url
    storage.upgrade(url)
    status = storage.schema_status(url)
    data = {"database": redacted_url(url), "revision": status.current, "state": status.state}
    emit(as_json, data, f"Database {data['database']} is at revision {status.current}.")


@db.command()
@json_option
def status(as_json: bool) -> None:
    """Compare the database schema with what this authgate needs (changes nothing)."""
    url = load_settings().resolved_database_url
    current = storage.schema_status(url)
    data = {
        "database": redacted_url(url),
        "current": current.current,
        "head": current.head,
        "state": current.state,
    }
    text = fields(
        [
            ("Database", data["database"]),
            ("Current", current.current or "(none)"),
            ("Required", current.head),
            ("State", current.state),
        ]
    )
    emit(as_json, data, text)


@db.command()
@click.option(
    "--max-batches",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Batches per kind of row in this run (each AUTHGATE_CLEANUP_BATCH_SIZE rows).",
)
@json_option
def cleanup(max_batches: int, as_json: bool) -> None:
    """Delete expired sessions, codes, tokens and spent grants, and purge unused
    self-registered clients (kept AUTHGATE_CLEANUP_RETENTION_SECONDS after they expire), and
    flow steps beyond AUTHGATE_FLOW_RETENTION_SECONDS or AUTHGATE_FLOW_MAX_STEPS."""
    services = open_services()
    settings = services.settings
    report = housekeeping.run(
        services.ctx,
        retention=timedelta(seconds=settings.cleanup_retention_seconds),
        batch_size=settings.cleanup_batch_size,
        max_batches=max_batches,
    )
    report.deleted["flows"] = flow_log.purge(
        services.ctx,
        retention=timedelta(seconds=settings.flow_retention_seconds),
        cap=settings.flow_max_steps,
        batch_size=settings.cleanup_batch_size,
        max_batches=max_batches,
    )
    data = {"deleted": report.deleted, "complete": report.complete}
    rows: list[tuple[str, object]] = [
        (kind.replace("_", " ").capitalize(), n) for kind, n in report.deleted.items()
    ]
    if not report.complete:
        rows.append(("Note", "more expired rows remain: run it again"))
    emit(as_json, data, lambda: fields(rows))
