"""``authgate db``: bring the database schema up to date and say where it stands."""

from __future__ import annotations

import click

from authgate import storage
from authgate.cli.common import emit, fields, json_option, load_settings, redacted_url


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
