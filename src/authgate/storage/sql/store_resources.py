"""SQL queries for resources: the audiences tokens may be issued for, with their scopes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, select, update

from authgate.core.models import Resource, ScopeInfo
from authgate.storage.sql.base import SqlBase, values_of
from authgate.storage.sql.tables import resources


def _to_resource(row: Row[Any]) -> Resource:
    fields = dict(row._mapping)
    fields["scopes"] = tuple(
        ScopeInfo(name=s["name"], description=s["description"]) for s in fields["scopes"]
    )
    fields["introspectors"] = tuple(fields["introspectors"])
    return Resource(**fields)


def _to_row(resource: Resource) -> dict[str, Any]:
    row = values_of(resource)
    row["scopes"] = [{"name": s.name, "description": s.description} for s in resource.scopes]
    row["introspectors"] = list(resource.introspectors)
    return row


_BY_IDENTIFIER = select(resources).where(resources.c.identifier == bindparam("identifier"))


class ResourceQueries(SqlBase):
    def create_resource(self, resource: Resource) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(resources).values(_to_row(resource)))

    def get_resource(self, resource_id: str) -> Resource | None:
        with self._transaction() as conn:
            row = conn.execute(select(resources).where(resources.c.id == resource_id)).first()
        return _to_resource(row) if row else None

    def get_resource_by_identifier(self, identifier: str) -> Resource | None:
        with self._transaction() as conn:
            row = conn.execute(_BY_IDENTIFIER, {"identifier": identifier}).first()
        return _to_resource(row) if row else None

    def list_resources(self) -> Sequence[Resource]:
        query = select(resources).order_by(resources.c.created_at, resources.c.id)
        with self._transaction() as conn:
            return [_to_resource(row) for row in conn.execute(query)]

    def update_resource(self, resource: Resource) -> None:
        changes = _to_row(resource)
        del changes["id"]
        with self._transaction(write=True) as conn:
            conn.execute(update(resources).where(resources.c.id == resource.id).values(changes))

    def delete_resource(self, resource_id: str) -> bool:
        with self._transaction(write=True) as conn:
            return (
                conn.execute(delete(resources).where(resources.c.id == resource_id)).rowcount == 1
            )
