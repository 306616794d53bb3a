"""SQL queries for users, browser sessions and personal API tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, select, update

from authgate.core.models import ApiToken, Session, User
from authgate.storage.sql.base import Intent, SqlBase, values_of
from authgate.storage.sql.revoke import end_user_grants
from authgate.storage.sql.tables import api_tokens, sessions, users


def _to_user(row: Mapping[Any, Any]) -> User:
    """``Row._mapping``, or what ``Runner.first()`` returns."""
    return User(**row)


def _to_session(row: Row[Any]) -> Session:
    return Session(**row._mapping)


def _to_api_token(row: Row[Any]) -> ApiToken:
    return ApiToken(**row._mapping)


# Built once, run on the DBAPI connection (prepared.py): introspection and every bearer-token
# call of the management API look up a user.
_USER_BY_ID = select(users).where(users.c.id == bindparam("id"))


class UserQueries(SqlBase):
    def create_user(self, user: User) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(users).values(values_of(user)))

    def get_user(self, user_id: str) -> User | None:
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_USER_BY_ID, {"id": user_id})
        return _to_user(row) if row else None

    def get_user_by_username(self, username: str) -> User | None:
        with self._transaction() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        return _to_user(row._mapping) if row else None

    def list_users(self) -> Sequence[User]:
        query = select(users).order_by(users.c.created_at, users.c.id)
        with self._transaction() as conn:
            return [_to_user(row._mapping) for row in conn.execute(query)]

    def update_user(self, user: User) -> None:
        changes = values_of(user)
        del changes["id"]
        with self._transaction(write=True) as conn:
            conn.execute(update(users).where(users.c.id == user.id).values(changes))

    def count_users(self) -> int:
        with self._transaction() as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())

    def delete_user(self, user_id: str, now: datetime) -> bool:
        with self._transaction(write=True) as conn:
            # Ended first, in the lock order of revoke.py; the foreign keys then delete the
            # sessions, API tokens, codes, grants and tokens with the user.
            end_user_grants(conn, user_id, now)
            return conn.execute(delete(users).where(users.c.id == user_id)).rowcount == 1


class SessionQueries(SqlBase):
    def create_session(self, session: Session) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(sessions).values(values_of(session)))

    def get_session_by_hash(self, token_hash: str) -> Session | None:
        query = select(sessions).where(sessions.c.token_hash == token_hash)
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return _to_session(row) if row else None

    def delete_session(self, session_id: str) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(delete(sessions).where(sessions.c.id == session_id))

    def delete_user_sessions(self, user_id: str) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(delete(sessions).where(sessions.c.user_id == user_id))


class ApiTokenQueries(SqlBase):
    def create_api_token(self, token: ApiToken) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(api_tokens).values(values_of(token)))

    def get_api_token_by_prefix(self, prefix: str) -> ApiToken | None:
        query = select(api_tokens).where(api_tokens.c.prefix == prefix)
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return _to_api_token(row) if row else None

    def list_api_tokens(self, user_id: str) -> Sequence[ApiToken]:
        query = (
            select(api_tokens)
            .where(api_tokens.c.user_id == user_id)
            .order_by(api_tokens.c.created_at, api_tokens.c.id)
        )
        with self._transaction() as conn:
            return [_to_api_token(row) for row in conn.execute(query)]

    def delete_api_token(self, token_id: str) -> bool:
        with self._transaction(write=True) as conn:
            result = conn.execute(delete(api_tokens).where(api_tokens.c.id == token_id))
        return result.rowcount == 1

    def touch_api_token(self, token_id: str, at: datetime) -> None:
        query = update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=at)
        with self._transaction(write=True) as conn:
            conn.execute(query)
