"""SQL queries of the background cleanup: expired rows deleted in small batches.

Each call is one short transaction that deletes at most ``limit`` rows, so a cleanup never
holds locks for long on a busy table; on PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several
nodes clean at once without waiting on each other (what one skips, a later batch takes).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Table, and_, delete, select, tuple_

from authgate.core.ports import ExpiredKind
from authgate.storage.sql.base import SqlBase
from authgate.storage.sql.tables import (
    access_tokens,
    authorization_codes,
    grants,
    refresh_tokens,
    sessions,
    upstream_transactions,
)

_EXPIRING: dict[str, Table] = {
    "sessions": sessions,
    "codes": authorization_codes,
    "access_tokens": access_tokens,
    "refresh_tokens": refresh_tokens,
    "upstream_transactions": upstream_transactions,
}


def _doomed(kind: ExpiredKind, before: datetime) -> tuple[Table, ColumnElement[bool]]:
    if kind == "grants":
        unreferenced = [
            ~select(table.c.id).where(table.c.grant_id == grants.c.id).exists()
            for table in (authorization_codes, access_tokens, refresh_tokens)
        ]
        return grants, and_(grants.c.created_at < before, *unreferenced)
    table = _EXPIRING[kind]
    return table, table.c.expires_at < before


class CleanupQueries(SqlBase):
    def purge_expired(self, kind: ExpiredKind, before: datetime, limit: int) -> int:
        table, which = _doomed(kind, before)
        key = list(table.primary_key.columns)
        batch = select(*key).where(which).limit(limit).with_for_update(skip_locked=True)
        with self._transaction(write=True) as conn:
            return conn.execute(delete(table).where(tuple_(*key).in_(batch))).rowcount
