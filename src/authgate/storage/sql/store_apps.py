"""SQL queries for OAuth clients (apps) and their secrets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    LABEL_STYLE_TABLENAME_PLUS_COL,
    bindparam,
    delete,
    func,
    insert,
    select,
    true,
    union,
    update,
)

from authgate.core.models import App, AppSecret, ServiceAccess
from authgate.storage.sql import live_grants
from authgate.storage.sql.base import Intent, SqlBase, split_joined, upsert_insert, values_of
from authgate.storage.sql.revoke import revoke_grants
from authgate.storage.sql.tables import access_tokens, app_secrets, apps, grants, refresh_tokens


# A row as column → value: ``Row._mapping``, or what ``Runner.first()`` returns.
def _to_app(row: Mapping[Any, Any]) -> App:
    fields = dict(row)
    for name in ("redirect_uris", "grant_types", "contacts"):
        fields[name] = tuple(fields[name])
    fields["service_access"] = tuple(
        ServiceAccess(str(entry["resource"]), tuple(entry.get("scopes", ())))
        for entry in fields["service_access"] or ()
    )
    return App(**fields)


def _to_row(app: App) -> dict[str, Any]:
    row = values_of(app)
    for name in ("redirect_uris", "grant_types", "contacts"):
        row[name] = list(row[name])
    row["service_access"] = [
        {"resource": entry.resource, "scopes": list(entry.scopes)} for entry in app.service_access
    ]
    return row


#: When a dynamically registered app was last seen: its last token request, else its creation.
_last_seen = func.coalesce(apps.c.last_used_at, apps.c.created_at)


# Built once, run on the DBAPI connection (prepared.py): every token request looks up its
# client and secret.
_APP_BY_ID = select(apps).where(apps.c.id == bindparam("id"))
_SECRET_BY_PREFIX = select(app_secrets).where(app_secrets.c.prefix == bindparam("prefix"))
# The app and the secret with a prefix (whichever app it belongs to: the caller checks) in one
# statement, one snapshot; columns labelled ``apps_<column>`` and ``app_secrets_<column>``.
_APP_AND_SECRET = (
    select(apps, app_secrets)
    .select_from(apps.outerjoin(app_secrets, app_secrets.c.prefix == bindparam("prefix")))
    .where(apps.c.id == bindparam("id"))
    .set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)
)
_TOUCH_SECRET = (
    update(app_secrets)
    .where(app_secrets.c.id == bindparam("id"))
    .values(last_used_at=bindparam("at"))
)


def _to_secret(row: Mapping[Any, Any]) -> AppSecret:
    return AppSecret(**row)


class AppQueries(SqlBase):
    def create_app(self, app: App) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(apps).values(_to_row(app)))
        self._clients.changed(app.id)

    def get_app(self, app_id: str) -> App | None:
        return self._cached_client((app_id, None), lambda: (self._read_app(app_id), None))[0]

    def _read_app(self, app_id: str) -> App | None:
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_APP_BY_ID, {"id": app_id})
        return _to_app(row) if row else None

    def list_apps(self) -> Sequence[App]:
        query = select(apps).order_by(apps.c.created_at, apps.c.id)
        with self._transaction() as conn:
            return [_to_app(row._mapping) for row in conn.execute(query)]

    def update_app(self, app: App) -> None:
        changes = _to_row(app)
        del changes["id"]
        with self._transaction(write=True) as conn:
            conn.execute(update(apps).where(apps.c.id == app.id).values(changes))
        self._clients.changed(app.id)

    def upsert_app(self, app: App) -> None:
        """One statement, INSERT … ON CONFLICT (id) DO UPDATE: two writers cannot both insert."""
        row = _to_row(app)
        with self._transaction(write=True) as conn:
            insert_ = upsert_insert(conn, apps).values(row)
            replace = {name: insert_.excluded[name] for name in row if name != "id"}
            conn.execute(insert_.on_conflict_do_update(index_elements=[apps.c.id], set_=replace))
        self._clients.changed(app.id)

    def touch_app(self, app_id: str, at: datetime) -> None:
        query = update(apps).where(apps.c.id == app_id).values(last_used_at=at)
        with self._transaction(write=True) as conn:
            conn.execute(query)
        self._clients.touched_app(app_id, at)

    def count_dynamic_apps(self) -> int:
        query = (
            select(func.count()).select_from(apps).where(apps.c.dynamically_registered == true())
        )
        with self._transaction() as conn:
            return int(conn.execute(query).scalar_one())

    def list_stale_dynamic_apps(self, unused_since: datetime) -> Sequence[App]:
        """Least recently seen first (``last_used_at``, or ``created_at`` if never used)."""
        query = (
            select(apps)
            .where(apps.c.dynamically_registered == true(), _last_seen < unused_since)
            .order_by(_last_seen, apps.c.id)
        )
        with self._transaction() as conn:
            return [_to_app(row._mapping) for row in conn.execute(query)]

    def count_document_apps(self) -> int:
        query = select(func.count()).select_from(apps).where(apps.c.metadata_document == true())
        with self._transaction() as conn:
            return int(conn.execute(query).scalar_one())

    def list_stale_document_apps(self, unused_since: datetime) -> Sequence[App]:
        """Least recently seen first (``last_used_at``, or ``created_at`` if never used)."""
        query = (
            select(apps)
            .where(apps.c.metadata_document == true(), _last_seen < unused_since)
            .order_by(_last_seen, apps.c.id)
        )
        with self._transaction() as conn:
            return [_to_app(row._mapping) for row in conn.execute(query)]

    def delete_app(self, app_id: str) -> bool:
        """Delete the app; ON DELETE CASCADE removes its secrets, codes, grants and tokens."""
        with self._transaction(write=True) as conn:
            deleted = conn.execute(delete(apps).where(apps.c.id == app_id)).rowcount == 1
        self._clients.changed(app_id)
        return deleted

    def list_apps_authorized_by(self, user_id: str, now: datetime) -> Sequence[App]:
        live_grant = select(grants.c.id).where(
            grants.c.app_id == apps.c.id, grants.c.user_id == user_id, live_grants.is_live(now)
        )
        query = select(apps).where(live_grant.exists()).order_by(apps.c.created_at, apps.c.id)
        with self._transaction() as conn:
            return [_to_app(row._mapping) for row in conn.execute(query)]


class SecretQueries(SqlBase):
    def create_secret(self, secret: AppSecret) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(app_secrets).values(values_of(secret)))
        self._clients.changed(secret.app_id)

    def get_secret_by_prefix(self, prefix: str) -> AppSecret | None:
        with self._transaction() as conn:
            row = conn.execute(_SECRET_BY_PREFIX, {"prefix": prefix}).first()
        return _to_secret(row._mapping) if row else None

    def get_app_and_secret(
        self, app_id: str, secret_prefix: str
    ) -> tuple[App | None, AppSecret | None]:
        return self._cached_client(
            (app_id, secret_prefix), lambda: self._read_app_and_secret(app_id, secret_prefix)
        )

    def _read_app_and_secret(
        self, app_id: str, secret_prefix: str
    ) -> tuple[App | None, AppSecret | None]:
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_APP_AND_SECRET, {"id": app_id, "prefix": secret_prefix})
        if row is None:
            return None, None
        app, secret = split_joined(row, apps, app_secrets)
        return _to_app(app), (_to_secret(secret) if secret["id"] is not None else None)

    def list_secrets(self, app_id: str) -> Sequence[AppSecret]:
        query = (
            select(app_secrets)
            .where(app_secrets.c.app_id == app_id)
            .order_by(app_secrets.c.created_at, app_secrets.c.id)
        )
        with self._transaction() as conn:
            return [_to_secret(row._mapping) for row in conn.execute(query)]

    def delete_secret(self, secret_id: str, now: datetime) -> bool:
        """Revoke every grant a token of this secret belongs to, then delete the secret.

        A leaked secret may have minted tokens anywhere in a family, so the whole family goes.
        """
        issued_with = union(
            select(access_tokens.c.grant_id).where(access_tokens.c.secret_id == secret_id),
            select(refresh_tokens.c.grant_id).where(refresh_tokens.c.secret_id == secret_id),
        )
        grantless = update(access_tokens).where(
            access_tokens.c.secret_id == secret_id, access_tokens.c.revoked_at.is_(None)
        )
        with self._transaction(write=True) as conn:
            revoke_grants(conn, grants.c.id.in_(issued_with), now)
            conn.execute(grantless.values(revoked_at=now))  # client_credentials tokens
            deleted = conn.execute(delete(app_secrets).where(app_secrets.c.id == secret_id))
        self._clients.changed(None)  # whichever app it was
        return deleted.rowcount == 1

    def touch_secret(self, secret_id: str, at: datetime) -> None:
        with self._raw_transaction(Intent.WRITE_ONE) as db:
            db.execute(_TOUCH_SECRET, {"id": secret_id, "at": at})
        self._clients.touched_secret(secret_id, at)
