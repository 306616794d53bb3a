"""Indexes on ``expires_at`` so the background cleanup finds expired rows without a table scan.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Written by hand and frozen once landed. Additive only: nodes still running the code of 0003
keep working while (and after) this revision runs.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("sessions", "authorization_codes", "access_tokens", "refresh_tokens")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_expires_at", table, ["expires_at"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_index(f"ix_{table}_expires_at", table_name=table)
