"""SQL queries for the audit log and the key/value settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Executable, Row, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from authgate.core.models import AuditEvent, AuditQuery
from authgate.storage.sql.base import Intent, SqlBase, values_of
from authgate.storage.sql.tables import audit_log, settings


def _to_event(row: Row[Any]) -> AuditEvent:
    return AuditEvent(**row._mapping)


def _audit_filters(query: AuditQuery) -> list[ColumnElement[bool]]:
    """``since`` is inclusive and ``until`` exclusive, so consecutive windows do not overlap."""
    filters: list[ColumnElement[bool]] = []
    if query.action is not None:
        filters.append(audit_log.c.action == query.action)
    if query.actor_id is not None:
        filters.append(audit_log.c.actor_id == query.actor_id)
    if query.target_id is not None:
        filters.append(audit_log.c.target_id == query.target_id)
    if query.since is not None:
        filters.append(audit_log.c.at >= query.since)
    if query.until is not None:
        filters.append(audit_log.c.at < query.until)
    return filters


# Revocation and consent append an event per request: on the DBAPI connection (prepared.py).
INSERT_EVENT = insert(audit_log)


class AuditQueries(SqlBase):
    def append_audit(self, event: AuditEvent) -> None:
        with self._raw_transaction(Intent.WRITE_ONE) as db:
            db.execute(INSERT_EVENT, values_of(event))

    def list_audit(self, query: AuditQuery) -> tuple[Sequence[AuditEvent], int]:
        filters = _audit_filters(query)
        page = (
            select(audit_log)
            .where(*filters)
            .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
            .limit(query.limit)
            .offset(query.offset)
        )
        count = select(func.count()).select_from(audit_log).where(*filters)
        with self._transaction() as conn:
            events = [_to_event(row) for row in conn.execute(page)]
            total = int(conn.execute(count).scalar_one())
        return events, total


class SettingQueries(SqlBase):
    def get_setting(self, key: str) -> Any | None:
        with self._transaction() as conn:
            row = conn.execute(select(settings.c.value).where(settings.c.key == key)).first()
        return row.value if row else None

    def set_setting(self, key: str, value: Any) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(_upsert_setting(conn.dialect.name, key, value))


def _upsert_setting(dialect: str, key: str, value: Any) -> Executable:
    if dialect == "postgresql":
        pg = postgresql.insert(settings).values(key=key, value=value)
        return pg.on_conflict_do_update(
            index_elements=[settings.c.key], set_={"value": pg.excluded.value}
        )
    lite = sqlite.insert(settings).values(key=key, value=value)
    return lite.on_conflict_do_update(
        index_elements=[settings.c.key], set_={"value": lite.excluded.value}
    )
