"""The flow timeline: ``flows`` and ``flow_steps``, and the flow id a code and its grant carry.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Written by hand and frozen once landed. Additive only: nodes still running the code of 0006
keep working while (and after) this revision runs (the new columns are nullable, the new tables
unused by them). ``flow_steps`` has no foreign key to ``flows``: the background writer inserts
steps and upserts their flow in one transaction, and the cleanup deletes both by age and cap.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
#: The tables an authorization's flow id travels on.
CARRIERS = ("authorization_codes", "grants")


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("last_at", TIME, nullable=False),
        sa.Column("client_id", sa.String(), nullable=True),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("resource", sa.Text(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.Column("last_outcome", sa.String(), nullable=False),
        sa.Column("last_reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_flows"),
    )
    op.create_index("ix_flows_last_at", "flows", ["last_at"])
    op.create_index("ix_flows_client_id", "flows", ["client_id"])
    op.create_index("ix_flows_user_id", "flows", ["user_id"])
    op.create_table(
        "flow_steps",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("flow_id", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("client_id", sa.String(), nullable=True),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("resource", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("reference", sa.String(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flow_steps"),
    )
    op.create_index("ix_flow_steps_flow_id", "flow_steps", ["flow_id"])
    op.create_index("ix_flow_steps_seq", "flow_steps", ["seq"])
    op.create_index("ix_flow_steps_at", "flow_steps", ["at"])
    op.create_index("ix_flow_steps_reason", "flow_steps", ["reason"])
    op.create_index("ix_flow_steps_reference", "flow_steps", ["reference"])
    for table in CARRIERS:
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.add_column(sa.Column("flow_id", sa.String(), nullable=True))


def downgrade() -> None:
    for table in reversed(CARRIERS):
        # recreate="never": a rebuild would cascade-delete the tokens of every grant.
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column("flow_id")
    for index in ("reference", "reason", "at", "seq", "flow_id"):
        op.drop_index(f"ix_flow_steps_{index}", table_name="flow_steps")
    op.drop_table("flow_steps")
    for index in ("user_id", "client_id", "last_at"):
        op.drop_index(f"ix_flows_{index}", table_name="flows")
    op.drop_table("flows")
