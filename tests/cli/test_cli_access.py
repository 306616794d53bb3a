"""``authgate apps access list|grant|revoke`` and ``registration tokens create
--service-access``: the same core functions as the API, audited, ``--json`` in the API's shape."""

from __future__ import annotations

from authgate.core.models import AuditQuery
from authgate.storage import SqlStore
from tests.cli.conftest import Cli
from tests.cli.test_cli_resources import API_URI, confidential_app, create_resource


def test_grant_list_revoke(migrated: Cli, store: SqlStore) -> None:
    create_resource(migrated, "--scope", "read=Read", "--scope", "write=Write")
    app_id = confidential_app(migrated)
    assert migrated.json("apps", "access", "list", app_id) == []
    assert "(none)" in migrated.ok("apps", "access", "list", app_id).stdout
    granted = migrated.json(
        "apps", "access", "grant", app_id, "--resource", API_URI, "--scope", "read"
    )
    assert granted == [{"resource": API_URI, "scopes": ["read"]}]
    more = migrated.json(
        "apps", "access", "grant", app_id, "--resource", API_URI, "--scope", "write"
    )
    assert more == [{"resource": API_URI, "scopes": ["read", "write"]}]
    shown = migrated.json("apps", "show", app_id)
    assert shown["service_access"] == more
    assert "Service access" in migrated.ok("apps", "show", app_id).stdout
    text = migrated.ok("apps", "access", "list", app_id).stdout
    assert API_URI in text and "read write" in text
    less = migrated.json(
        "apps", "access", "revoke", app_id, "--resource", API_URI, "--scope", "write"
    )
    assert less == [{"resource": API_URI, "scopes": ["read"]}]
    assert migrated.json("apps", "access", "revoke", app_id, "--resource", API_URI) == []
    events, _ = store.list_audit(AuditQuery(action="app.service_access_changed"))
    assert len(events) == 4 and all(e.actor_type == "system" for e in events)


def test_bad_grants_fail_with_a_message(migrated: Cli, store: SqlStore) -> None:
    create_resource(migrated, "--scope", "read=Read")
    app_id = confidential_app(migrated)
    unknown = migrated.fails("apps", "access", "grant", app_id, "--resource", "https://no.example")
    assert "not a registered resource" in unknown.stderr
    scope = migrated.fails(
        "apps", "access", "grant", app_id, "--resource", API_URI, "--scope", "admin"
    )
    assert "defines no scope" in scope.stderr
    revoke = migrated.fails("apps", "access", "revoke", app_id, "--resource", API_URI)
    assert "not granted" in revoke.stderr
    assert "No such app" in migrated.fails("apps", "access", "list", "nope").stderr
    app = store.get_app(app_id)
    assert app is not None and app.service_access == ()


def test_registration_token_with_service_access(migrated: Cli) -> None:
    create_resource(migrated, "--scope", "read=Read")
    made = migrated.json(
        "registration",
        "tokens",
        "create",
        "--name",
        "partner",
        "--service-access",
        f"{API_URI} read",
    )
    assert made["service_access"] == [{"resource": API_URI, "scopes": ["read"]}]
    listed = migrated.ok("registration", "tokens", "list").stdout
    assert f"{API_URI} (read)" in listed
    bad = migrated.fails(
        "registration", "tokens", "create", "--name", "x", "--service-access", f"{API_URI} write"
    )
    assert "defines no scope" in bad.stderr
