"""``authgate settings``: the effective configuration (secrets redacted) or its reference."""

from __future__ import annotations

import json
from typing import Any

import click

from authgate.cli.common import emit, fields, json_option, load_settings, redacted_url
from authgate.config import Settings, settings_markdown

REDACTED = "(set, redacted)"


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting as it is in effect, with the secret key and database password hidden."""
    values = settings.model_dump(mode="json")
    values["secret_key"] = REDACTED if settings.secret_key else "(unset)"
    if settings.database_url:
        values["database_url"] = redacted_url(settings.database_url)
    values["resolved_database_url"] = redacted_url(settings.resolved_database_url)
    if settings.upstream_providers.strip():
        values["upstream_providers"] = _redacted_providers(settings.upstream_providers)
    return values


def _redacted_providers(raw: str) -> str:
    """AUTHGATE_UPSTREAM_PROVIDERS with every client secret hidden (unparsable: all of it)."""
    try:
        entries = json.loads(raw)
    except ValueError:
        return "(set, not valid JSON)"
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return "(set, not a JSON list of objects)"
    for entry in entries:
        if entry.get("client_secret"):
            entry["client_secret"] = REDACTED
    return json.dumps(entries)


@click.command(name="settings")
@click.option("--markdown", is_flag=True, help="Print the configuration reference (Markdown).")
@json_option
def settings(markdown: bool, as_json: bool) -> None:
    """Print the effective settings, read from the AUTHGATE_* environment variables."""
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    values = effective(load_settings())
    emit(as_json, values, lambda: _text(values))


def _text(values: dict[str, Any]) -> str:
    in_use = values.pop("resolved_database_url")
    pairs: list[tuple[str, object]] = [
        (f"AUTHGATE_{k.upper()}", "(empty)" if v == "" else v) for k, v in values.items()
    ]
    return fields([*pairs, ("Database in use", in_use)])
