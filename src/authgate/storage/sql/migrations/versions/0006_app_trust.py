"""What an operator opened to an app: the resources and scopes of its client_credentials
tokens (``service_access``), and whether it may be given authgate's own administrative scopes
(``admin_access``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Written by hand and frozen once landed. Both columns carry server defaults that open nothing:
an empty list and false. Every existing app therefore loses what these columns now govern until
an operator grants it (the release notes say so): least privilege by default.

The UPDATE triggers of 0005 are recreated with the two columns in their lists, so that a change
to them reaches every node's client cache like any other change to the app.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: The columns of ``apps`` whose change the UPDATE trigger reports, before and after.
APP_COLUMNS_0005 = (
    "id",
    "name",
    "icon",
    "redirect_uris",
    "client_type",
    "require_pkce",
    "token_endpoint_auth_method",
    "grant_types",
    "scope",
    "first_party",
    "dynamically_registered",
    "created_at",
    "updated_at",
    "application_type",
    "client_uri",
    "tos_uri",
    "policy_uri",
    "contacts",
    "jwks",
    "jwks_uri",
    "software_id",
    "software_version",
    "registration_token_hash",
    "metadata_document",
    "metadata_expires_at",
)
APP_COLUMNS_0006 = (*APP_COLUMNS_0005, "service_access", "admin_access")
_BUMP = "UPDATE client_changes SET generation = generation + 1 WHERE id = 1;"


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("service_access", JSON, nullable=False, server_default="[]"),
        sa.Column("admin_access", sa.Boolean(), nullable=False, server_default=sa.false()),
    ]


def _update_trigger(columns: tuple[str, ...]) -> None:
    watched = ", ".join(columns)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER apps_changed ON apps")
        op.execute(
            f"CREATE TRIGGER apps_changed AFTER INSERT OR DELETE OR UPDATE OF {watched} "
            "ON apps FOR EACH ROW EXECUTE FUNCTION authgate_clients_changed('id')"
        )
        return
    op.execute("DROP TRIGGER apps_updated")
    op.execute(f"CREATE TRIGGER apps_updated AFTER UPDATE OF {watched} ON apps BEGIN {_BUMP} END")


def upgrade() -> None:
    with op.batch_alter_table("apps", recreate="never") as batch:
        for column in _columns():
            batch.add_column(column)
    _update_trigger(APP_COLUMNS_0006)


def downgrade() -> None:
    _update_trigger(APP_COLUMNS_0005)
    # recreate="never": a rebuild would cascade-delete every secret, code, grant and token.
    with op.batch_alter_table("apps", recreate="never") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
