"""OpenID Connect: how a person signed in, carried from the session to the code and the grant,
the ``nonce`` of an authorization request, and whether a user's email address is verified.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Written by hand and frozen once landed. ``amr`` is the space-separated list of RFC 8176
authentication method references of the sign-in (``pwd`` for authgate's own password form);
``idp`` names the upstream provider the person signed in through (none for a local password).
Every session, code and grant that exists was made by the password form, so ``pwd`` is the
honest default of the existing rows. ``email_verified`` defaults to false: an address an
operator typed was never proven to reach the person.

Additive only: nodes still running the code of 0007 keep working while (and after) this
revision runs (they write rows without the new columns, which take their defaults).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _sign_in() -> list[sa.Column[object]]:
    return [
        sa.Column("amr", sa.String(), nullable=False, server_default="pwd"),
        sa.Column("idp", sa.String(), nullable=True),
    ]


_ADDED: dict[str, list[sa.Column[object]]] = {
    "users": [sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false())],
    "sessions": _sign_in(),
    "authorization_codes": [*_sign_in(), sa.Column("nonce", sa.Text(), nullable=True)],
    "grants": _sign_in(),
}


def upgrade() -> None:
    for table, columns in _ADDED.items():
        # recreate="never": a rebuild of users or grants would cascade-delete their children.
        with op.batch_alter_table(table, recreate="never") as batch:
            for column in columns:
                batch.add_column(column)


def downgrade() -> None:
    for table, columns in reversed(_ADDED.items()):
        with op.batch_alter_table(table, recreate="never") as batch:
            for column in reversed(columns):
                batch.drop_column(column.name)
