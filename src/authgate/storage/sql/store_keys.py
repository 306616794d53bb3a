"""SQL queries for the JWS signing keys and their rotation (next → active → retiring → gone).

Rotation claims the next key with ``UPDATE … WHERE activated_at IS NULL AND retired_at IS
NULL`` and the row count decides who won, like the single-use rows of ``store_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select, update

from authgate.core.models import SigningKey
from authgate.storage.sql.base import SqlBase, values_of
from authgate.storage.sql.tables import signing_keys


def _to_key(row: Row[Any]) -> SigningKey:
    return SigningKey(**row._mapping)


class KeyQueries(SqlBase):
    def create_signing_key(self, key: SigningKey) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(signing_keys).values(values_of(key)))

    def list_signing_keys(self) -> Sequence[SigningKey]:
        query = select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.kid)
        with self._transaction() as conn:
            return [_to_key(row) for row in conn.execute(query)]

    def activate_signing_key(self, kid: str, now: datetime, retire_until: datetime) -> bool:
        """Make the next key ``kid`` active and retire every other active key, or do nothing.

        Two nodes activating the *same* key meet on its row: the second UPDATE waits, then
        finds ``activated_at`` set and hits nothing. Two nodes activating *different* next keys
        would each retire only the active keys their snapshot shows (PostgreSQL, READ
        COMMITTED) and could leave two keys active, so every unretired key is locked first, in
        ``kid`` order; the rotations then run one after the other. On SQLite the write
        transaction (BEGIN IMMEDIATE) already serialises them.
        """
        unretired = (
            select(signing_keys.c.kid)
            .where(signing_keys.c.retired_at.is_(None))
            .order_by(signing_keys.c.kid)
            .with_for_update()
        )
        claim = (
            update(signing_keys)
            .where(
                signing_keys.c.kid == kid,
                signing_keys.c.activated_at.is_(None),
                signing_keys.c.retired_at.is_(None),
            )
            .values(activated_at=now)
        )
        retire = (
            update(signing_keys)
            .where(
                signing_keys.c.activated_at.is_not(None),
                signing_keys.c.retired_at.is_(None),
                signing_keys.c.kid != kid,
            )
            .values(retired_at=now, expires_at=retire_until)
        )
        with self._transaction(write=True) as conn:
            conn.execute(unretired).all()
            if conn.execute(claim).rowcount != 1:
                return False
            conn.execute(retire)
        return True

    def delete_next_signing_key(self, kid: str) -> bool:
        query = delete(signing_keys).where(
            signing_keys.c.kid == kid,
            signing_keys.c.activated_at.is_(None),
            signing_keys.c.retired_at.is_(None),
        )
        with self._transaction(write=True) as conn:
            return conn.execute(query).rowcount == 1

    def delete_expired_signing_keys(self, now: datetime) -> int:
        query = delete(signing_keys).where(signing_keys.c.expires_at <= now)
        with self._transaction(write=True) as conn:
            return conn.execute(query).rowcount
