"""Resources (RFC 8707 audiences with their scopes) and JWS signing keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-27

Written by hand and frozen once landed: it uses plain SQLAlchemy types, never the live
``tables.py``, so later edits to the code cannot change what this revision creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("identifier", sa.Text(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        # [{"name": …, "description": …}, …]
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("token_format", sa.String(), nullable=False),
        sa.Column("access_token_ttl", sa.Integer(), nullable=True),
        # [app id, …]: no foreign key, core ignores ids of apps that no longer exist.
        sa.Column("introspectors", JSON, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_resources"),
    )
    op.create_index("ix_resources_identifier", "resources", ["identifier"], unique=True)

    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(), nullable=False),
        sa.Column("alg", sa.String(), nullable=False),
        sa.Column("public_jwk", JSON, nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("activated_at", nullable=True),
        _ts("retired_at", nullable=True),
        _ts("expires_at", nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_signing_keys"),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
    op.drop_index("ix_resources_identifier", table_name="resources")
    op.drop_table("resources")
