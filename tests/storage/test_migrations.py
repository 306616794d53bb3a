"""Migrations: up, down and up again on every SQL backend; the status a database reports."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from authgate.core.models import App, UpstreamIdentity, UpstreamProvider
from authgate.storage import SchemaStatus, downgrade, open_store, schema_status, upgrade
from authgate.storage.sql import migrate
from authgate.storage.sql.engine import make_engine
from authgate.storage.sql.tables import metadata
from tests.storage import store_builders as b
from tests.storage.conftest import SQL_BACKENDS

TABLES = {
    "users",
    "sessions",
    "api_tokens",
    "apps",
    "app_secrets",
    "authorization_codes",
    "grants",
    "access_tokens",
    "refresh_tokens",
    "audit_log",
    "settings",
    "resources",
    "signing_keys",
    "client_assertion_jtis",
    "rate_limits",
    "client_changes",
    "flows",
    "flow_steps",
    "upstream_providers",
    "upstream_identities",
    "upstream_transactions",
}
TABLES_0008 = TABLES - {"upstream_providers", "upstream_identities", "upstream_transactions"}
TABLES_0006 = TABLES_0008 - {"flows", "flow_steps"}
TABLES_0004 = TABLES_0006 - {"client_changes"}
TABLES_0002 = TABLES_0004 - {"client_assertion_jtis", "rate_limits"}
TABLES_0001 = TABLES_0002 - {"resources", "signing_keys"}
HEAD = "0013"
NEXT = f"{int(HEAD) + 1:04d}"  # a revision newer code would add

every_sql_backend = pytest.mark.parametrize("empty_database_url", SQL_BACKENDS, indirect=True)


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def set_version(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        engine.dispose()


@every_sql_backend
def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    upgrade(url)
    assert table_names(url) == TABLES
    downgrade(url, "base")
    assert table_names(url) == set()
    upgrade(url)
    assert table_names(url) == TABLES
    upgrade(url)  # idempotent at head
    store = open_store(url)
    try:
        assert store.ping() is True
        assert store.count_users() == 0
    finally:
        store.close()


@every_sql_backend
def test_0002_down_and_up_again_keeps_the_0001_data(empty_database_url: str) -> None:
    """Downgrading to 0001 drops only what 0002 added; upgrading again restores it, empty."""
    url = empty_database_url
    upgrade(url)
    store = open_store(url)
    try:
        u = b.user()
        store.create_user(u)
        store.create_resource(b.resource())
        store.create_signing_key(b.signing_key())
    finally:
        store.close()

    downgrade(url, "0001")
    assert table_names(url) == TABLES_0001
    assert app_columns(url).isdisjoint(REGISTRATION_FIELDS)
    assert schema_status(url) == SchemaStatus(current="0001", head=HEAD, state="behind")

    upgrade(url)
    assert table_names(url) == TABLES
    assert schema_status(url) == SchemaStatus(current=HEAD, head=HEAD, state="up_to_date")
    store = open_store(url)
    try:
        assert store.get_user(u.id) == u
        assert list(store.list_resources()) == []
        assert list(store.list_signing_keys()) == []
        r, k = b.resource(), b.signing_key()
        store.create_resource(r)
        store.create_signing_key(k)
        assert store.get_resource(r.id) == r
        assert list(store.list_signing_keys()) == [k]
    finally:
        store.close()


def app_columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {column["name"] for column in inspect(conn).get_columns("apps")}
    finally:
        engine.dispose()


def row_counts(url: str, *tables: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in tables
            }
    finally:
        engine.dispose()


REGISTRATION_FIELDS = {
    "application_type",
    "client_uri",
    "tos_uri",
    "policy_uri",
    "contacts",
    "jwks",
    "jwks_uri",
    "software_id",
    "software_version",
    "registration_token_hash",
    "metadata_document",
    "metadata_expires_at",
    "last_used_at",
}


@every_sql_backend
def test_0003_down_and_up_again_keeps_apps_and_what_hangs_off_them(
    empty_database_url: str,
) -> None:
    """Downgrading to 0002 drops the registration columns and tables but no app, secret, code,
    grant or token (a table rebuild on SQLite would cascade-delete them); upgrading again gives
    the existing apps the defaults."""
    url = empty_database_url
    upgrade(url)
    store = open_store(url)
    try:
        u, a = b.user(), b.app()
        store.create_user(u)
        store.create_app(a)
        s = b.secret(a.id)
        store.create_secret(s)
        c = b.code(a.id, u.id)
        store.create_code(c)
        g = b.grant(a.id, u.id)
        at_, rt = b.access(g, a.id, secret_id=s.id), b.refresh(g, secret_id=s.id)
        assert store.redeem_code(c.id, b.at(0.5), g, at_, rt)
        assert store.consume_assertion_jti(a.id, "jti", b.at(5), b.at(0)) is True
        assert store.hit_rate_limit("k", b.at(0), b.at(0)) == 1
    finally:
        store.close()
    children: tuple[str, ...] = ("apps", "app_secrets", "authorization_codes", "grants")
    children += ("access_tokens", "refresh_tokens")
    assert row_counts(url, *children) == dict.fromkeys(children, 1)

    downgrade(url, "0002")
    assert table_names(url) == TABLES_0002
    assert app_columns(url).isdisjoint(REGISTRATION_FIELDS)
    assert row_counts(url, *children) == dict.fromkeys(children, 1)
    assert schema_status(url) == SchemaStatus(current="0002", head=HEAD, state="behind")

    upgrade(url)
    assert table_names(url) == TABLES
    assert app_columns(url) >= REGISTRATION_FIELDS
    defaults: dict[str, Any] = {
        f.name: f.default for f in dataclasses.fields(App) if f.name in REGISTRATION_FIELDS
    }
    assert defaults.keys() == REGISTRATION_FIELDS
    store = open_store(url)
    try:
        assert store.get_app(a.id) == dataclasses.replace(a, **defaults)
        assert store.get_secret_by_prefix(s.prefix) == s
        assert store.get_refresh_token_by_prefix(rt.prefix) == rt
        assert store.count_dynamic_apps() == 1
        assert [x.id for x in store.list_stale_dynamic_apps(b.at(1))] == [a.id]
        # The jti and the counter went with their tables.
        assert store.consume_assertion_jti(a.id, "jti", b.at(5), b.at(0)) is True
        assert store.hit_rate_limit("k", b.at(0), b.at(0)) == 1
        store.update_app(a)
        assert store.get_app(a.id) == a
    finally:
        store.close()


@every_sql_backend
def test_migrated_schema_matches_tables_py(empty_database_url: str) -> None:
    """The hand-written migration and the tables the code queries describe the same schema."""
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


@every_sql_backend
def test_schema_status(empty_database_url: str) -> None:
    url = empty_database_url
    assert schema_status(url) == SchemaStatus(current=None, head=HEAD, state="uninitialised")
    upgrade(url)
    assert schema_status(url) == SchemaStatus(current=HEAD, head=HEAD, state="up_to_date")
    set_version(url, "9999")  # written by a newer authgate
    assert schema_status(url) == SchemaStatus(current="9999", head=HEAD, state="ahead")


NEXT_REVISION = f"""
revision = "{NEXT}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
"""


@every_sql_backend
def test_schema_status_behind_after_downgrade(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code with a newer head sees a downgraded database as behind, older code as ahead."""
    newer = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, newer, ignore=shutil.ignore_patterns("__pycache__"))
    (newer / "versions" / f"{NEXT}_next.py").write_text(NEXT_REVISION)
    url = empty_database_url

    def run_as(migrations: Path) -> None:
        monkeypatch.setattr(migrate, "MIGRATIONS_DIR", migrations)

    current = migrate.MIGRATIONS_DIR
    run_as(newer)
    upgrade(url)
    assert schema_status(url) == SchemaStatus(NEXT, NEXT, "up_to_date")
    run_as(current)  # this code must not touch a database migrated by newer code
    assert schema_status(url) == SchemaStatus(NEXT, HEAD, "ahead")
    run_as(newer)
    downgrade(url, HEAD)
    assert schema_status(url) == SchemaStatus(HEAD, NEXT, "behind")
    run_as(current)
    assert schema_status(url) == SchemaStatus(HEAD, HEAD, "up_to_date")
    assert table_names(url) == TABLES


@every_sql_backend
def test_concurrent_upgrades_in_threads(empty_database_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            upgrade(empty_database_url)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert schema_status(empty_database_url).state == "up_to_date"


@every_sql_backend
def test_concurrent_upgrades_in_processes(empty_database_url: str) -> None:
    """Several nodes starting at once: the database serialises them, none fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = "import sys; from authgate.storage import upgrade; upgrade(sys.argv[1])"
    nodes = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_database_url],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    stderr = [node.communicate(timeout=120)[1] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0, 0, 0], stderr
    assert schema_status(empty_database_url).state == "up_to_date"
    assert table_names(empty_database_url) == TABLES


def test_upgrade_creates_the_sqlite_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "nested"
    url = f"sqlite:///{folder / 'authgate.db'}"
    assert schema_status(url).state == "uninitialised"
    assert not folder.exists(), "schema_status must not create anything"
    upgrade(url)
    assert (folder / "authgate.db").is_file()
    assert schema_status(url).state == "up_to_date"


def provider_columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("upstream_providers")}
    finally:
        engine.dispose()


ASSERTION_COLUMNS = {
    "token_auth_method",
    "assertion_audience",
    "assertion_key",
    "assertion_certificate",
}


@every_sql_backend
def test_0011_down_and_up_again_keeps_providers_and_their_identities(
    empty_database_url: str,
) -> None:
    """0011 adds four columns in place (never a rebuild, which would cascade-delete the
    identities); a provider written by 0010's code reads back as "auto"."""
    url = empty_database_url
    upgrade(url)
    now = datetime.now(UTC)
    provider = UpstreamProvider(
        id="corp", display_name="Corp", kind="oidc", issuer="https://idp.example.com",
        client_id="authgate", client_secret=None, scopes="openid", created_at=now,
        updated_at=now, token_auth_method="private_key_jwt", assertion_audience="issuer",
        assertion_key="sealed", assertion_certificate="-----BEGIN CERTIFICATE-----",
    )  # fmt: skip
    store = open_store(url)
    try:
        user = b.user()
        store.create_user(user)
        store.create_upstream_provider(provider)
        store.create_upstream_identity(UpstreamIdentity("corp", "sub-1", user.id, now))
        assert store.get_upstream_provider("corp") == provider
    finally:
        store.close()

    downgrade(url, "0010")
    assert provider_columns(url).isdisjoint(ASSERTION_COLUMNS)
    assert row_counts(url, "upstream_providers", "upstream_identities") == {
        "upstream_providers": 1,
        "upstream_identities": 1,
    }
    upgrade(url)
    assert provider_columns(url) >= ASSERTION_COLUMNS
    store = open_store(url)
    try:
        found = store.get_upstream_provider("corp")
        assert found is not None and found.client_id == "authgate"
        assert (found.token_auth_method, found.assertion_audience) == (None, "token_endpoint")
        assert found.assertion_key is None and found.assertion_certificate is None
        assert store.get_upstream_identity("corp", "sub-1") is not None
    finally:
        store.close()
