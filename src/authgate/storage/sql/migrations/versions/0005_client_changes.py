"""Client changes: triggers that report every change to ``apps`` and ``app_secrets``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

Written by hand and frozen once landed. Each process keeps the clients it authenticated in
memory (``client_cache.py``) and forgets them when these triggers report a change, whoever makes
it: on SQLite they increment ``client_changes.generation``; on PostgreSQL they send a
notification on the channel ``authgate_clients`` whose payload is the app's id (empty: every
app). The ``last_used_at`` columns are left out: a touch is no change to the client.

A later revision that adds a column to ``apps`` or ``app_secrets`` recreates that table's UPDATE
trigger with the column in its list (tests/storage/test_client_cache.py checks that every
column but ``last_used_at`` is in it).

Additive only: nodes still running the code of 0004 keep working while (and after) this
revision runs; their changes are reported like anyone's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: Per table: the column that names the app, and the columns whose change is reported.
WATCHED = {
    "apps": (
        "id",
        (
            "id",
            "name",
            "icon",
            "redirect_uris",
            "client_type",
            "require_pkce",
            "token_endpoint_auth_method",
            "grant_types",
            "scope",
            "first_party",
            "dynamically_registered",
            "created_at",
            "updated_at",
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
        ),
    ),
    "app_secrets": (
        "app_id",
        ("id", "app_id", "prefix", "secret_hash", "display_secret", "created_at"),
    ),
}

# Without its row (deleted by hand) nothing is counted, and the caches read every time.
_BUMP = "UPDATE client_changes SET generation = generation + 1 WHERE id = 1;"

_NOTIFY = """
CREATE FUNCTION authgate_clients_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_app text;
    new_app text;
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN  -- TRUNCATE
        PERFORM pg_notify('authgate_clients', '');
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_app := to_jsonb(OLD) ->> TG_ARGV[0];
        PERFORM pg_notify('authgate_clients', old_app);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_app := to_jsonb(NEW) ->> TG_ARGV[0];
        IF new_app IS DISTINCT FROM old_app THEN
            PERFORM pg_notify('authgate_clients', new_app);
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "client_changes",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_client_changes"),
    )
    op.execute("INSERT INTO client_changes (id, generation) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_NOTIFY)
        for table, (app_column, columns) in WATCHED.items():
            watched = ", ".join(columns)
            op.execute(
                f"CREATE TRIGGER {table}_changed AFTER INSERT OR DELETE OR UPDATE OF {watched} "
                f"ON {table} FOR EACH ROW EXECUTE FUNCTION authgate_clients_changed('{app_column}')"
            )
            op.execute(
                f"CREATE TRIGGER {table}_truncated AFTER TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION authgate_clients_changed()"
            )
        return
    for table, (_, columns) in WATCHED.items():
        events = {
            "inserted": "INSERT",
            "deleted": "DELETE",
            "updated": f"UPDATE OF {', '.join(columns)}",
        }
        for name, event in events.items():
            op.execute(f"CREATE TRIGGER {table}_{name} AFTER {event} ON {table} BEGIN {_BUMP} END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in reversed(WATCHED):
            op.execute(f"DROP TRIGGER {table}_truncated ON {table}")
            op.execute(f"DROP TRIGGER {table}_changed ON {table}")
        op.execute("DROP FUNCTION authgate_clients_changed()")
    else:
        for table in reversed(WATCHED):
            for name in ("updated", "deleted", "inserted"):
                op.execute(f"DROP TRIGGER {table}_{name}")
    op.drop_table("client_changes")
