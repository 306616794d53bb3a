"""A flow of one step is stored as that step alone, without a ``flows`` row: the indexes its
searches use.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Written by hand and frozen once landed. Every ``client_credentials`` grant, and most refusals
tied to nothing, start a flow that no later request can join (core/flows.py): its summary row
in ``flows``, with its three index entries, was about a third of what the timeline's writer
spent on such a request. From this revision such a step's id is its flow's, and the searches
read its summary off the step. Two partial indexes over those steps only (``id = flow_id``)
answer the searches by client (in time order) and by person, as ``flows``' own indexes do for
the other flows; they cost nothing for the steps of longer flows.

Additive only, no row changes: every step written before has a ``flows`` row and an id of its
own. Nodes still running the code of 0011 keep working while (and after) this revision runs,
but their searches do not list the flows of one step that upgraded nodes write until they are
upgraded too (their timelines of such a flow, by id, are empty).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _alone(*more: str) -> dict[str, Any]:
    where = sa.text(" AND ".join(("id = flow_id", *more)))
    return {"sqlite_where": where, "postgresql_where": where}


def upgrade() -> None:
    op.create_index("ix_flow_steps_alone_client", "flow_steps", ["client_id", "at"], **_alone())
    op.create_index(
        "ix_flow_steps_alone_user", "flow_steps", ["user_id"], **_alone("user_id IS NOT NULL")
    )


def downgrade() -> None:
    # Flows of one step written since have no summary row: give them one, as before 0012.
    op.execute(
        "INSERT INTO flows (id, started_at, last_at, client_id, user_id, resource, steps, "
        "refusals, last_outcome, last_reason) "
        "SELECT flow_id, at, at, client_id, user_id, resource, 1, "
        "CASE WHEN outcome = 'refused' THEN 1 ELSE 0 END, outcome, reason "
        "FROM flow_steps WHERE id = flow_id"
    )
    op.drop_index("ix_flow_steps_alone_user", table_name="flow_steps")
    op.drop_index("ix_flow_steps_alone_client", table_name="flow_steps")
