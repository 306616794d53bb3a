"""Client registration: RFC 7591 metadata on apps, client assertion jtis, rate-limit counters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-06-03

Written by hand and frozen once landed: it uses plain SQLAlchemy types, never the live
``tables.py``, so later edits to the code cannot change what this revision creates.

The new ``apps`` columns carry server defaults, so the rows that exist keep a valid value:
``application_type`` 'web', strings '', ``contacts`` '[]', booleans false, the rest NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# ``jwks`` is NULL when absent (a SQL NULL, not the JSON value null).
NULLABLE_JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Text(), nullable=False, server_default="")


def _app_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("application_type", sa.String(), nullable=False, server_default="web"),
        _text("client_uri"),
        _text("tos_uri"),
        _text("policy_uri"),
        sa.Column("contacts", JSON, nullable=False, server_default="[]"),
        sa.Column("jwks", NULLABLE_JSON, nullable=True),
        _text("jwks_uri"),
        sa.Column("software_id", sa.String(), nullable=False, server_default=""),
        sa.Column("software_version", sa.String(), nullable=False, server_default=""),
        sa.Column("registration_token_hash", sa.String(), nullable=True),
        sa.Column("metadata_document", sa.Boolean(), nullable=False, server_default=sa.false()),
        _ts("metadata_expires_at", nullable=True),
        _ts("last_used_at", nullable=True),
    ]


def upgrade() -> None:
    # Adding columns needs no table rebuild on SQLite (ADD COLUMN with a constant default).
    with op.batch_alter_table("apps", recreate="never") as batch:
        for column in _app_columns():
            batch.add_column(column)
    # The expiry sweep of dynamically registered clients: WHERE dynamically_registered …
    op.create_index(
        "ix_apps_dynamically_registered", "apps", ["dynamically_registered", "last_used_at"]
    )

    # RFC 7523 §3: a client assertion's jti is single use until the assertion expires.
    op.create_table(
        "client_assertion_jtis",
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("jti", sa.String(), nullable=False),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_client_assertion_jtis"),
    )
    op.create_index("ix_client_assertion_jtis_expires_at", "client_assertion_jtis", ["expires_at"])

    # One counter per key and fixed window.
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(), nullable=False),
        _ts("window_start"),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name="pk_rate_limits"),
    )
    op.create_index("ix_rate_limits_window_start", "rate_limits", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_rate_limits_window_start", table_name="rate_limits")
    op.drop_table("rate_limits")
    op.drop_index("ix_client_assertion_jtis_expires_at", table_name="client_assertion_jtis")
    op.drop_table("client_assertion_jtis")
    op.drop_index("ix_apps_dynamically_registered", table_name="apps")
    # recreate="never": SQLite (3.35+) drops the columns in place. A rebuild (copy the table,
    # DROP the old one) would, with foreign keys on, cascade-delete every secret, code, grant
    # and token of every app.
    with op.batch_alter_table("apps", recreate="never") as batch:
        for column in reversed(_app_columns()):
            batch.drop_column(column.name)
