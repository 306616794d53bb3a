"""Fewer index entries per flow step: most steps are answers that went well, and each of their
rows paid for indexes only refusals and signed-in flows use.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Written by hand and frozen once landed. Every token request that succeeds writes a step and
its flow's summary (core/flows.py), so every index on ``flow_steps`` and ``flows`` is work on
the token endpoint's processor. Searches by reason code and by the reference a person reads off
an error page look for refusals, which carry a reason: those two indexes become partial
(``reason IS NOT NULL``), and so does the index of a flow's user (a client_credentials flow has
none). The cap is enforced in timeline order, ``(at, seq)``, so one index serves it, the
retention by time and the "failing clients" count, in place of one on ``at`` and one on
``seq``. Steps per token request: six index entries down to three (the key, the flow and the
time); a flow without a user: four down to three.

Nodes still running the code of 0009 keep working while (and after) this revision runs: their
queries are the same; a search by reference without the ``reason`` condition and the cap
ordered by ``seq`` alone read the table instead of an index.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _partial(column: str) -> dict[str, Any]:
    where = sa.text(f"{column} IS NOT NULL")
    return {"sqlite_where": where, "postgresql_where": where}


def upgrade() -> None:
    for name in ("seq", "at", "reason", "reference"):
        op.drop_index(f"ix_flow_steps_{name}", table_name="flow_steps")
    op.create_index("ix_flow_steps_at_seq", "flow_steps", ["at", "seq"])
    op.create_index("ix_flow_steps_reason", "flow_steps", ["reason"], **_partial("reason"))
    op.create_index("ix_flow_steps_reference", "flow_steps", ["reference"], **_partial("reason"))
    op.drop_index("ix_flows_user_id", table_name="flows")
    op.create_index("ix_flows_user_id", "flows", ["user_id"], **_partial("user_id"))


def downgrade() -> None:
    op.drop_index("ix_flows_user_id", table_name="flows")
    op.create_index("ix_flows_user_id", "flows", ["user_id"])
    for name in ("reference", "reason", "at_seq"):
        op.drop_index(f"ix_flow_steps_{name}", table_name="flow_steps")
    for name in ("seq", "at", "reason", "reference"):
        op.create_index(f"ix_flow_steps_{name}", "flow_steps", [name])
