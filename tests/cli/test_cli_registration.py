"""``authgate registration`` (status, enable, disable, set, tokens) and ``authgate apps purge``,
run in-process on a temporary data directory: what they print (text and ``--json``, the API's
shapes), their exit codes, what the database holds and the audit events they leave.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from authgate.core.models import App, AuditEvent, AuditQuery
from authgate.storage import SqlStore
from tests.cli.conftest import Cli

DEFAULTS = {
    "dynamic_client_registration_enabled": True,
    "registration_initial_access_token_required": False,
    "registration_redirect_hosts": [],
    "registration_max_clients": 1000,
    "registration_client_ttl_days": 30,
    "client_metadata_documents_enabled": True,
    "client_metadata_document_hosts": [],
    "client_metadata_document_denied_hosts": [],
    "client_metadata_max_clients": 1000,
}


def events(store: SqlStore, action: str) -> list[AuditEvent]:
    found, _ = store.list_audit(AuditQuery(action=action, limit=200))
    return list(found)


def test_status_defaults(migrated: Cli) -> None:
    assert migrated.json("registration", "status") == DEFAULTS
    text = migrated.ok("registration", "status").stdout
    assert "Dynamic registration:" in text and "enabled" in text
    assert "(any)" in text and "after 30 days" in text


def test_disable_and_enable(migrated: Cli, store: SqlStore) -> None:
    off = migrated.json("registration", "disable")
    assert off == {**DEFAULTS, "dynamic_client_registration_enabled": False}
    assert store.get_setting("dynamic_registration_enabled") is False
    assert "disabled" in migrated.ok("registration", "status").stdout
    [event] = events(store, "settings.updated")
    assert event.actor_type == "system" and event.details["changed"] == ["enabled"]

    on = migrated.ok("registration", "enable").stdout
    assert on.startswith("Updated.") and "enabled" in on
    assert store.get_setting("dynamic_registration_enabled") is True
    assert len(events(store, "settings.updated")) == 2


def test_set_limits(migrated: Cli, store: SqlStore) -> None:
    values = migrated.json(
        "registration",
        "set",
        "--require-initial-access-token",
        "--redirect-host",
        "Claude.ai",
        "--redirect-host",
        "*.example.com",
        "--max-clients",
        "50",
        "--client-ttl-days",
        "7",
    )
    assert values == {
        **DEFAULTS,
        "dynamic_client_registration_enabled": True,
        "registration_initial_access_token_required": True,
        "registration_redirect_hosts": ["claude.ai", "*.example.com"],
        "registration_max_clients": 50,
        "registration_client_ttl_days": 7,
    }
    assert store.get_setting("registration_redirect_hosts") == ["claude.ai", "*.example.com"]
    # Only what is named changes.
    cleared = migrated.json("registration", "set", "--any-redirect-host")
    assert cleared == {**values, "registration_redirect_hosts": []}
    relaxed = migrated.json("registration", "set", "--no-require-initial-access-token")
    assert relaxed["registration_initial_access_token_required"] is False
    assert relaxed["registration_max_clients"] == 50


def test_set_errors_change_nothing(migrated: Cli, store: SqlStore) -> None:
    assert "Nothing to change" in migrated.fails("registration", "set", code=2).stderr
    both = migrated.fails(
        "registration", "set", "--redirect-host", "a.example", "--any-redirect-host", code=2
    )
    assert "exclude each other" in both.stderr
    bad = migrated.fails("registration", "set", "--redirect-host", "not a host")
    assert "redirect_hosts" in bad.stderr
    migrated.fails("registration", "set", "--max-clients", "-1", code=2)
    assert migrated.json("registration", "status") == DEFAULTS
    assert events(store, "settings.updated") == []


def test_initial_access_tokens(migrated: Cli, store: SqlStore) -> None:
    created = migrated.json(
        "registration",
        "tokens",
        "create",
        "--name",
        "ci",
        "--max-uses",
        "3",
        "--expires-in-days",
        "2",
    )
    token = created["token"]
    assert token.startswith("agiat_")
    assert created["name"] == "ci" and created["max_uses"] == 3 and created["uses"] == 0
    expires = datetime.fromisoformat(created["expires_at"])
    assert (
        timedelta(days=2) - timedelta(minutes=1) < expires - datetime.now(UTC) <= timedelta(days=2)
    )
    stored = json.dumps(store.get_setting("registration_initial_access_tokens"))
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored

    text = migrated.ok("registration", "tokens", "create", "--name", "laptop").stdout
    assert "agiat_" in text and "will not be shown again" in text

    listed = migrated.json("registration", "tokens", "list")
    assert [t["name"] for t in listed] == ["ci", "laptop"]
    assert all("token" not in t for t in listed)
    table = migrated.ok("registration", "tokens", "list").stdout
    assert "ci" in table and "0/3" in table and "never" in table and token not in table

    migrated.ok("registration", "tokens", "delete", created["id"])
    assert [t["name"] for t in migrated.json("registration", "tokens", "list")] == ["laptop"]
    assert "No such initial access token" in (
        migrated.fails("registration", "tokens", "delete", created["id"]).stderr
    )
    assert [e.target_id for e in events(store, "initial_access_token.deleted")] == [created["id"]]
    audited = json.dumps([e.details for e in events(store, "initial_access_token.created")])
    assert token not in audited


def test_initial_access_token_name_is_checked(migrated: Cli, store: SqlStore) -> None:
    migrated.fails("registration", "tokens", "create", "--name", " ")
    migrated.fails("registration", "tokens", "create", "--name", "x", "--max-uses", "0", code=2)
    assert store.get_setting("registration_initial_access_tokens") is None


def dynamic_app(store: SqlStore, app_id: str, *, age_days: int, used_days_ago: int | None) -> App:
    now = datetime.now(UTC)
    app = App(
        id=app_id,
        name=f"App {app_id}",
        icon="",
        redirect_uris=("http://127.0.0.1/cb",),
        client_type="public",
        require_pkce=True,
        token_endpoint_auth_method="none",
        grant_types=("authorization_code",),
        scope=None,
        first_party=False,
        dynamically_registered=True,
        created_at=now - timedelta(days=age_days),
        updated_at=now - timedelta(days=age_days),
        last_used_at=now - timedelta(days=used_days_ago) if used_days_ago is not None else None,
    )
    store.create_app(app)
    return app


def test_apps_purge(migrated: Cli, store: SqlStore) -> None:
    stale = dynamic_app(store, "stale", age_days=40, used_days_ago=None)
    used_long_ago = dynamic_app(store, "used-long-ago", age_days=90, used_days_ago=31)
    dynamic_app(store, "recently-used", age_days=90, used_days_ago=2)
    dynamic_app(store, "new", age_days=1, used_days_ago=None)
    operator = migrated.json(
        "apps", "create", "--name", "Operator app", "--redirect-uri", "http://127.0.0.1/cb"
    )

    dry = migrated.json("apps", "purge", "--dry-run")
    assert dry["dry_run"] is True and dry["ttl_days"] == 30
    assert [a["id"] for a in dry["apps"]] == [stale.id, used_long_ago.id]  # least recently seen
    assert len(store.list_apps()) == 5
    text = migrated.ok("apps", "purge", "--dry-run").stdout
    assert text.startswith("Would delete 2 app(s) unused for 30 days.")
    assert "stale" in text and events(store, "client.purged") == []

    done = migrated.ok("apps", "purge").stdout
    assert done.startswith("Deleted 2 app(s)")
    remaining = {a.id for a in store.list_apps()}
    assert remaining == {"recently-used", "new", operator["id"]}
    purged = events(store, "client.purged")
    assert {e.target_id for e in purged} == {"stale", "used-long-ago"}
    assert all(e.actor_type == "system" for e in purged)

    assert migrated.json("apps", "purge")["apps"] == []
    assert migrated.ok("apps", "purge").stdout.startswith("Deleted 0 app(s)")


def test_apps_purge_with_ttl_zero(migrated: Cli, store: SqlStore) -> None:
    dynamic_app(store, "ancient", age_days=4000, used_days_ago=None)
    migrated.ok("registration", "set", "--client-ttl-days", "0")
    assert "never expire" in migrated.ok("apps", "purge").stdout
    assert migrated.json("apps", "purge") == {"dry_run": False, "ttl_days": 0, "apps": []}
    assert store.get_app("ancient") is not None


def test_set_metadata_document_controls(migrated: Cli, store: SqlStore) -> None:
    values = migrated.json(
        "registration",
        "set",
        "--no-documents",
        "--document-host",
        "*.Example.com",
        "--deny-document-host",
        "evil.example.com",
        "--max-document-clients",
        "3",
    )
    assert values == {
        **DEFAULTS,
        "client_metadata_documents_enabled": False,
        "client_metadata_document_hosts": ["*.example.com"],
        "client_metadata_document_denied_hosts": ["evil.example.com"],
        "client_metadata_max_clients": 3,
    }
    assert store.get_setting("client_metadata_documents_enabled") is False
    text = migrated.ok("registration", "status").stdout
    assert "Metadata documents:" in text and "evil.example.com" in text
    cleared = migrated.json(
        "registration", "set", "--documents", "--any-document-host", "--no-denied-document-hosts"
    )
    assert cleared == {**values, **{k: DEFAULTS[k] for k in list(DEFAULTS)[5:8]}}
    bad = migrated.fails("registration", "set", "--document-host", "cursor:")
    assert "document_hosts" in bad.stderr
    [first, second] = events(store, "settings.updated")[::-1]
    assert first.details["changed"] == [
        "document_denied_hosts", "document_hosts", "document_max_clients", "documents_enabled",
    ]  # fmt: skip
    assert second.details["documents_enabled"] is True
