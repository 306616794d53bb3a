"""When a grant is live, shared by the queries that list a user's apps and grants.

A grant is live while it is not revoked and still holds a token that works: a refresh token
neither revoked, consumed (rotated) nor expired, or an access token neither revoked nor
expired. A grant whose tokens have all run out is no longer something the user has to withdraw.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select

from authgate.storage.sql.tables import access_tokens, grants, refresh_tokens


def is_live(now: datetime) -> ColumnElement[bool]:
    """The condition on ``grants`` (correlated: use it in a query over ``grants``)."""
    live_refresh = select(refresh_tokens.c.id).where(
        refresh_tokens.c.grant_id == grants.c.id,
        refresh_tokens.c.revoked_at.is_(None),
        refresh_tokens.c.consumed_at.is_(None),
        refresh_tokens.c.expires_at > now,
    )
    live_access = select(access_tokens.c.id).where(
        access_tokens.c.grant_id == grants.c.id,
        access_tokens.c.revoked_at.is_(None),
        access_tokens.c.expires_at > now,
    )
    return and_(grants.c.revoked_at.is_(None), or_(live_refresh.exists(), live_access.exists()))
