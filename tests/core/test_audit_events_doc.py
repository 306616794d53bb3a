"""docs/audit-events.md lists every field the app events carry: one set of fields
(core/app_events.py) for an app however it came — an operator's, a dynamically registered
client (RFC 7591/7592) or a metadata-document client."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from authgate.core import app_events, client_configuration, clients, registration, resources
from authgate.core import registration_settings as runtime_settings
from authgate.core.client_metadata import load_document_client
from authgate.core.context import SYSTEM, Actor, Context
from authgate.core.models import AuditQuery
from authgate.core.policy import Policy
from authgate.core.ports import FetchedDocument
from tests.clock import MovableClock
from tests.fakes import InMemoryStore

DOC = Path(__file__).parents[2] / "docs" / "audit-events.md"
DOCUMENT_URL = "https://client.example.com/oauth/metadata.json"
ACTOR = Actor("anonymous", ip="192.0.2.7")


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start : end if end != -1 else None]


def _row(action: str) -> str:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith(f"| `{action}` |")]
    assert len(rows) == 1, action
    return rows[0]


def _named(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", text))


def documented_app_fields() -> list[str]:
    table = _section("### The app's fields")
    return re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)


class OneDocument:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
        body = json.dumps(self.document).encode()
        return FetchedDocument(url, body, "application/json", None)


@pytest.fixture
def ctx() -> Context:
    document = {
        "client_id": DOCUMENT_URL,
        "client_name": "Document client",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token", "password"],
    }
    policy = Policy(issuer="https://auth.example.com")
    context = Context(
        InMemoryStore(), MovableClock(), policy, b"k" * 32, fetcher=OneDocument(document)
    )
    resources.ensure_own_api(context)
    return context


def _events(ctx: Context) -> dict[str, dict[str, Any]]:
    """Each app and client event's details, by action (the last of each)."""
    events, _ = ctx.store.list_audit(AuditQuery(limit=500))  # newest first
    oldest_first = reversed(events)
    return {e.action: e.details for e in oldest_first if e.action.startswith(("app.", "client."))}


def _emit_every_app_event(ctx: Context) -> dict[str, dict[str, Any]]:
    app = clients.create_app(
        ctx, SYSTEM, clients.AppFields(name="Ops", redirect_uris=["https://ops.example.com/cb"])
    )
    clients.update_app(ctx, SYSTEM, app.id, clients.AppFields(name="Ops console"))
    body = {"redirect_uris": ["https://dyn.example.com/cb"], "client_name": "Dynamic"}
    settings = runtime_settings.current(ctx)
    registered = registration.register(
        ctx,
        ACTOR,
        lambda: body,
        settings=settings,
        limits=registration.RateLimits(),
        initial_access_token=None,
    )
    client_configuration.update_client(
        ctx,
        ACTOR,
        registered.app,
        {**body, "client_id": registered.app.id, "client_name": "Dynamic 2"},
        settings,
    )
    load_document_client(ctx, DOCUMENT_URL, ACTOR)
    return _events(ctx)


def test_the_doc_lists_exactly_the_app_fields() -> None:
    assert documented_app_fields() == list(app_events.FIELDS)


@pytest.mark.parametrize(
    "action", ["app.created", "app.updated", "client.registered", "client.updated"]
)
def test_every_emitted_field_is_documented(ctx: Context, action: str) -> None:
    emitted = _emit_every_app_event(ctx)
    details = set(emitted[action])
    # Every app event carries all of the app's fields ...
    assert set(app_events.FIELDS) <= details
    # ... and whatever else it carries is named in its own row.
    row = _named(_row(action))
    assert details - set(app_events.FIELDS) <= row, details - set(app_events.FIELDS) - row
    assert "the app's fields" in _row(action)


def test_a_document_client_is_described_like_any_other(ctx: Context) -> None:
    emitted = _emit_every_app_event(ctx)
    document = emitted["app.created"]  # the document client's: the last app.created
    assert document["metadata_document"] is True
    assert document["dynamically_registered"] is False
    assert document["dropped"] == {"grant_types": ["password"]}
    assert emitted["client.registered"]["dynamically_registered"] is True
    assert emitted["app.updated"]["name"] == "Ops console"
    assert emitted["app.updated"]["metadata_document"] is False
