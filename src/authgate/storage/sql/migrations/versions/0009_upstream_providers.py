"""Sign-in through upstream OpenID Providers: the providers, the people linked through them,
and the sign-ins in progress.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

Written by hand and frozen once landed. Additive only: nodes still running the code of 0008
keep working while (and after) this revision runs (the new tables are unused by them).
``upstream_providers.client_secret`` holds the secret sealed with a key derived from
AUTHGATE_SECRET_KEY, never in clear; ``upstream_transactions`` holds a SHA-256 of ``state``,
and each row is deleted by the callback that consumes it (single use on any node) or by the
background cleanup once expired.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def _fk(column: str, table: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "upstream_providers",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("issuer", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=True),
        sa.Column("scopes", sa.String(), nullable=False),
        sa.Column("allowed_domains", JSON, nullable=False),
        sa.Column("link_by_verified_email", sa.Boolean(), nullable=False),
        sa.Column("jit_create", sa.Boolean(), nullable=False),
        sa.Column("required_claim", sa.String(), nullable=True),
        sa.Column("required_values", JSON, nullable=False),
        sa.Column("admin_claim", sa.String(), nullable=True),
        sa.Column("admin_values", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_upstream_providers"),
    )
    op.create_table(
        "upstream_identities",
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_sign_in_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("provider_id", "subject", name="pk_upstream_identities"),
        _fk("provider_id", "upstream_identities", "upstream_providers"),
        _fk("user_id", "upstream_identities", "users"),
    )
    op.create_index("ix_upstream_identities_user_id", "upstream_identities", ["user_id"])
    op.create_table(
        "upstream_transactions",
        sa.Column("state_hash", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("nonce", sa.String(), nullable=False),
        sa.Column("code_verifier", sa.String(), nullable=False),
        sa.Column("return_to", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name="pk_upstream_transactions"),
        _fk("provider_id", "upstream_transactions", "upstream_providers"),
    )
    op.create_index("ix_upstream_transactions_expires_at", "upstream_transactions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("upstream_transactions")
    op.drop_table("upstream_identities")
    op.drop_table("upstream_providers")
