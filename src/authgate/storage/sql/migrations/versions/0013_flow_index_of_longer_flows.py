"""The index of flow steps by flow holds only the steps of flows of more than one step.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

Written by hand and frozen once landed. Since 0012 a flow of one step (every
``client_credentials`` grant, most refusals tied to nothing) is that step alone, whose id
is its flow's: it is found by the primary key, so its entry in ``ix_flow_steps_flow_id`` was
one index write per such token request for nothing. The index is rebuilt over the other
steps only (``id <> flow_id``), which the lookups of a flow's steps name
(storage/sql/store_flows.py).

Nodes still running the code of 0012 find the steps of a flow by reading the whole table (the
console's and the API's timeline of one flow, and the cleanup of flows without steps) until
they are upgraded too; nothing they write changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    where = sa.text("id <> flow_id")
    op.drop_index("ix_flow_steps_flow_id", table_name="flow_steps")
    op.create_index(
        "ix_flow_steps_flow_id",
        "flow_steps",
        ["flow_id"],
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("ix_flow_steps_flow_id", table_name="flow_steps")
    op.create_index("ix_flow_steps_flow_id", "flow_steps", ["flow_id"])
