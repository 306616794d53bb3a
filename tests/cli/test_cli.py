"""The ``authgate`` CLI: migrations, users, tokens, apps and secrets, settings, audit, serve.

Each command is run in-process on a temporary data directory; the tests check what it printed
(text and ``--json``), its exit code and what the database holds afterwards.
"""

from __future__ import annotations

import gc
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import pytest

from authgate.app import build_services
from authgate.cli.main import cli
from authgate.config import settings_markdown
from authgate.core import accounts
from authgate.core.models import AuditEvent, AuditQuery
from authgate.crypto import passwords, secrets
from authgate.storage import SqlStore
from tests.cli.conftest import ISSUER, Cli
from tests.storage import store_builders as b

REDIRECT = "http://localhost:9876/callback"


def events(store: SqlStore, action: str) -> list[AuditEvent]:
    found, _ = store.list_audit(AuditQuery(action=action, limit=200))
    return list(found)


def create_app(env: Cli, *extra: str) -> dict[str, Any]:
    created: dict[str, Any] = env.json(
        "apps", "create", "--name", "CLI app", "--redirect-uri", REDIRECT, *extra
    )
    return created


# db


def test_db_status_and_upgrade(env: Cli) -> None:
    before = env.json("db", "status")
    assert before["state"] == "uninitialised" and before["current"] is None
    assert not (env.data_dir / "authgate.db").exists()

    upgraded = env.json("db", "upgrade")

    assert upgraded["state"] == "up_to_date"
    assert upgraded["revision"] == before["head"]
    assert (env.data_dir / "authgate.db").exists()
    after = env.ok("db", "status").stdout
    assert "up_to_date" in after and before["head"] in after


def test_admin_command_on_unmigrated_database_fails(env: Cli) -> None:
    result = env.fails("apps", "list")
    assert "authgate db upgrade" in result.stderr
    assert result.stdout == ""


def test_invalid_settings_fail_with_the_variable_name(
    env: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHGATE_ISSUER", "ftp://nope")
    result = env.fails("apps", "list")
    assert "AUTHGATE_ISSUER" in result.stderr


# users and tokens


def test_users_create_from_stdin_and_list(migrated: Cli, store: SqlStore) -> None:
    user = migrated.json(
        "users",
        "create",
        "--username",
        "Root",
        "--admin",
        "--password-stdin",
        input="s3cret password\n",
    )

    assert (user["username"], user["is_admin"], user["disabled"]) == ("root", True, False)
    stored = store.get_user_by_username("root")
    assert stored is not None and stored.id == user["id"] and stored.is_admin
    assert passwords.verify_password(stored.password_hash, "s3cret password")
    [event] = events(store, "user.created")
    assert (event.actor_type, event.actor_id, event.target_id) == ("system", None, user["id"])
    listed = migrated.json("users", "list")
    assert [u["username"] for u in listed] == ["root"]
    text = migrated.ok("users", "list").stdout
    assert "USERNAME" in text and "root" in text and user["id"] in text


def test_users_create_prompts_for_the_password(migrated: Cli, store: SqlStore) -> None:
    result = migrated.ok("users", "create", "--username", "bob", input="pass word 1\npass word 1\n")
    assert "Created user" in result.stdout and "pass word 1" not in result.stdout
    stored = store.get_user_by_username("bob")
    assert stored is not None and not stored.is_admin
    assert passwords.verify_password(stored.password_hash, "pass word 1")


def test_users_create_errors(migrated: Cli, store: SqlStore) -> None:
    migrated.ok("users", "create", "--username", "bob", "--password", "long enough")
    duplicate = migrated.fails("users", "create", "--username", "bob", "--password", "long enough")
    assert "already exists" in duplicate.stderr
    short = migrated.fails("users", "create", "--username", "carol", "--password", "short")
    assert "password" in short.stderr
    both = migrated.fails(
        "users",
        "create",
        "--username",
        "dave",
        "--password",
        "x" * 10,
        "--password-stdin",
        input="y" * 10,
        code=2,
    )
    assert "not both" in both.stderr
    assert [u.username for u in store.list_users()] == ["bob"]


def test_users_email_verified_on_create_and_update(migrated: Cli, store: SqlStore) -> None:
    made = migrated.json(
        "users", "create", "--username", "ada", "--password", "long enough",
        "--email", "ada@example.com", "--email-verified",
    )  # fmt: skip
    assert (made["email"], made["email_verified"]) == ("ada@example.com", True)
    stored = store.get_user_by_username("ada")
    assert stored is not None and stored.email_verified
    text = migrated.ok("users", "update", "ada", "--email-unverified").stdout
    assert "Updated user" in text and "ada@example.com (unverified)" in text
    stored = store.get_user_by_username("ada")
    assert stored is not None and not stored.email_verified
    [event] = events(store, "user.updated")
    assert event.details["fields"] == ["email_verified"] and event.actor_type == "system"
    # A new address is unverified unless said otherwise in the same change.
    both = migrated.json(
        "users", "update", made["id"], "--email", " new@example.com ", "--email-verified",
        "--name", "Ada L",
    )  # fmt: skip
    assert (both["email"], both["email_verified"], both["name"]) == (
        "new@example.com",
        True,
        "Ada L",
    )
    moved = migrated.json("users", "update", "ada", "--email", "other@example.com")
    assert moved["email_verified"] is False


def test_users_email_verified_needs_an_address(migrated: Cli, store: SqlStore) -> None:
    refused = migrated.fails(
        "users", "create", "--username", "bob", "--password", "long enough", "--email-verified"
    )
    assert "no email address to verify" in refused.stderr
    assert store.list_users() == []
    migrated.ok("users", "create", "--username", "bob", "--password", "long enough")
    again = migrated.fails("users", "update", "bob", "--email-verified")
    assert "no email address to verify" in again.stderr
    nothing = migrated.fails("users", "update", "bob", code=2)
    assert "Nothing to change" in nothing.stderr
    unknown = migrated.fails("users", "update", "nobody", "--name", "X")
    assert "No such user" in unknown.stderr
    stored = store.get_user_by_username("bob")
    assert stored is not None and not stored.email_verified and stored.name == ""
    assert events(store, "user.updated") == []


def test_tokens_create_prints_a_working_token_once(migrated: Cli, store: SqlStore) -> None:
    migrated.ok("users", "create", "--username", "bob", "--password", "long enough")
    services = build_services(migrated.settings(), dev=True)
    ctx = services.ctx

    created = migrated.json(
        "tokens", "create", "--user", "bob", "--name", "ci", "--lifetime-days", "7"
    )

    token = created["token"]
    bob = accounts.resolve_api_token(ctx, token)
    assert bob.username == "bob"
    [stored] = store.list_api_tokens(bob.id)
    assert stored.id == created["id"] and stored.prefix == created["prefix"]
    assert stored.expires_at is not None
    assert stored.expires_at - stored.created_at == timedelta(days=7)
    assert token not in stored.token_hash
    [event] = events(store, "api_token.created")
    assert event.actor_type == "system" and event.details["user_id"] == bob.id
    text = migrated.ok("tokens", "create", "--user", "bob", "--name", "other").stdout
    assert "agpat_" in text and "will not be shown again" in text
    services.store.close()


def test_tokens_create_for_unknown_user_fails(migrated: Cli, store: SqlStore) -> None:
    result = migrated.fails("tokens", "create", "--user", "ghost", "--name", "ci")
    assert "ghost" in result.stderr
    assert events(store, "api_token.created") == []


def test_users_disable_enable_delete_end_the_users_grants(migrated: Cli, store: SqlStore) -> None:
    migrated.ok("users", "create", "--username", "bob", "--password", "long enough")
    bob = store.get_user_by_username("bob")
    assert bob is not None
    app = b.app()
    store.create_app(app)
    code, pending = b.code(app.id, bob.id), b.code(app.id, bob.id)
    store.create_code(code)
    store.create_code(pending)
    grant = b.grant(app.id, bob.id)
    assert store.redeem_code(code.id, b.at(0), grant, b.access(grant, app.id), b.refresh(grant))

    disabled = migrated.json("users", "disable", "bob")
    assert disabled["username"] == "bob" and disabled["disabled"] is True
    revoked = store.get_grant(grant.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert store.get_code_by_prefix(pending.prefix) is None
    [ended] = events(store, "user.grants_revoked")
    assert ended.target_id == bob.id and ended.actor_type == "system"
    assert ended.details == {"reason": "disabled", "grants": 1, "codes": 1}
    assert "Enabled user bob." in migrated.ok("users", "enable", bob.id).stdout

    assert migrated.json("users", "delete", "bob") == {"id": bob.id, "deleted": True}
    assert store.get_user(bob.id) is None and store.get_grant(grant.id) is None
    [deleted] = events(store, "user.deleted")
    assert deleted.target_id == bob.id and deleted.details == {"username": "bob"}
    assert "No such user" in migrated.fails("users", "delete", "bob").stderr


# apps


def test_apps_create_list_show_delete(migrated: Cli, store: SqlStore) -> None:
    app = create_app(
        migrated, "--redirect-uri", "https://app.example/cb", "--scope", "read", "--first-party"
    )

    assert app["redirect_uris"] == [REDIRECT, "https://app.example/cb"]
    assert app["callback_url"] == REDIRECT
    assert (app["client_type"], app["require_pkce"], app["scope"], app["first_party"]) == (
        "confidential",
        True,
        "read",
        True,
    )
    assert app["endpoints"]["token"] == f"{ISSUER}/oauth2/tokens"
    stored = store.get_app(app["id"])
    assert stored is not None and stored.name == "CLI app"
    [event] = events(store, "app.created")
    assert (event.actor_type, event.target_id) == ("system", app["id"])

    assert migrated.json("apps", "list") == [app]
    assert migrated.json("apps", "show", app["id"]) == app
    listing = migrated.ok("apps", "list").stdout
    assert app["id"] in listing and "CLI app" in listing
    shown = migrated.ok("apps", "show", app["id"]).stdout
    assert "confidential" in shown and REDIRECT in shown

    deleted = migrated.json("apps", "delete", app["id"])

    assert deleted == {"id": app["id"], "deleted": True}
    assert store.get_app(app["id"]) is None
    assert "No such app" in migrated.fails("apps", "show", app["id"]).stderr
    assert "No such app" in migrated.fails("apps", "delete", app["id"]).stderr
    [gone] = events(store, "app.deleted")
    assert gone.actor_type == "system" and gone.target_id == app["id"]


def test_apps_create_public_and_legacy_confidential(migrated: Cli) -> None:
    public = create_app(migrated, "--public")
    assert (public["client_type"], public["token_endpoint_auth_method"]) == ("public", "none")
    legacy = create_app(migrated, "--no-pkce")
    assert legacy["require_pkce"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "x", "--redirect-uri", "javascript:alert(1)"], "redirect_uris"),
        (["--name", "", "--redirect-uri", REDIRECT], "name"),
        (["--name", "x", "--redirect-uri", REDIRECT, "--public", "--no-pkce"], "PKCE"),
    ],
)
def test_apps_create_invalid_fails_and_stores_nothing(
    migrated: Cli, store: SqlStore, args: list[str], message: str
) -> None:
    result = migrated.fails("apps", "create", *args)
    assert message in result.stderr and result.stdout == ""
    assert store.list_apps() == []
    assert events(store, "app.created") == []


def test_apps_create_without_redirect_uri_is_a_usage_error(migrated: Cli) -> None:
    migrated.fails("apps", "create", "--name", "x", code=2)


def test_app_secrets_create_list_delete(migrated: Cli, store: SqlStore) -> None:
    app = create_app(migrated)

    created = migrated.json("apps", "secrets", "create", app["id"])

    full = created["client_secret_full"]
    assert full.startswith("agcs_")
    [stored] = store.list_secrets(app["id"])
    assert stored.id == created["id"] and stored.secret_hash == secrets.sha256_hex(full)
    listed = migrated.json("apps", "secrets", "list", app["id"])
    assert listed == [
        {"id": created["id"], "last_used_at": None, "client_secret_truncated": full[-6:]}
    ]
    text = migrated.ok("apps", "secrets", "list", app["id"]).stdout
    assert full[-6:] in text and full not in text
    human = migrated.ok("apps", "secrets", "create", app["id"]).stdout
    assert "agcs_" in human and "will not be shown again" in human

    migrated.ok("apps", "secrets", "delete", app["id"], created["id"])

    assert created["id"] not in {s.id for s in store.list_secrets(app["id"])}
    again = migrated.fails("apps", "secrets", "delete", app["id"], created["id"])
    assert "No such secret" in again.stderr
    [event] = events(store, "secret.deleted")
    assert event.actor_type == "system" and event.target_id == created["id"]
    audit_text = str([e.details for e in store.list_audit(AuditQuery(limit=200))[0]])
    assert full not in audit_text


def test_public_app_has_no_secret(migrated: Cli, store: SqlStore) -> None:
    app = create_app(migrated, "--public")
    assert "Public clients" in migrated.fails("apps", "secrets", "create", app["id"]).stderr
    assert store.list_secrets(app["id"]) == []


# audit, settings


def test_audit_tail(migrated: Cli) -> None:
    first = create_app(migrated)
    second = create_app(migrated)
    migrated.ok("apps", "secrets", "create", second["id"])

    tail = migrated.json("audit", "tail", "--limit", "2")

    assert [e["action"] for e in tail] == ["app.created", "secret.created"]
    assert tail[0]["target_id"] == second["id"] and tail[0]["actor_type"] == "system"
    only_apps = migrated.json("audit", "tail", "--action", "app.created")
    assert [e["target_id"] for e in only_apps] == [first["id"], second["id"]]
    text = migrated.ok("audit", "tail").stdout
    assert "secret.created" in text and "ACTION" in text
    migrated.fails("audit", "tail", "--limit", "0", code=2)


def test_settings_markdown_is_the_generated_reference(env: Cli) -> None:
    assert env.ok("settings", "--markdown").stdout == settings_markdown()


def test_settings_redact_secrets(env: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", "postgresql://authgate:hunter2pw@db/authgate")

    values = env.json("settings")
    text = env.ok("settings").stdout

    assert values["issuer"] == ISSUER
    assert values["secret_key"] == "(set, redacted)"
    assert values["database_url"] == "postgresql://authgate:***@db/authgate"
    for output in (text, str(values)):
        assert "k" * 40 not in output and "hunter2pw" not in output
    assert "AUTHGATE_ISSUER" in text and ISSUER in text


def test_every_command_has_json_output() -> None:
    def leaves(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
        if isinstance(command, click.Group):
            return [
                leaf
                for name, sub in command.commands.items()
                for leaf in leaves(sub, f"{path} {name}")
            ]
        return [(path, command)]

    found = leaves(cli, "authgate")
    assert len(found) >= 15
    for path, command in found:
        assert "--json" in {opt for p in command.params for opt in p.opts}, path


def test_unknown_command_is_a_usage_error(env: Cli) -> None:
    assert "No such command" in env.fails("bogus", code=2).stderr


# serve


class FakeUvicorn:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, app: object, **kwargs: Any) -> None:
        self.calls.append({"app": app, **kwargs})


@pytest.fixture
def uvicorn_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeUvicorn]:
    fake = FakeUvicorn()
    monkeypatch.setattr("authgate.cli.serve.uvicorn.run", fake)
    yield fake
    gc.unfreeze()  # serve froze this test process's heap (cli/serve._settled)


def test_serve_exempts_the_started_app_from_the_collector(
    env: Cli, uvicorn_run: FakeUvicorn
) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    env.json("serve", "--dev")
    [call] = uvicorn_run.calls
    assert gc.get_freeze_count() > 10_000  # the app, its routes and every module loaded
    assert gc.is_tracked(call["app"]) and gc.get_count()[0] < 1000


def test_serve_dev_bootstraps_once(env: Cli, uvicorn_run: FakeUvicorn) -> None:
    made = env.json("serve", "--dev", "--port", "4000")

    assert made["issuer"] == ISSUER and made["username"] == "admin"
    services = build_services(env.settings(), dev=True)
    store = services.store
    admin = store.get_user_by_username("admin")
    assert admin is not None and admin.is_admin
    assert passwords.verify_password(admin.password_hash, made["password"])
    assert accounts.resolve_api_token(services.ctx, made["api_token"]).id == admin.id
    app = store.get_app(made["client_id"])
    assert app is not None and app.name == "Demo app" and app.client_type == "confidential"
    assert app.redirect_uris == (REDIRECT, "http://127.0.0.1:9876/callback")
    [secret] = store.list_secrets(app.id)
    assert secret.secret_hash == secrets.sha256_hex(made["client_secret"])
    key = env.data_dir / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    [call] = uvicorn_run.calls
    assert (call["host"], call["port"], call["proxy_headers"], call["log_config"]) == (
        "127.0.0.1",
        4000,
        False,
        None,
    )

    again = env.ok("serve", "--dev", "--host", "0.0.0.0")  # noqa: S104

    assert "already exists" in again.stdout
    assert made["password"] not in again.stdout and "agpat_" not in again.stdout
    assert f"authgate apps secrets create {app.id}" in again.stdout
    assert [u.username for u in store.list_users()] == ["admin"]
    assert len(store.list_apps()) == 1
    assert uvicorn_run.calls[1]["host"] == "0.0.0.0"  # noqa: S104
    store.close()


def test_serve_dev_prints_how_to_use_it(env: Cli, uvicorn_run: FakeUvicorn) -> None:
    text = env.ok("serve", "--dev").stdout
    for expected in (
        "Admin password",
        "agpat_",
        "agcs_",
        f"{ISSUER}/login",
        "will not be shown again",
    ):
        assert expected in text


def test_serve_refuses_an_unmigrated_database(env: Cli, uvicorn_run: FakeUvicorn) -> None:
    result = env.fails("serve")
    assert "authgate db upgrade" in result.stderr
    assert uvicorn_run.calls == []


def test_serve_without_secret_key_outside_dev_fails(
    migrated: Cli, uvicorn_run: FakeUvicorn
) -> None:
    result = migrated.fails("serve")
    assert "AUTHGATE_SECRET_KEY" in result.stderr
    assert uvicorn_run.calls == []


def test_serve_refuses_a_newer_schema(migrated: Cli, uvicorn_run: FakeUvicorn) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(migrated.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    result = migrated.fails("serve", "--dev")
    assert "newer than this authgate" in result.stderr
    assert "9999" in result.stderr
    assert uvicorn_run.calls == []


def test_serve_refuses_an_unusable_database_url(
    env: Cli, uvicorn_run: FakeUvicorn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", "mysql://root@127.0.0.1/authgate")
    result = env.fails("serve")
    assert "AUTHGATE_DATABASE_URL is not usable" in result.stderr
    assert "Traceback" not in result.stderr
    assert uvicorn_run.calls == []


def test_db_cleanup_deletes_what_expired_before_the_retention(
    store: SqlStore, migrated: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    user = b.user()
    store.create_user(user)
    old = b.session(user.id, created_at=now - timedelta(days=3), expires_at=now - timedelta(days=2))
    recent = b.session(
        user.id, created_at=now - timedelta(hours=13), expires_at=now - timedelta(hours=1)
    )
    live = b.session(user.id, created_at=now, expires_at=now + timedelta(hours=1))
    for session in (old, recent, live):
        store.create_session(session)

    # The default retention (a day) keeps the one that expired an hour ago.
    report = migrated.json("db", "cleanup")
    assert report == {
        "deleted": {
            "sessions": 1,
            "codes": 0,
            "access_tokens": 0,
            "refresh_tokens": 0,
            "grants": 0,
            "upstream_transactions": 0,
            "clients": 0,
            "flows": 0,
        },
        "complete": True,
    }
    assert store.get_session_by_hash(old.token_hash) is None
    assert store.get_session_by_hash(recent.token_hash) is not None

    monkeypatch.setenv("AUTHGATE_CLEANUP_RETENTION_SECONDS", "0")
    monkeypatch.setenv("AUTHGATE_CLEANUP_BATCH_SIZE", "1")
    text = migrated.ok("db", "cleanup", "--max-batches", "1").stdout
    assert "Sessions:" in text and "1" in text
    assert store.get_session_by_hash(recent.token_hash) is None
    assert store.get_session_by_hash(live.token_hash) is not None


def test_apps_admin_access_create_update_show(migrated: Cli, store: SqlStore) -> None:
    """authgate's own admin scope only for apps an operator marked (DESIGN.md §7)."""
    plain = create_app(migrated)
    assert plain["admin_access"] is False
    marked = create_app(migrated, "--admin-access")
    assert marked["admin_access"] is True
    stored = store.get_app(marked["id"])
    assert stored is not None and stored.admin_access is True
    assert "Admin access" in migrated.ok("apps", "show", marked["id"]).stdout
    assert "ADMIN" in migrated.ok("apps", "list").stdout

    updated = migrated.json("apps", "update", marked["id"], "--no-admin-access")
    assert updated["admin_access"] is False
    found = store.get_app(marked["id"])
    assert found is not None and found.admin_access is False
    [event] = [e for e in events(store, "app.updated") if e.target_id == marked["id"]]
    assert (event.actor_type, event.details["admin_access"]) == ("system", False)
    again = migrated.json("apps", "update", marked["id"], "--admin-access")
    assert again["admin_access"] is True and again["name"] == "CLI app"
