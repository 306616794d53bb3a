"""``authgate resources`` and ``authgate keys`` (and ``apps create --grant-type``), run
in-process on a temporary data directory: what they print (text and ``--json``, the API's
shapes), their exit codes, what the database holds and the audit events they leave.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from authgate.app import build_services, warm_up
from authgate.core.models import AuditEvent, AuditQuery
from authgate.storage import SqlStore
from tests.cli.conftest import ISSUER, Cli

API_URI = "https://api.example.com"
RESOURCE_FIELDS = {
    "id",
    "identifier",
    "name",
    "scopes",
    "token_format",
    "access_token_ttl",
    "introspectors",
    "created_at",
    "updated_at",
}


def events(store: SqlStore, action: str) -> list[AuditEvent]:
    found, _ = store.list_audit(AuditQuery(action=action, limit=200))
    return list(found)


def audit_text(store: SqlStore) -> str:
    found, _ = store.list_audit(AuditQuery(limit=500))
    return json.dumps([[e.action, e.target_id, e.details] for e in found], default=str)


def create_resource(env: Cli, *extra: str) -> dict[str, Any]:
    created: dict[str, Any] = env.json(
        "resources", "create", "--identifier", API_URI, "--name", "Example API", *extra
    )
    return created


def confidential_app(env: Cli) -> str:
    app: dict[str, Any] = env.json(
        "apps", "create", "--name", "Resource server", "--grant-type", "client_credentials"
    )
    return str(app["id"])


# resources


def test_resources_create_list_show_update_delete(migrated: Cli, store: SqlStore) -> None:
    server = confidential_app(migrated)
    created = create_resource(
        migrated,
        "--scope",
        "read=Read your data",
        "--scope",
        "write = Change your data ",
        "--scope",
        "admin",
        "--format",
        "opaque",
        "--ttl",
        "900",
        "--introspector",
        server,
    )

    assert set(created) == RESOURCE_FIELDS
    assert created["identifier"] == API_URI
    assert created["scopes"] == [
        {"name": "read", "description": "Read your data"},
        {"name": "write", "description": "Change your data"},
        {"name": "admin", "description": ""},
    ]
    assert (created["token_format"], created["access_token_ttl"]) == ("opaque", 900)
    assert created["introspectors"] == [server]
    stored = store.get_resource(created["id"])
    assert stored is not None and stored.identifier == API_URI and stored.introspectors == (server,)
    [event] = [e for e in events(store, "resource.created") if e.target_id == created["id"]]
    assert (event.actor_type, event.actor_id) == ("system", None)

    listed = migrated.json("resources", "list")
    assert created in listed
    assert {r["identifier"] for r in listed} == {ISSUER, API_URI}  # authgate's own API too
    text = migrated.ok("resources", "list").stdout
    assert API_URI in text and "Example API" in text and "read write admin" in text
    for ref in (created["id"], API_URI, "HTTPS://api.example.com:443/"):
        assert migrated.json("resources", "show", ref) == created
    shown = migrated.ok("resources", "show", created["id"]).stdout
    assert "read (Read your data)" in shown and "900 s" in shown and server in shown

    updated = migrated.json(
        "resources", "update", API_URI, "--name", "Renamed", "--scope", "only=The one"
    )

    assert updated["name"] == "Renamed"
    assert updated["scopes"] == [{"name": "only", "description": "The one"}]  # replaced
    assert (updated["token_format"], updated["access_token_ttl"]) == ("opaque", 900)  # kept
    assert updated["introspectors"] == [server]
    cleared = migrated.json(
        "resources", "update", created["id"], "--no-scopes", "--no-introspectors", "--format", "jwt"
    )
    assert (cleared["scopes"], cleared["introspectors"], cleared["token_format"]) == ([], [], "jwt")
    assert [e.target_id for e in events(store, "resource.updated")] == [created["id"]] * 2

    deleted = migrated.json("resources", "delete", API_URI + "/")

    assert deleted == {"id": created["id"], "identifier": API_URI, "deleted": True}
    assert store.get_resource(created["id"]) is None
    [gone] = events(store, "resource.deleted")
    assert (gone.actor_type, gone.target_id) == ("system", created["id"])
    assert "No such resource" in migrated.fails("resources", "show", created["id"]).stderr
    assert "No such resource" in migrated.fails("resources", "delete", API_URI).stderr
    assert "No such resource" in migrated.fails("resources", "update", API_URI).stderr


def test_resources_text_output(migrated: Cli) -> None:
    out = migrated.ok(
        "resources", "create", "--identifier", API_URI, "--name", "Example API"
    ).stdout
    assert out.startswith("Registered resource.")
    assert "jwt" in out and "(server default)" in out and "(none)" in out
    assert migrated.ok("resources", "delete", API_URI).stdout.startswith("Deleted resource")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--identifier", "not a uri", "--name", "x"], "identifier"),
        (["--identifier", "https://x.example/#f", "--name", "x"], "identifier"),
        (["--identifier", API_URI, "--name", "  "], "name"),
        (["--identifier", API_URI, "--name", "x", "--scope", "two words=x"], "scope"),
        (["--identifier", API_URI, "--name", "x", "--scope", "a", "--scope", "a=b"], "unique"),
        (["--identifier", API_URI, "--name", "x", "--introspector", "ghost"], "introspectors"),
    ],
)
def test_resources_create_invalid_fails_and_stores_nothing(
    migrated: Cli, store: SqlStore, args: list[str], message: str
) -> None:
    migrated.ok("resources", "list")  # any command registers authgate's own API first
    before = store.list_resources()
    result = migrated.fails("resources", "create", *args)
    assert message in result.stderr and result.stdout == ""
    assert store.list_resources() == before
    assert not [e for e in events(store, "resource.created") if e.details["name"] != "authgate API"]


@pytest.mark.parametrize(
    "args",
    [
        ["--identifier", API_URI, "--name", "x", "--format", "paseto"],
        ["--identifier", API_URI, "--name", "x", "--ttl", "59"],
        ["--identifier", API_URI, "--name", "x", "--ttl", "86401"],
        ["--name", "x"],
    ],
)
def test_resources_create_usage_errors(migrated: Cli, args: list[str]) -> None:
    migrated.fails("resources", "create", *args, code=2)


@pytest.mark.parametrize("spelling", [API_URI, API_URI + "/", "https://API.EXAMPLE.COM:443"])
def test_resources_duplicate_identifier_fails(
    migrated: Cli, store: SqlStore, spelling: str
) -> None:
    created = create_resource(migrated)
    result = migrated.fails("resources", "create", "--identifier", spelling, "--name", "Again")
    assert "already registered" in result.stderr
    assert [r.id for r in store.list_resources() if r.identifier == API_URI] == [created["id"]]


def test_resources_update_invalid_changes_nothing(migrated: Cli, store: SqlStore) -> None:
    created = create_resource(migrated, "--scope", "read")
    before = store.get_resource(created["id"])
    assert (
        "--no-scopes"
        in migrated.fails(
            "resources", "update", API_URI, "--no-scopes", "--scope", "x", code=2
        ).stderr
    )
    assert "name" in migrated.fails("resources", "update", API_URI, "--name", "").stderr
    assert (
        "introspectors"
        in migrated.fails("resources", "update", API_URI, "--introspector", "ghost").stderr
    )
    migrated.fails("resources", "update", API_URI, "--ttl", "5", code=2)
    assert store.get_resource(created["id"]) == before
    assert events(store, "resource.updated") == []


def test_public_app_cannot_be_an_introspector(migrated: Cli, store: SqlStore) -> None:
    public = migrated.json(
        "apps", "create", "--name", "P", "--redirect-uri", "http://localhost:1/cb", "--public"
    )
    result = migrated.fails(
        "resources",
        "create",
        "--identifier",
        API_URI,
        "--name",
        "x",
        "--introspector",
        public["id"],
    )
    assert "not a confidential app" in result.stderr
    assert store.get_resource_by_identifier(API_URI) is None


def test_own_api_resource_cannot_be_deleted(migrated: Cli, store: SqlStore) -> None:
    migrated.ok("resources", "list")  # any command registers authgate's own API
    result = migrated.fails("resources", "delete", ISSUER)
    assert "cannot be deleted" in result.stderr
    assert store.get_resource_by_identifier(ISSUER) is not None


# keys


def _server_started(cli: Cli) -> None:
    """What `authgate serve` does first: create the signing keys (sealed with its key)."""
    services = build_services(cli.settings(), dev=True)
    warm_up(services)
    services.store.close()


def test_keys_list_before_the_server_ever_ran_is_empty(migrated: Cli) -> None:
    assert migrated.json("keys", "list") == []


def test_keys_list_rotate_list(migrated: Cli, store: SqlStore) -> None:
    _server_started(migrated)
    before = migrated.json("keys", "list")
    assert sorted(k["state"] for k in before) == ["active", "next"]
    [active] = [k for k in before if k["state"] == "active"]
    [upcoming] = [k for k in before if k["state"] == "next"]
    text = migrated.ok("keys", "list").stdout
    assert active["kid"] in text and "active" in text and "next" in text

    rotated = migrated.json("keys", "rotate")

    assert (rotated["kid"], rotated["state"]) == (upcoming["kid"], "active")
    after = {k["kid"]: k for k in migrated.json("keys", "list")}
    assert after[active["kid"]]["state"] == "retiring"
    assert after[active["kid"]]["expires_at"] is not None
    assert after[upcoming["kid"]]["state"] == "active"
    assert len(after) == 3 and sorted(k["state"] for k in after.values()) == [
        "active",
        "next",
        "retiring",
    ]
    # The first event is the first key's activation, when the server first started.
    by_previous = {e.details["previous"]: e for e in events(store, "signing_key.rotated")}
    assert set(by_previous) == {None, active["kid"]}
    assert by_previous[None].target_id == active["kid"]
    event = by_previous[active["kid"]]
    assert (event.actor_type, event.target_id) == ("system", upcoming["kid"])

    again = migrated.ok("keys", "rotate").stdout
    assert again.startswith("Rotated:") and "retiring" in again

    outputs = json.dumps([before, rotated, list(after.values())]) + text + again
    for key in store.list_signing_keys():
        assert key.private_key not in outputs
        assert key.private_key not in audit_text(store)
        assert "d" not in key.public_jwk
    assert '"d":' not in outputs.replace(" ", "")


def test_keys_rotate_refuses_another_secret_key(
    migrated: Cli, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _server_started(migrated)  # the keys exist, sealed with the data directory's key
    before = store.list_signing_keys()
    rotations = len(events(store, "signing_key.rotated"))
    monkeypatch.setenv("AUTHGATE_SECRET_KEY", "another-secret-key-" + "y" * 32)

    result = migrated.fails("keys", "rotate")

    assert "AUTHGATE_SECRET_KEY" in result.stderr
    assert store.list_signing_keys() == before
    assert len(events(store, "signing_key.rotated")) == rotations


# apps create --grant-type


def test_apps_create_client_credentials_needs_no_redirect_uri(
    migrated: Cli, store: SqlStore
) -> None:
    app = migrated.json("apps", "create", "--name", "Machine", "--grant-type", "client_credentials")
    assert (app["grant_types"], app["redirect_uris"]) == (["client_credentials"], [])
    stored = store.get_app(app["id"])
    assert stored is not None and stored.grant_types == ("client_credentials",)
    shown = migrated.ok("apps", "show", app["id"]).stdout
    assert "client_credentials" in shown and "(none)" in shown


def test_apps_create_several_grant_types(migrated: Cli) -> None:
    app = migrated.json(
        "apps",
        "create",
        "--name",
        "Both",
        "--redirect-uri",
        "http://localhost:9876/callback",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "client_credentials",
    )
    assert app["grant_types"] == ["authorization_code", "client_credentials"]


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "x"],  # the default grants include authorization_code
        ["--name", "x", "--grant-type", "authorization_code"],
        ["--name", "x", "--grant-type", "client_credentials", "--grant-type", "authorization_code"],
        ["--name", "x", "--grant-type", "password"],
    ],
)
def test_apps_create_grant_type_usage_errors(
    migrated: Cli, store: SqlStore, args: list[str]
) -> None:
    migrated.fails("apps", "create", *args, code=2)
    assert store.list_apps() == []


def test_apps_create_public_client_credentials_fails(migrated: Cli, store: SqlStore) -> None:
    result = migrated.fails(
        "apps", "create", "--name", "x", "--public", "--grant-type", "client_credentials"
    )
    assert "client_credentials" in result.stderr
    assert store.list_apps() == []
