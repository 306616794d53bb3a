"""How authgate authenticates at an upstream provider's token endpoint, and the key it signs
``private_key_jwt`` client assertions with.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Written by hand and frozen once landed. Additive only: four columns of
``upstream_providers``. ``token_auth_method`` NULL is "auto", the choice every provider made
before this revision (Basic, or the form when discovery offers only that), and
``assertion_audience`` defaults to ``token_endpoint`` on the database side, so nodes still
running the code of 0010 keep inserting and updating providers while (and after) this revision
runs; they ignore the new columns. ``assertion_key`` holds an RSA private key sealed with a key
derived from AUTHGATE_SECRET_KEY (the provider id as associated data), never in clear;
``assertion_certificate`` its self-signed certificate (PEM, public).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _added() -> list[sa.Column[object]]:
    return [
        sa.Column("token_auth_method", sa.String(), nullable=True),
        sa.Column(
            "assertion_audience", sa.String(), nullable=False, server_default="token_endpoint"
        ),
        sa.Column("assertion_key", sa.Text(), nullable=True),
        sa.Column("assertion_certificate", sa.Text(), nullable=True),
    ]


def upgrade() -> None:
    # recreate="never": a rebuild of upstream_providers would cascade-delete the identities.
    with op.batch_alter_table("upstream_providers", recreate="never") as batch:
        for column in _added():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("upstream_providers", recreate="never") as batch:
        for column in reversed(_added()):
            batch.drop_column(column.name)
