"""Revocation of grant families, shared by the token, app, secret and user queries.

Lock order is codes first, then grants, then tokens, in every writer, so PostgreSQL writers
that meet on the same family queue instead of deadlocking. Codes come first because a
redemption holds its code's row lock until it has written the grant: a writer that deletes a
user's unredeemed codes waits for a redemption in flight, and its next statement then sees the
grant that redemption made.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, String, and_, delete, literal, select, update
from sqlalchemy.engine import Connection

from authgate.storage.sql.tables import access_tokens, authorization_codes, grants, refresh_tokens


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


def scope_holds(column: ColumnElement[str], scope: str) -> ColumnElement[bool]:
    """The space-separated scope in ``column`` holds the scope token ``scope``."""
    padded = literal(" ", String) + column + literal(" ", String)
    return padded.contains(f" {scope} ", autoescape=True)


def end_user_grants(
    conn: Connection, user_id: str, now: datetime, scope: str | None = None
) -> tuple[int, int]:
    """Delete the user's unredeemed codes, then revoke their grants and every token of them;
    with ``scope``, only the codes and grants whose scope holds it.

    Returns (grants newly revoked, codes deleted).
    """
    code_of_user = and_(
        authorization_codes.c.user_id == user_id, authorization_codes.c.consumed_at.is_(None)
    )
    grant_of_user = grants.c.user_id == user_id
    if scope is not None:
        code_of_user = and_(code_of_user, scope_holds(authorization_codes.c.scope, scope))
        grant_of_user = and_(grant_of_user, scope_holds(grants.c.scope, scope))
    codes = conn.execute(delete(authorization_codes).where(code_of_user)).rowcount
    revoked, _ = revoke_grants(conn, grant_of_user, now)
    return revoked, codes
