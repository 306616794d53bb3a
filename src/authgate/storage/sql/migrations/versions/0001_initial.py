"""Initial schema: users, sessions, API tokens, apps and secrets, codes, grants, tokens,
audit log and settings.

Revision ID: 0001
Revises:
Create Date: 2026-05-20

Written by hand and frozen once landed: it uses plain SQLAlchemy types, never the live
``tables.py``, so later edits to the code cannot change what this revision creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.String(), nullable=False)


def _fk(
    column: str, table: str, target: str, on_delete: str = "CASCADE"
) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete=on_delete
    )


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")


def _index(table: str, column: str, *, unique: bool = False) -> None:
    op.create_index(f"ix_{table}_{column}", table, [column], unique=unique)


def _create_users() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _pk("users"),
    )
    _index("users", "username", unique=True)

    op.create_table(
        "sessions",
        _id(),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        sa.Column("ip", sa.String(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        _pk("sessions"),
        _fk("user_id", "sessions", "users"),
    )
    _index("sessions", "token_hash", unique=True)
    _index("sessions", "user_id")

    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        _ts("created_at"),
        _ts("expires_at", nullable=True),
        _ts("last_used_at", nullable=True),
        _pk("api_tokens"),
        _fk("user_id", "api_tokens", "users"),
    )
    _index("api_tokens", "prefix", unique=True)
    _index("api_tokens", "user_id")


def _create_apps() -> None:
    op.create_table(
        "apps",
        _id(),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("icon", sa.Text(), nullable=False),
        sa.Column("redirect_uris", JSON, nullable=False),
        sa.Column("client_type", sa.String(), nullable=False),
        sa.Column("require_pkce", sa.Boolean(), nullable=False),
        sa.Column("token_endpoint_auth_method", sa.String(), nullable=True),
        sa.Column("grant_types", JSON, nullable=False),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("first_party", sa.Boolean(), nullable=False),
        sa.Column("dynamically_registered", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _pk("apps"),
    )

    op.create_table(
        "app_secrets",
        _id(),
        sa.Column("app_id", sa.String(), nullable=False),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("secret_hash", sa.String(), nullable=False),
        sa.Column("display_secret", sa.String(), nullable=False),
        _ts("created_at"),
        _ts("last_used_at", nullable=True),
        _pk("app_secrets"),
        _fk("app_id", "app_secrets", "apps"),
    )
    _index("app_secrets", "prefix", unique=True)
    _index("app_secrets", "app_id")


def _create_codes_and_grants() -> None:
    op.create_table(
        "authorization_codes",
        _id(),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("code_hash", sa.String(), nullable=False),
        sa.Column("app_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("redirect_uri_provided", sa.Boolean(), nullable=False),
        sa.Column("code_challenge", sa.String(), nullable=True),
        sa.Column("code_challenge_method", sa.String(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("state_hash", sa.String(), nullable=True),
        _ts("auth_time"),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("consumed_at", nullable=True),
        sa.Column("grant_id", sa.String(), nullable=True),
        _pk("authorization_codes"),
        _fk("app_id", "authorization_codes", "apps"),
        _fk("user_id", "authorization_codes", "users"),
    )
    for column in ("app_id", "user_id", "grant_id"):
        _index("authorization_codes", column)
    _index("authorization_codes", "prefix", unique=True)

    op.create_table(
        "grants",
        _id(),
        sa.Column("app_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        _ts("auth_time", nullable=True),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
        _pk("grants"),
        _fk("app_id", "grants", "apps"),
        _fk("user_id", "grants", "users"),
    )
    _index("grants", "app_id")
    _index("grants", "user_id")


def _create_tokens(table: str, *, refresh: bool) -> None:
    consumed = [_ts("consumed_at", nullable=True)] if refresh else []
    op.create_table(
        table,
        _id(),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("grant_id", sa.String(), nullable=not refresh),
        sa.Column("app_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("secret_id", sa.String(), nullable=True),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        *consumed,
        _ts("revoked_at", nullable=True),
        _pk(table),
        _fk("grant_id", table, "grants"),
        _fk("app_id", table, "apps"),
        _fk("secret_id", table, "app_secrets", on_delete="SET NULL"),
    )
    _index(table, "prefix", unique=True)
    for column in ("grant_id", "app_id", "user_id", "secret_id"):
        _index(table, column)


def _create_audit_and_settings() -> None:
    op.create_table(
        "audit_log",
        _id(),
        _ts("at"),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("actor_type", sa.String(), nullable=False),
        sa.Column("actor_id", sa.String(), nullable=True),
        sa.Column("target_type", sa.String(), nullable=True),
        sa.Column("target_id", sa.String(), nullable=True),
        sa.Column("ip", sa.String(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("details", JSON, nullable=False),
        _pk("audit_log"),
    )
    _index("audit_log", "at")
    _index("audit_log", "action")

    op.create_table(
        "settings",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", JSON, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_settings"),
    )


def upgrade() -> None:
    _create_users()
    _create_apps()
    _create_codes_and_grants()
    _create_tokens("access_tokens", refresh=False)
    _create_tokens("refresh_tokens", refresh=True)
    _create_audit_and_settings()


def downgrade() -> None:
    # Children before parents, so no foreign key ever points at a dropped table.
    for table in (
        "settings",
        "audit_log",
        "refresh_tokens",
        "access_tokens",
        "grants",
        "authorization_codes",
        "app_secrets",
        "apps",
        "api_tokens",
        "sessions",
        "users",
    ):
        op.drop_table(table)
