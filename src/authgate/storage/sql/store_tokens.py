"""SQL queries for authorization codes, grants and the access and refresh tokens of a grant.

Single-use rows are claimed with ``UPDATE … WHERE consumed_at IS NULL`` and the row count
decides who won, so two concurrent redemptions mint one family (DESIGN.md §4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    LABEL_STYLE_TABLENAME_PLUS_COL,
    Insert,
    Row,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from authgate.core.models import (
    AccessToken,
    AuditEvent,
    AuthorizationCode,
    Grant,
    LiveGrant,
    RefreshToken,
)
from authgate.storage.sql import live_grants
from authgate.storage.sql.base import Intent, SqlBase, split_joined, values_of
from authgate.storage.sql.prepared import Runner
from authgate.storage.sql.revoke import end_user_grants, revoke_grants
from authgate.storage.sql.store_audit import INSERT_EVENT
from authgate.storage.sql.tables import (
    access_tokens,
    audit_log,
    authorization_codes,
    grants,
    refresh_tokens,
    users,
)


# A row as column → value: ``Row._mapping``, or what ``Runner.first()`` returns.
def _to_code(row: Mapping[Any, Any]) -> AuthorizationCode:
    return AuthorizationCode(**row)


def _to_grant(row: Mapping[Any, Any]) -> Grant:
    return Grant(**row)


def _to_live_grant(row: Row[Any]) -> LiveGrant:
    values = dict(row._mapping)
    redirect_uri, last_used = values.pop("redirect_uri"), values.pop("last_used")
    return LiveGrant(Grant(**values), redirect_uri, last_used)


def _to_access(row: Mapping[Any, Any]) -> AccessToken:
    return AccessToken(**row)


def _to_refresh(row: Mapping[Any, Any]) -> RefreshToken:
    return RefreshToken(**row)


# The statements of the hot paths (token, introspection, refresh), built once: they run on the
# DBAPI connection, compiled once per dialect (prepared.py).
_INSERT_GRANT = insert(grants)
_INSERT_ACCESS = insert(access_tokens)
_INSERT_REFRESH = insert(refresh_tokens)
_CODE_BY_PREFIX = select(authorization_codes).where(
    authorization_codes.c.prefix == bindparam("prefix")
)
_GRANT_BY_ID = select(grants).where(grants.c.id == bindparam("id"))
_ACCESS_BY_PREFIX = select(access_tokens).where(access_tokens.c.prefix == bindparam("prefix"))
_REFRESH_BY_PREFIX = select(refresh_tokens).where(refresh_tokens.c.prefix == bindparam("prefix"))
# A refresh token, its grant and whether the grant's user is disabled, in one statement;
# columns labelled ``<table>_<column>``.
_REFRESH_AND_GRANT = (
    select(refresh_tokens, grants, users.c.disabled)
    .select_from(
        refresh_tokens.outerjoin(grants, grants.c.id == refresh_tokens.c.grant_id).outerjoin(
            users, users.c.id == grants.c.user_id
        )
    )
    .where(refresh_tokens.c.prefix == bindparam("prefix"))
    .set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)
)
_LOCK_LIVE_GRANT = (
    select(grants.c.id)
    .where(grants.c.id == bindparam("id"), grants.c.revoked_at.is_(None))
    .with_for_update()
)
_FAMILY_OF = select(refresh_tokens.c.grant_id).where(refresh_tokens.c.id == bindparam("id"))
_CLAIM_REFRESH = (
    update(refresh_tokens)
    .where(
        refresh_tokens.c.id == bindparam("old_id"),
        refresh_tokens.c.consumed_at.is_(None),
        refresh_tokens.c.revoked_at.is_(None),
    )
    .values(consumed_at=bindparam("now"))
)
_CLAIM_CODE = (
    update(authorization_codes)
    .where(
        authorization_codes.c.id == bindparam("code_id"),
        authorization_codes.c.consumed_at.is_(None),
    )
    .values(consumed_at=bindparam("now"), grant_id=bindparam("new_grant_id"))
)
_REVOKE_ACCESS = (
    update(access_tokens)
    .where(access_tokens.c.id == bindparam("id"), access_tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)


def _insert_from(table: Table, prefix: str, source: CTE) -> Insert:
    """``INSERT INTO table SELECT <one row of bound values> FROM source``: a row only if
    ``source`` returned one. The values are bound as ``<prefix>_<column>``."""
    values = (bindparam(f"{prefix}_{column.key}", type_=column.type) for column in table.columns)
    return insert(table).from_select(
        list(table.columns.keys()), select(*values).select_from(source)
    )


# On PostgreSQL the revocation and its audit event in one statement (a data-modifying WITH):
# atomic by itself, so it runs without BEGIN and COMMIT, one round trip instead of four. The
# event's values are bound as ``event_<column>``; it is inserted only if the token was revoked.
_REVOKE_ACCESS_WITH_EVENT = _insert_from(
    audit_log, "event", _REVOKE_ACCESS.returning(access_tokens.c.id).cte("revoked")
)


def _claim_then_insert(claim: Update, *inserts: tuple[Table, str]) -> Select[Any]:
    """``WITH claimed AS (<claim> RETURNING id), <INSERT … SELECT … FROM claimed>… SELECT
    count(*) AS claimed FROM claimed``: on PostgreSQL a claim and the rows it lets in, in one
    statement (its data-modifying parts see one snapshot, and the foreign keys are checked at
    its end). Each insert's values are bound as ``<prefix>_<column>``."""
    claimed = claim.returning(claim.table.c.id).cte("claimed")
    parts = [_insert_from(table, prefix, claimed).cte(prefix) for table, prefix in inserts]
    return select(func.count().label("claimed")).select_from(claimed).add_cte(*parts)


# On PostgreSQL a code's redemption (claim, grant, tokens) and a refresh token's rotation (lock
# of the live grant, claim, tokens) are one statement each, in a transaction: BEGIN, the
# statement and COMMIT instead of five or six round trips, and, since the COMMIT is sent only
# after the answer, a node that dies meanwhile leaves nothing behind. A rotation's claim holds
# the grant's row lock first, as ``_lock_live_grant`` does.
_REDEEM_CODE = _claim_then_insert(
    _CLAIM_CODE, (grants, "grant"), (access_tokens, "access"), (refresh_tokens, "refresh")
)
_REDEEM_CODE_WITHOUT_REFRESH = _claim_then_insert(
    _CLAIM_CODE, (grants, "grant"), (access_tokens, "access")
)
_ROTATE_REFRESH = _claim_then_insert(
    _CLAIM_REFRESH.where(
        refresh_tokens.c.grant_id == bindparam("grant_id"),
        _LOCK_LIVE_GRANT.exists(),
    ),
    (access_tokens, "access"),
    (refresh_tokens, "refresh"),
)


def _prefixed(prefix: str, model: Any) -> dict[str, Any]:
    return {f"{prefix}_{key}": value for key, value in values_of(model).items()}


def _insert_pair(db: Runner, access: AccessToken, refresh: RefreshToken | None) -> None:
    db.execute(_INSERT_ACCESS, values_of(access))
    if refresh is not None:
        db.execute(_INSERT_REFRESH, values_of(refresh))


def _lock_live_grant(db: Runner, grant_id: str) -> bool:
    """Lock the grant row (PostgreSQL) and say whether it exists and is unrevoked.

    Holding the lock until commit orders us against ``revoke_grant``, which updates the grant
    row first: either it sees the tokens we insert, or we see its ``revoked_at``.
    """
    return db.first(_LOCK_LIVE_GRANT, {"id": grant_id}) is not None


class CodeQueries(SqlBase):
    def create_code(self, code: AuthorizationCode) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(insert(authorization_codes).values(values_of(code)))

    def get_code_by_prefix(self, prefix: str) -> AuthorizationCode | None:
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_CODE_BY_PREFIX, {"prefix": prefix})
        return _to_code(row) if row else None

    def redeem_code(
        self,
        code_id: str,
        now: datetime,
        grant: Grant,
        access: AccessToken,
        refresh: RefreshToken | None,
    ) -> bool:
        claim = {"code_id": code_id, "now": now, "new_grant_id": grant.id}
        # A transaction on PostgreSQL too, not one autocommitted statement like revocation:
        # such a statement still commits when the node dies while it waits for a lock, and the
        # code would be consumed without the client ever getting its tokens
        # (tests/faults/test_process_kill.py).
        if not self._sqlite:
            statement = _REDEEM_CODE if refresh else _REDEEM_CODE_WITHOUT_REFRESH
            params = claim | _prefixed("grant", grant) | _prefixed("access", access)
            if refresh is not None:
                params |= _prefixed("refresh", refresh)
            with self._raw_transaction(Intent.WRITE) as db:
                row = db.first(statement, params)
            return row is not None and row["claimed"] == 1
        with self._raw_transaction(Intent.WRITE) as db:
            if db.execute(_CLAIM_CODE, claim) != 1:
                return False
            db.execute(_INSERT_GRANT, values_of(grant))
            _insert_pair(db, access, refresh)
        return True


class TokenQueries(SqlBase):
    def list_live_grants(
        self,
        user_id: str,
        now: datetime,
        *,
        app_id: str | None = None,
        resource: str | None = None,
        limit: int | None = None,
    ) -> Sequence[LiveGrant]:
        last_used = (
            select(func.max(access_tokens.c.created_at))
            .where(access_tokens.c.grant_id == grants.c.id)
            .scalar_subquery()
        )
        redirect_uri = (
            select(authorization_codes.c.redirect_uri)
            .where(authorization_codes.c.grant_id == grants.c.id)
            .limit(1)
            .scalar_subquery()
        )
        query = (
            select(grants, redirect_uri.label("redirect_uri"), last_used.label("last_used"))
            .where(grants.c.user_id == user_id, live_grants.is_live(now))
            .order_by(grants.c.created_at.desc(), grants.c.id)
            .limit(limit)
        )
        if app_id is not None:
            query = query.where(grants.c.app_id == app_id)
        if resource is not None:
            query = query.where(grants.c.resource == resource)
        with self._transaction() as conn:
            rows = conn.execute(query).all()
        return [_to_live_grant(row) for row in rows]

    def get_grant(self, grant_id: str) -> Grant | None:
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_GRANT_BY_ID, {"id": grant_id})
        return _to_grant(row) if row else None

    def get_access_token_by_prefix(self, prefix: str) -> AccessToken | None:
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_ACCESS_BY_PREFIX, {"prefix": prefix})
        return _to_access(row) if row else None

    def get_refresh_token_by_prefix(self, prefix: str) -> RefreshToken | None:
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_REFRESH_BY_PREFIX, {"prefix": prefix})
        return _to_refresh(row) if row else None

    def get_refresh_token_and_grant(
        self, prefix: str
    ) -> tuple[RefreshToken | None, Grant | None, bool]:
        with self._raw_transaction(Intent.READ_ONE) as db:
            row = db.first(_REFRESH_AND_GRANT, {"prefix": prefix})
        if row is None:
            return None, None, False
        user_disabled = bool(row.pop("users_disabled"))
        token, grant = split_joined(row, refresh_tokens, grants)
        found = _to_grant(grant) if grant["id"] is not None else None
        return _to_refresh(token), found, user_disabled

    def create_access_token(self, access: AccessToken) -> None:
        with self._raw_transaction(Intent.WRITE_ONE) as db:
            _insert_pair(db, access, None)

    def rotate_refresh_token(
        self, old_id: str, now: datetime, access: AccessToken, refresh: RefreshToken
    ) -> bool:
        if not self._sqlite:
            params = {
                "old_id": old_id,
                "now": now,
                "grant_id": refresh.grant_id,
                "id": refresh.grant_id,
            }
            params |= _prefixed("access", access) | _prefixed("refresh", refresh)
            with self._raw_transaction(Intent.WRITE) as db:
                row = db.first(_ROTATE_REFRESH, params)
            return row is not None and row["claimed"] == 1
        with self._raw_transaction(Intent.WRITE) as db:
            family = db.first(_FAMILY_OF, {"id": old_id})
            if family is None or not _lock_live_grant(db, family["grant_id"]):
                return False
            if db.execute(_CLAIM_REFRESH, {"old_id": old_id, "now": now}) != 1:
                return False
            _insert_pair(db, access, refresh)
        return True

    def issue_in_family(
        self, grant_id: str, access: AccessToken, refresh: RefreshToken | None
    ) -> bool:
        with self._raw_transaction(Intent.WRITE) as db:
            if not _lock_live_grant(db, grant_id):
                return False
            _insert_pair(db, access, refresh)
        return True

    def revoke_grant(self, grant_id: str, now: datetime, event: AuditEvent | None = None) -> bool:
        with self._transaction(write=True) as conn:
            revoked = sum(revoke_grants(conn, grants.c.id == grant_id, now)) > 0
            if revoked and event is not None:
                conn.execute(INSERT_EVENT, values_of(event))
        return revoked

    def revoke_access_token(
        self, token_id: str, now: datetime, event: AuditEvent | None = None
    ) -> bool:
        revoke = {"id": token_id, "now": now}
        if event is not None and not self._sqlite:
            with self._raw_transaction(Intent.WRITE_ONE) as db:
                return (
                    db.execute(_REVOKE_ACCESS_WITH_EVENT, revoke | _prefixed("event", event)) == 1
                )
        with self._raw_transaction(Intent.WRITE) as db:
            revoked = db.execute(_REVOKE_ACCESS, revoke) == 1
            if revoked and event is not None:
                db.execute(INSERT_EVENT, values_of(event))
        return revoked

    def revoke_user_app(self, user_id: str, app_id: str, now: datetime) -> int:
        theirs = and_(grants.c.user_id == user_id, grants.c.app_id == app_id)
        stray_access = update(access_tokens).where(
            access_tokens.c.user_id == user_id,
            access_tokens.c.app_id == app_id,
            access_tokens.c.revoked_at.is_(None),
        )
        codes = delete(authorization_codes).where(
            authorization_codes.c.user_id == user_id, authorization_codes.c.app_id == app_id
        )
        with self._transaction(write=True) as conn:
            conn.execute(codes)  # codes first: the lock order of revoke.py
            revoked_grants, _ = revoke_grants(conn, theirs, now)
            conn.execute(stray_access.values(revoked_at=now))
        return revoked_grants

    def revoke_user_grants(
        self, user_id: str, now: datetime, *, scope: str | None = None
    ) -> tuple[int, int]:
        with self._transaction(write=True) as conn:
            return end_user_grants(conn, user_id, now, scope)

    def has_consented(self, user_id: str, app_id: str) -> bool:
        code = select(authorization_codes.c.id).where(
            authorization_codes.c.user_id == user_id, authorization_codes.c.app_id == app_id
        )
        grant = select(grants.c.id).where(
            grants.c.user_id == user_id, grants.c.app_id == app_id, grants.c.revoked_at.is_(None)
        )
        with self._transaction() as conn:
            return bool(conn.execute(select(code.exists() | grant.exists())).scalar())
