"""Revocation of grant families, shared by the token, app and secret queries.

Lock order is grants first, then tokens, in every writer, so PostgreSQL writers that meet on the
same family queue instead of deadlocking.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.engine import Connection

from authgate.storage.sql.tables import access_tokens, grants, refresh_tokens


def revoke_grants(conn: Connection, which: ColumnElement[bool], now: datetime) -> tuple[int, int]:
    """Revoke the grants matching ``which`` (a condition on ``grants``) and all their tokens.

    Returns (grants newly revoked, tokens newly revoked).
    """
    revoked_grants = conn.execute(
        update(grants).where(which, grants.c.revoked_at.is_(None)).values(revoked_at=now)
    ).rowcount
    family = select(grants.c.id).where(which)
    revoked_tokens = 0
    for table in (access_tokens, refresh_tokens):
        revoked_tokens += conn.execute(
            update(table)
            .where(table.c.grant_id.in_(family), table.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
    return revoked_grants, revoked_tokens
