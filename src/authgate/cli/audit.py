"""``authgate audit tail``: the newest audit events, oldest first like ``tail``."""

from __future__ import annotations

import json

import click

from authgate.cli.common import emit, json_option, open_context, table
from authgate.core.models import AuditQuery
from authgate.schemas import AuditEventOut


@click.group()
def audit() -> None:
    """The audit log."""


def _row(event: AuditEventOut) -> list[str]:
    actor = f"{event.actor_type}:{event.actor_id}" if event.actor_id else event.actor_type
    target = f"{event.target_type}:{event.target_id}" if event.target_id else "-"
    details = json.dumps(event.details, sort_keys=True, default=str)
    return [event.at.isoformat(timespec="seconds"), event.action, actor, target, details]


@audit.command()
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--action", default=None, help="Only events of this action, e.g. app.created.")
@json_option
def tail(limit: int, action: str | None, as_json: bool) -> None:
    """Print the newest events."""
    events, _ = open_context().store.list_audit(AuditQuery(action=action, limit=limit))
    out = [AuditEventOut.of(event) for event in reversed(events)]
    emit(
        as_json,
        [e.model_dump(mode="json") for e in out],
        lambda: table(["AT", "ACTION", "ACTOR", "TARGET", "DETAILS"], [_row(e) for e in out]),
    )
