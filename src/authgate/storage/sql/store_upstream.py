"""SQL queries for sign-in through upstream OpenID Providers: the providers, the identities
linked to users, and the single-use sign-in transactions.

A transaction is consumed by ``DELETE … WHERE state_hash = … AND expires_at > now`` and the row
count decides who won: two nodes finishing one callback at once see one row go, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update

from authgate.core.models import UpstreamIdentity, UpstreamProvider, UpstreamTransaction, User
from authgate.storage.sql.base import SqlBase, values_of
from authgate.storage.sql.tables import (
    upstream_identities,
    upstream_providers,
    upstream_transactions,
    users,
)

_LISTS = ("allowed_domains", "required_values", "admin_values")


def _to_provider(row: Row[Any]) -> UpstreamProvider:
    fields = dict(row._mapping)
    for name in _LISTS:
        fields[name] = tuple(fields[name] or ())
    return UpstreamProvider(**fields)


def _provider_row(provider: UpstreamProvider) -> dict[str, Any]:
    row = values_of(provider)
    for name in _LISTS:
        row[name] = list(row[name])
    return row


class UpstreamQueries(SqlBase):
    def create_upstream_provider(self, provider: UpstreamProvider) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(upstream_providers).values(_provider_row(provider)))

    def get_upstream_provider(self, provider_id: str) -> UpstreamProvider | None:
        query = select(upstream_providers).where(upstream_providers.c.id == provider_id)
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return _to_provider(row) if row else None

    def list_upstream_providers(self) -> Sequence[UpstreamProvider]:
        query = select(upstream_providers).order_by(upstream_providers.c.id)
        with self._transaction() as conn:
            return [_to_provider(row) for row in conn.execute(query)]

    def update_upstream_provider(self, provider: UpstreamProvider) -> None:
        changes = _provider_row(provider)
        del changes["id"], changes["created_at"]
        query = (
            update(upstream_providers).where(upstream_providers.c.id == provider.id).values(changes)
        )
        with self._transaction(write=True) as conn:
            conn.execute(query)

    def delete_upstream_provider(self, provider_id: str) -> bool:
        query = delete(upstream_providers).where(upstream_providers.c.id == provider_id)
        with self._transaction(write=True) as conn:
            return conn.execute(query).rowcount == 1

    def get_upstream_identity(self, provider_id: str, subject: str) -> UpstreamIdentity | None:
        query = select(upstream_identities).where(
            upstream_identities.c.provider_id == provider_id,
            upstream_identities.c.subject == subject,
        )
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return UpstreamIdentity(**row._mapping) if row else None

    def list_upstream_identities(self, user_id: str) -> Sequence[UpstreamIdentity]:
        query = (
            select(upstream_identities)
            .where(upstream_identities.c.user_id == user_id)
            .order_by(upstream_identities.c.provider_id, upstream_identities.c.subject)
        )
        with self._transaction() as conn:
            return [UpstreamIdentity(**row._mapping) for row in conn.execute(query)]

    def create_upstream_identity(self, identity: UpstreamIdentity) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(upstream_identities).values(values_of(identity)))

    def touch_upstream_identity(self, provider_id: str, subject: str, at: datetime) -> None:
        query = (
            update(upstream_identities)
            .where(
                upstream_identities.c.provider_id == provider_id,
                upstream_identities.c.subject == subject,
            )
            .values(last_sign_in_at=at)
        )
        with self._transaction(write=True) as conn:
            conn.execute(query)

    def find_users_by_email(self, email: str) -> Sequence[User]:
        query = select(users).where(func.lower(users.c.email) == email.lower()).limit(2)
        with self._transaction() as conn:
            return [User(**row._mapping) for row in conn.execute(query)]

    def create_upstream_transaction(self, transaction: UpstreamTransaction) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(upstream_transactions).values(values_of(transaction)))

    def consume_upstream_transaction(
        self, state_hash: str, now: datetime
    ) -> UpstreamTransaction | None:
        """Delete the unexpired transaction and return it, or None (unknown, expired, or
        consumed by another request first: only the request whose DELETE hit the row wins)."""
        which = upstream_transactions.c.state_hash == state_hash
        with self._transaction(write=True) as conn:
            row = conn.execute(select(upstream_transactions).where(which)).first()
            if row is None:
                return None
            gone = conn.execute(
                delete(upstream_transactions).where(which, upstream_transactions.c.expires_at > now)
            ).rowcount
        return UpstreamTransaction(**row._mapping) if gone == 1 else None
