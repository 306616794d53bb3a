"""SQL queries for single-use client assertion ids (RFC 7523 §3) and rate-limit counters.

Both are one upsert whose outcome the database decides, so concurrent requests on any number of
nodes cannot both win: ``INSERT … ON CONFLICT DO NOTHING`` (did this call insert the jti?) and
``INSERT … ON CONFLICT DO UPDATE SET count = count + 1 RETURNING count``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite

from authgate.storage.sql.base import SqlBase, purge, purge_statement, upsert_insert
from authgate.storage.sql.tables import client_assertion_jtis, rate_limits

#: Counters of windows that started this long before the current one are deleted. Windows are
#: assumed to be at most this long (a longer window's live counter would be reset).
RATE_LIMIT_RETENTION = timedelta(days=1)


def _hit(dialect: Any) -> Any:
    insert_ = dialect.insert(rate_limits).values(
        key=bindparam("hit_key"), window_start=bindparam("hit_window"), count=bindparam("hits")
    )
    return insert_.on_conflict_do_update(
        index_elements=[rate_limits.c.key, rate_limits.c.window_start],
        set_={"count": rate_limits.c.count + bindparam("hits")},
    ).returning(rate_limits.c.count)


#: The counting upsert, built once per dialect, and the purge of old windows: they run on every
#: limited request, on the DBAPI connection (prepared.py).
_HIT = {"postgresql": _hit(postgresql), "sqlite": _hit(sqlite)}
_PURGE_WINDOWS = purge_statement(rate_limits, rate_limits.c.window_start < bindparam("before"))


class ReplayQueries(SqlBase):
    def consume_assertion_jti(
        self, client_id: str, jti: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Purge expired jtis, then insert this one; False if it is already there.

        On PostgreSQL a concurrent insert of the same jti makes this one wait for it to commit,
        then do nothing; on SQLite the write transactions run one at a time.
        """
        table = client_assertion_jtis
        with self._transaction(write=True) as conn:
            purge(conn, table, table.c.expires_at <= now)
            insert_ = upsert_insert(conn, table).values(
                client_id=client_id, jti=jti, expires_at=expires_at
            )
            query = insert_.on_conflict_do_nothing(
                index_elements=[table.c.client_id, table.c.jti]
            ).returning(table.c.jti)
            # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT.
            return conn.execute(query).first() is not None


class RateLimitQueries(SqlBase):
    def hit_rate_limit(self, key: str, window_start: datetime, now: datetime, hits: int = 1) -> int:
        """Count ``hits`` hits (0 reads the count); the first hit of a window also purges the
        counters of old windows."""
        hit = {"hit_key": key, "hit_window": window_start, "hits": hits}
        with self._raw_transaction(write=True) as db:
            row = db.first(_HIT[self._engine.dialect.name], hit)
            assert row is not None  # an upsert returns its row
            count = int(row["count"])
            if count == hits > 0:
                db.execute(_PURGE_WINDOWS, {"before": window_start - RATE_LIMIT_RETENTION})
        return count
