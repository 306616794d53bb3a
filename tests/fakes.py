"""In-memory test doubles for the ports of ``authgate.core.ports``.

``InMemoryStore`` keeps dicts behind one lock and honours the same contract as ``SqlStore``
(the storage contract suite runs against both): unique keys raise ``DuplicateKeyError``,
references to missing parents raise ``ValueError``, deletes cascade like the foreign keys do,
and every datetime comes back as aware UTC.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from authgate.core.flows import Flow, FlowQuery, FlowStep, StepPosition
from authgate.core.models import (
    AccessToken,
    ApiToken,
    App,
    AppSecret,
    AuditEvent,
    AuditQuery,
    AuthorizationCode,
    Grant,
    LiveGrant,
    RefreshToken,
    Resource,
    Session,
    SigningKey,
    UpstreamIdentity,
    UpstreamProvider,
    UpstreamTransaction,
    User,
)
from authgate.core.ports import DuplicateKeyError, ExpiredKind

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

M = TypeVar("M", bound="DataclassInstance")

#: Like the SQL store: the first hit of a window drops counters of windows this much older.
RATE_LIMIT_RETENTION = timedelta(days=1)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime given to the store: {value!r}")
    return value.astimezone(UTC)


def _own_jwks(app: App) -> App:
    """A copy that shares no mutable JSON with the caller (the database would not)."""
    return app if app.jwks is None else dataclasses.replace(app, jwks=copy.deepcopy(app.jwks))


def _utc(model: M) -> M:
    """The model with every datetime field normalised to UTC, as the database would."""
    changes: dict[str, datetime] = {}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"naive datetime given to the store: {value!r}")
            changes[f.name] = value.astimezone(UTC)
    return dataclasses.replace(model, **changes) if changes else model


class _Table(dict[str, Any]):
    """Rows by id, with the unique columns (besides id) that must stay unique."""

    def __init__(self, *unique: str) -> None:
        super().__init__()
        self.unique = unique

    def check_unique(self, row: Any, replacing: str | None = None) -> None:
        if replacing is None and row.id in self:
            raise DuplicateKeyError(f"duplicate id {row.id!r}")
        for column in self.unique:
            value = getattr(row, column)
            if any(getattr(o, column) == value and o.id != row.id for o in self.values()):
                raise DuplicateKeyError(f"duplicate {column}")


class InMemoryStore:
    """A ``Store`` for fast core tests. One lock; every method is atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.users = _Table("username")
        self.sessions = _Table("token_hash")
        self.api_tokens = _Table("prefix")
        self.apps = _Table()
        self.secrets = _Table("prefix")
        self.codes = _Table("prefix")
        self.grants = _Table()
        self.access = _Table("prefix")
        self.refresh = _Table("prefix")
        self.resources = _Table("identifier")
        self.signing_keys: dict[str, SigningKey] = {}  # by kid
        self.audit = _Table()
        self.settings: dict[str, Any] = {}
        self.assertion_jtis: dict[tuple[str, str], datetime] = {}  # (client_id, jti) → expiry
        self.rate_limits: dict[tuple[str, datetime], int] = {}  # (key, window_start) → hits
        self.flows: dict[str, Flow] = {}
        self.flow_steps: dict[str, FlowStep] = {}
        self.upstream_providers: dict[str, UpstreamProvider] = {}
        self.upstream_identities: dict[tuple[str, str], UpstreamIdentity] = {}
        self.upstream_transactions: dict[str, UpstreamTransaction] = {}

    # -- helpers ---------------------------------------------------------------------------

    def _insert(self, table: _Table, row: Any, **parents: tuple[_Table, str | None]) -> None:
        row = _utc(row)
        table.check_unique(row)
        for name, (parent, key) in parents.items():
            if key is not None and key not in parent:
                raise ValueError(f"{name} {key!r} does not exist")
        table[row.id] = row

    def _update(self, table: _Table, row: Any) -> None:
        if row.id in table:
            row = _utc(row)
            table.check_unique(row, replacing=row.id)
            table[row.id] = row

    @staticmethod
    def _sorted(rows: Iterable[M], key: Callable[[M], Any]) -> list[M]:
        return sorted(rows, key=key)

    def _revoke_where(self, table: _Table, match: Callable[[Any], bool], now: datetime) -> int:
        hits = [t for t in table.values() if match(t) and t.revoked_at is None]
        for token in hits:
            table[token.id] = dataclasses.replace(token, revoked_at=now.astimezone(UTC))
        return len(hits)

    def _revoke_grants(self, grant_ids: set[str], now: datetime) -> tuple[int, int]:
        revoked = self._revoke_where(self.grants, lambda g: g.id in grant_ids, now)
        tokens = sum(
            self._revoke_where(table, lambda t: t.grant_id in grant_ids, now)
            for table in (self.access, self.refresh)
        )
        return revoked, tokens

    def _insert_pair(self, access: AccessToken, refresh: RefreshToken | None) -> None:
        pending: list[tuple[_Table, AccessToken | RefreshToken]] = [(self.access, _utc(access))]
        if refresh is not None:
            pending.append((self.refresh, _utc(refresh)))
        for table, token in pending:  # check everything before writing anything
            table.check_unique(token)
            self._check_token_parents(token)
        for table, token in pending:
            table[token.id] = token

    def _check_token_parents(self, token: AccessToken | RefreshToken) -> None:
        if token.app_id not in self.apps:
            raise ValueError(f"app {token.app_id!r} does not exist")
        if token.grant_id is not None and token.grant_id not in self.grants:
            raise ValueError(f"grant {token.grant_id!r} does not exist")
        if token.secret_id is not None and token.secret_id not in self.secrets:
            raise ValueError(f"secret {token.secret_id!r} does not exist")

    # -- users, sessions, API tokens -------------------------------------------------------

    def create_user(self, user: User) -> None:
        with self._lock:
            self._insert(self.users, user)

    def get_user(self, user_id: str) -> User | None:
        with self._lock:
            return self.users.get(user_id)

    def get_user_by_username(self, username: str) -> User | None:
        with self._lock:
            return next((u for u in self.users.values() if u.username == username), None)

    def list_users(self) -> Sequence[User]:
        with self._lock:
            return self._sorted(self.users.values(), lambda u: (u.created_at, u.id))

    def update_user(self, user: User) -> None:
        with self._lock:
            self._update(self.users, user)

    def count_users(self) -> int:
        with self._lock:
            return len(self.users)

    def delete_user(self, user_id: str, now: datetime) -> bool:
        with self._lock:
            self.revoke_user_grants(user_id, now)
            if self.users.pop(user_id, None) is None:
                return False
            # As the foreign keys do: everything of the user goes with it.
            gone = {g.id for g in self.grants.values() if g.user_id == user_id}
            for table, match in (
                (self.sessions, lambda r: r.user_id == user_id),
                (self.api_tokens, lambda r: r.user_id == user_id),
                (self.codes, lambda r: r.user_id == user_id),
                (self.access, lambda r: r.grant_id in gone),
                (self.refresh, lambda r: r.grant_id in gone),
                (self.grants, lambda r: r.id in gone),
            ):
                for row in [r for r in table.values() if match(r)]:
                    del table[row.id]
            for key in [k for k, i in self.upstream_identities.items() if i.user_id == user_id]:
                del self.upstream_identities[key]
            return True

    def create_session(self, session: Session) -> None:
        with self._lock:
            self._insert(self.sessions, session, user=(self.users, session.user_id))

    def get_session_by_hash(self, token_hash: str) -> Session | None:
        with self._lock:
            return next((s for s in self.sessions.values() if s.token_hash == token_hash), None)

    def delete_session(self, session_id: str) -> None:
        with self._lock:
            self.sessions.pop(session_id, None)

    def delete_user_sessions(self, user_id: str) -> None:
        with self._lock:
            for s in [s for s in self.sessions.values() if s.user_id == user_id]:
                del self.sessions[s.id]

    def create_api_token(self, token: ApiToken) -> None:
        with self._lock:
            self._insert(self.api_tokens, token, user=(self.users, token.user_id))

    def get_api_token_by_prefix(self, prefix: str) -> ApiToken | None:
        with self._lock:
            return next((t for t in self.api_tokens.values() if t.prefix == prefix), None)

    def list_api_tokens(self, user_id: str) -> Sequence[ApiToken]:
        with self._lock:
            mine = [t for t in self.api_tokens.values() if t.user_id == user_id]
            return self._sorted(mine, lambda t: (t.created_at, t.id))

    def delete_api_token(self, token_id: str) -> bool:
        with self._lock:
            return self.api_tokens.pop(token_id, None) is not None

    def touch_api_token(self, token_id: str, at: datetime) -> None:
        with self._lock:
            if token_id in self.api_tokens:
                token = self.api_tokens[token_id]
                self.api_tokens[token_id] = _utc(dataclasses.replace(token, last_used_at=at))

    # -- apps and secrets ------------------------------------------------------------------

    def create_app(self, app: App) -> None:
        with self._lock:
            self._insert(self.apps, _own_jwks(app))

    def get_app(self, app_id: str) -> App | None:
        with self._lock:
            app = self.apps.get(app_id)
            return _own_jwks(app) if app else None

    def list_apps(self) -> Sequence[App]:
        with self._lock:
            apps = self._sorted(self.apps.values(), lambda a: (a.created_at, a.id))
            return [_own_jwks(a) for a in apps]

    def update_app(self, app: App) -> None:
        with self._lock:
            self._update(self.apps, _own_jwks(app))

    def upsert_app(self, app: App) -> None:
        with self._lock:
            if app.id in self.apps:
                self._update(self.apps, _own_jwks(app))
            else:
                self._insert(self.apps, _own_jwks(app))

    def touch_app(self, app_id: str, at: datetime) -> None:
        with self._lock:
            if app_id in self.apps:
                app = self.apps[app_id]
                self.apps[app_id] = _utc(dataclasses.replace(app, last_used_at=at))

    def count_dynamic_apps(self) -> int:
        with self._lock:
            return sum(1 for a in self.apps.values() if a.dynamically_registered)

    def list_stale_dynamic_apps(self, unused_since: datetime) -> Sequence[App]:
        unused_since = _aware(unused_since)
        with self._lock:

            def last_seen(app: App) -> datetime:
                return app.last_used_at or app.created_at

            stale = [
                a
                for a in self.apps.values()
                if a.dynamically_registered and last_seen(a) < unused_since
            ]
            return [_own_jwks(a) for a in self._sorted(stale, lambda a: (last_seen(a), a.id))]

    def count_document_apps(self) -> int:
        with self._lock:
            return sum(1 for a in self.apps.values() if a.metadata_document)

    def list_stale_document_apps(self, unused_since: datetime) -> Sequence[App]:
        unused_since = _aware(unused_since)
        with self._lock:

            def last_seen(app: App) -> datetime:
                return app.last_used_at or app.created_at

            stale = [
                a for a in self.apps.values() if a.metadata_document and last_seen(a) < unused_since
            ]
            return [_own_jwks(a) for a in self._sorted(stale, lambda a: (last_seen(a), a.id))]

    def delete_app(self, app_id: str) -> bool:
        with self._lock:
            if self.apps.pop(app_id, None) is None:
                return False
            for table in (self.secrets, self.codes, self.grants, self.access, self.refresh):
                for row in [r for r in table.values() if r.app_id == app_id]:
                    del table[row.id]
            return True

    def list_apps_authorized_by(self, user_id: str, now: datetime) -> Sequence[App]:
        with self._lock:
            live = {
                g.app_id
                for g in self.grants.values()
                if g.user_id == user_id and g.revoked_at is None and self._has_live_token(g, now)
            }
            mine = self._sorted(
                (a for a in self.apps.values() if a.id in live), lambda a: (a.created_at, a.id)
            )
            return [_own_jwks(a) for a in mine]

    def _has_live_token(self, grant: Grant, now: datetime) -> bool:
        refresh = any(
            t.grant_id == grant.id
            and t.revoked_at is None
            and t.consumed_at is None
            and t.expires_at > now
            for t in self.refresh.values()
        )
        access = any(
            t.grant_id == grant.id and t.revoked_at is None and t.expires_at > now
            for t in self.access.values()
        )
        return refresh or access

    def create_secret(self, secret: AppSecret) -> None:
        with self._lock:
            self._insert(self.secrets, secret, app=(self.apps, secret.app_id))

    def get_secret_by_prefix(self, prefix: str) -> AppSecret | None:
        with self._lock:
            return next((s for s in self.secrets.values() if s.prefix == prefix), None)

    def get_app_and_secret(
        self, app_id: str, secret_prefix: str
    ) -> tuple[App | None, AppSecret | None]:
        with self._lock:
            app = self.get_app(app_id)
            return app, (self.get_secret_by_prefix(secret_prefix) if app else None)

    def list_secrets(self, app_id: str) -> Sequence[AppSecret]:
        with self._lock:
            theirs = [s for s in self.secrets.values() if s.app_id == app_id]
            return self._sorted(theirs, lambda s: (s.created_at, s.id))

    def delete_secret(self, secret_id: str, now: datetime) -> bool:
        with self._lock:
            issued = [t for t in (*self.access.values(), *self.refresh.values())]
            issued = [t for t in issued if t.secret_id == secret_id]
            self._revoke_grants({t.grant_id for t in issued if t.grant_id}, now)
            self._revoke_where(self.access, lambda t: t.secret_id == secret_id, now)
            for table in (self.access, self.refresh):  # ON DELETE SET NULL
                for t in [t for t in table.values() if t.secret_id == secret_id]:
                    table[t.id] = dataclasses.replace(t, secret_id=None)
            return self.secrets.pop(secret_id, None) is not None

    def touch_secret(self, secret_id: str, at: datetime) -> None:
        with self._lock:
            if secret_id in self.secrets:
                secret = self.secrets[secret_id]
                self.secrets[secret_id] = _utc(dataclasses.replace(secret, last_used_at=at))

    # -- codes, grants, tokens -------------------------------------------------------------

    def create_code(self, code: AuthorizationCode) -> None:
        with self._lock:
            self._insert(
                self.codes, code, app=(self.apps, code.app_id), user=(self.users, code.user_id)
            )

    def get_code_by_prefix(self, prefix: str) -> AuthorizationCode | None:
        with self._lock:
            return next((c for c in self.codes.values() if c.prefix == prefix), None)

    def redeem_code(
        self,
        code_id: str,
        now: datetime,
        grant: Grant,
        access: AccessToken,
        refresh: RefreshToken | None,
    ) -> bool:
        with self._lock:
            code = self.codes.get(code_id)
            if code is None or code.consumed_at is not None:
                return False
            snapshot = (dict(self.grants), dict(self.access), dict(self.refresh))
            try:
                self._insert(
                    self.grants,
                    grant,
                    app=(self.apps, grant.app_id),
                    user=(self.users, grant.user_id),
                )
                self._insert_pair(access, refresh)
            except Exception:
                self._restore(snapshot)
                raise
            consumed = dataclasses.replace(code, consumed_at=now, grant_id=grant.id)
            self.codes[code_id] = _utc(consumed)
            return True

    def _restore(self, snapshot: tuple[dict[str, Any], ...]) -> None:
        for table, saved in zip((self.grants, self.access, self.refresh), snapshot, strict=True):
            table.clear()
            table.update(saved)

    def list_live_grants(
        self,
        user_id: str,
        now: datetime,
        *,
        app_id: str | None = None,
        resource: str | None = None,
        limit: int | None = None,
    ) -> Sequence[LiveGrant]:
        with self._lock:
            live = [
                g
                for g in self.grants.values()
                if g.user_id == user_id
                and g.revoked_at is None
                and app_id in (None, g.app_id)
                and resource in (None, g.resource)
                and self._has_live_token(g, now)
            ]
            live.sort(key=lambda g: g.id)
            live.sort(key=lambda g: g.created_at, reverse=True)
            result = []
            for grant in live[:limit]:
                code = next((c for c in self.codes.values() if c.grant_id == grant.id), None)
                used = [t.created_at for t in self.access.values() if t.grant_id == grant.id]
                result.append(
                    LiveGrant(grant, code.redirect_uri if code else None, max(used, default=None))
                )
            return result

    def get_grant(self, grant_id: str) -> Grant | None:
        with self._lock:
            return self.grants.get(grant_id)

    def get_access_token_by_prefix(self, prefix: str) -> AccessToken | None:
        with self._lock:
            return next((t for t in self.access.values() if t.prefix == prefix), None)

    def get_refresh_token_by_prefix(self, prefix: str) -> RefreshToken | None:
        with self._lock:
            return next((t for t in self.refresh.values() if t.prefix == prefix), None)

    def get_refresh_token_and_grant(
        self, prefix: str
    ) -> tuple[RefreshToken | None, Grant | None, bool]:
        with self._lock:
            token = self.get_refresh_token_by_prefix(prefix)
            grant = self.get_grant(token.grant_id) if token else None
            user = self.users.get(grant.user_id) if grant and grant.user_id else None
            return token, grant, user is not None and user.disabled

    def create_access_token(self, access: AccessToken) -> None:
        with self._lock:
            self._insert_pair(access, None)

    def rotate_refresh_token(
        self, old_id: str, now: datetime, access: AccessToken, refresh: RefreshToken
    ) -> bool:
        with self._lock:
            old = self.refresh.get(old_id)
            if old is None or old.consumed_at is not None or old.revoked_at is not None:
                return False
            if not self._grant_is_live(old.grant_id):
                return False
            self._insert_pair(access, refresh)
            self.refresh[old_id] = _utc(dataclasses.replace(old, consumed_at=now))
            return True

    def _grant_is_live(self, grant_id: str) -> bool:
        grant = self.grants.get(grant_id)
        return grant is not None and grant.revoked_at is None

    def issue_in_family(
        self, grant_id: str, access: AccessToken, refresh: RefreshToken | None
    ) -> bool:
        with self._lock:
            if not self._grant_is_live(grant_id):
                return False
            self._insert_pair(access, refresh)
            return True

    def revoke_grant(self, grant_id: str, now: datetime, event: AuditEvent | None = None) -> bool:
        with self._lock:
            if event is not None:  # as a database would: a duplicate fails it all
                self.audit.check_unique(event)
            revoked = sum(self._revoke_grants({grant_id}, now)) > 0
            if revoked and event is not None:
                self.append_audit(event)
            return revoked

    def revoke_access_token(
        self, token_id: str, now: datetime, event: AuditEvent | None = None
    ) -> bool:
        with self._lock:
            if event is not None:  # as a database would: a duplicate fails it all
                self.audit.check_unique(event)
            revoked = self._revoke_where(self.access, lambda t: t.id == token_id, now) == 1
            if revoked and event is not None:
                self.append_audit(event)
            return revoked

    def revoke_user_app(self, user_id: str, app_id: str, now: datetime) -> int:
        with self._lock:
            theirs = {
                g.id for g in self.grants.values() if g.user_id == user_id and g.app_id == app_id
            }
            revoked, _ = self._revoke_grants(theirs, now)
            self._revoke_where(
                self.access, lambda t: t.user_id == user_id and t.app_id == app_id, now
            )
            for code in [
                c for c in self.codes.values() if (c.user_id, c.app_id) == (user_id, app_id)
            ]:
                del self.codes[code.id]
            return revoked

    def revoke_user_grants(
        self, user_id: str, now: datetime, *, scope: str | None = None
    ) -> tuple[int, int]:
        def holds(value: str) -> bool:
            return scope is None or scope in value.split(" ")

        with self._lock:
            codes = [
                c
                for c in self.codes.values()
                if c.user_id == user_id and c.consumed_at is None and holds(c.scope)
            ]
            for code in codes:
                del self.codes[code.id]
            theirs = {g.id for g in self.grants.values() if g.user_id == user_id and holds(g.scope)}
            revoked, _ = self._revoke_grants(theirs, now)
            return revoked, len(codes)

    def has_consented(self, user_id: str, app_id: str) -> bool:
        with self._lock:
            return any(
                (c.user_id, c.app_id) == (user_id, app_id) for c in self.codes.values()
            ) or any(
                (g.user_id, g.app_id) == (user_id, app_id) and g.revoked_at is None
                for g in self.grants.values()
            )

    # -- resources -------------------------------------------------------------------------

    def create_resource(self, resource: Resource) -> None:
        with self._lock:
            self._insert(self.resources, resource)

    def get_resource(self, resource_id: str) -> Resource | None:
        with self._lock:
            return self.resources.get(resource_id)

    def get_resource_by_identifier(self, identifier: str) -> Resource | None:
        with self._lock:
            return next((r for r in self.resources.values() if r.identifier == identifier), None)

    def list_resources(self) -> Sequence[Resource]:
        with self._lock:
            return self._sorted(self.resources.values(), lambda r: (r.created_at, r.id))

    def update_resource(self, resource: Resource) -> None:
        with self._lock:
            self._update(self.resources, resource)

    def delete_resource(self, resource_id: str) -> bool:
        with self._lock:
            return self.resources.pop(resource_id, None) is not None

    # -- signing keys ----------------------------------------------------------------------

    def create_signing_key(self, key: SigningKey) -> None:
        with self._lock:
            if key.kid in self.signing_keys:
                raise DuplicateKeyError(f"duplicate kid {key.kid!r}")
            stored = dataclasses.replace(key, public_jwk=copy.deepcopy(key.public_jwk))
            self.signing_keys[key.kid] = _utc(stored)

    def list_signing_keys(self) -> Sequence[SigningKey]:
        with self._lock:
            keys = self._sorted(self.signing_keys.values(), lambda k: (k.created_at, k.kid))
            return [dataclasses.replace(k, public_jwk=copy.deepcopy(k.public_jwk)) for k in keys]

    def activate_signing_key(self, kid: str, now: datetime, retire_until: datetime) -> bool:
        with self._lock:
            key = self.signing_keys.get(kid)
            if key is None or key.activated_at is not None or key.retired_at is not None:
                return False
            activated = _utc(dataclasses.replace(key, activated_at=now))
            retired = {
                k.kid: _utc(dataclasses.replace(k, retired_at=now, expires_at=retire_until))
                for k in self.signing_keys.values()
                if k.activated_at is not None and k.retired_at is None and k.kid != kid
            }
            self.signing_keys[kid] = activated
            self.signing_keys.update(retired)
            return True

    def delete_next_signing_key(self, kid: str) -> bool:
        with self._lock:
            key = self.signing_keys.get(kid)
            if key is None or key.activated_at is not None or key.retired_at is not None:
                return False
            del self.signing_keys[kid]
            return True

    def delete_expired_signing_keys(self, now: datetime) -> int:
        with self._lock:
            expired = [
                k.kid
                for k in self.signing_keys.values()
                if k.expires_at is not None and k.expires_at <= now
            ]
            for kid in expired:
                del self.signing_keys[kid]
            return len(expired)

    # -- client assertion jtis and rate limits ---------------------------------------------

    def consume_assertion_jti(
        self, client_id: str, jti: str, expires_at: datetime, now: datetime
    ) -> bool:
        expires_at, now = _aware(expires_at), _aware(now)
        with self._lock:
            for key in [k for k, expiry in self.assertion_jtis.items() if expiry <= now]:
                del self.assertion_jtis[key]
            if (client_id, jti) in self.assertion_jtis:
                return False
            self.assertion_jtis[(client_id, jti)] = expires_at
            return True

    def hit_rate_limit(self, key: str, window_start: datetime, now: datetime, hits: int = 1) -> int:
        window_start = _aware(window_start)
        with self._lock:
            count = self.rate_limits.get((key, window_start), 0) + hits
            self.rate_limits[(key, window_start)] = count
            if count == hits > 0:
                cutoff = window_start - RATE_LIMIT_RETENTION
                for old in [k for k in self.rate_limits if k[1] < cutoff]:
                    del self.rate_limits[old]
            return count

    # -- background cleanup ----------------------------------------------------------------

    def purge_expired(self, kind: ExpiredKind, before: datetime, limit: int) -> int:
        before = _aware(before)
        with self._lock:
            if kind == "upstream_transactions":
                gone = [h for h, t in self.upstream_transactions.items() if t.expires_at < before]
                for state_hash in gone[:limit]:
                    del self.upstream_transactions[state_hash]
                return min(len(gone), limit)
            if kind == "grants":
                referenced = {
                    row.grant_id
                    for table in (self.codes, self.access, self.refresh)
                    for row in table.values()
                }
                doomed = [
                    g.id
                    for g in self.grants.values()
                    if g.created_at < before and g.id not in referenced
                ]
                table = self.grants
            else:
                table = {
                    "sessions": self.sessions,
                    "codes": self.codes,
                    "access_tokens": self.access,
                    "refresh_tokens": self.refresh,
                }[kind]
                doomed = [row.id for row in table.values() if row.expires_at < before]
            for row_id in doomed[:limit]:
                del table[row_id]
            return min(len(doomed), limit)

    # -- upstream sign-in -------------------------------------------------------------------

    def create_upstream_provider(self, provider: UpstreamProvider) -> None:
        with self._lock:
            if provider.id in self.upstream_providers:
                raise DuplicateKeyError(f"duplicate id {provider.id!r}")
            self.upstream_providers[provider.id] = _utc(provider)

    def get_upstream_provider(self, provider_id: str) -> UpstreamProvider | None:
        with self._lock:
            return self.upstream_providers.get(provider_id)

    def list_upstream_providers(self) -> Sequence[UpstreamProvider]:
        with self._lock:
            return [self.upstream_providers[k] for k in sorted(self.upstream_providers)]

    def update_upstream_provider(self, provider: UpstreamProvider) -> None:
        with self._lock:
            old = self.upstream_providers.get(provider.id)
            if old is not None:
                kept = dataclasses.replace(provider, created_at=old.created_at)
                self.upstream_providers[provider.id] = _utc(kept)

    def delete_upstream_provider(self, provider_id: str) -> bool:
        with self._lock:
            for key in [k for k in self.upstream_identities if k[0] == provider_id]:
                del self.upstream_identities[key]
            for state_hash in [
                h for h, t in self.upstream_transactions.items() if t.provider_id == provider_id
            ]:
                del self.upstream_transactions[state_hash]
            return self.upstream_providers.pop(provider_id, None) is not None

    def get_upstream_identity(self, provider_id: str, subject: str) -> UpstreamIdentity | None:
        with self._lock:
            return self.upstream_identities.get((provider_id, subject))

    def list_upstream_identities(self, user_id: str) -> Sequence[UpstreamIdentity]:
        with self._lock:
            found = [i for i in self.upstream_identities.values() if i.user_id == user_id]
            return sorted(found, key=lambda i: (i.provider_id, i.subject))

    def create_upstream_identity(self, identity: UpstreamIdentity) -> None:
        with self._lock:
            key = (identity.provider_id, identity.subject)
            if key in self.upstream_identities:
                raise DuplicateKeyError("duplicate upstream identity")
            if identity.user_id not in self.users:
                raise ValueError(f"user {identity.user_id!r} does not exist")
            self.upstream_identities[key] = _utc(identity)

    def touch_upstream_identity(self, provider_id: str, subject: str, at: datetime) -> None:
        with self._lock:
            found = self.upstream_identities.get((provider_id, subject))
            if found is not None:
                touched = dataclasses.replace(found, last_sign_in_at=at)
                self.upstream_identities[(provider_id, subject)] = _utc(touched)

    def find_users_by_email(self, email: str) -> Sequence[User]:
        with self._lock:
            return [u for u in self.users.values() if u.email.lower() == email.lower()][:2]

    def create_upstream_transaction(self, transaction: UpstreamTransaction) -> None:
        with self._lock:
            if transaction.state_hash in self.upstream_transactions:
                raise DuplicateKeyError("duplicate state")
            self.upstream_transactions[transaction.state_hash] = _utc(transaction)

    def consume_upstream_transaction(
        self, state_hash: str, now: datetime
    ) -> UpstreamTransaction | None:
        with self._lock:
            found = self.upstream_transactions.get(state_hash)
            if found is None or found.expires_at <= _aware(now):
                return None
            del self.upstream_transactions[state_hash]
            return found

    # -- audit and settings ----------------------------------------------------------------

    def append_audit(self, event: AuditEvent) -> None:
        with self._lock:
            self._insert(
                self.audit, dataclasses.replace(event, details=copy.deepcopy(event.details))
            )

    def list_audit(self, query: AuditQuery) -> tuple[Sequence[AuditEvent], int]:
        with self._lock:
            hits = [e for e in self.audit.values() if _matches(e, query)]
        hits.sort(key=lambda e: (e.at, e.id), reverse=True)
        return hits[query.offset : query.offset + query.limit], len(hits)

    # -- flows -------------------------------------------------------------------------------

    def record_flow_steps(self, steps: Sequence[FlowStep]) -> None:
        with self._lock:
            for step in steps:
                if step.id in self.flow_steps:
                    raise DuplicateKeyError(step.id)
            for step in sorted(steps, key=lambda s: (s.at, s.seq)):
                step = _utc(dataclasses.replace(step, detail=copy.deepcopy(step.detail)))
                self.flow_steps[step.id] = step
                old = self.flows.get(step.flow_id)
                refused = int(step.outcome == "refused")
                self.flows[step.flow_id] = Flow(
                    id=step.flow_id,
                    started_at=min(old.started_at, step.at) if old else step.at,
                    last_at=max(old.last_at, step.at) if old else step.at,
                    client_id=(old.client_id if old else None) or step.client_id,
                    user_id=(old.user_id if old else None) or step.user_id,
                    resource=(old.resource if old else None) or step.resource,
                    steps=(old.steps if old else 0) + 1,
                    refusals=(old.refusals if old else 0) + refused,
                    last_outcome=step.outcome,
                    last_reason=step.reason,
                )

    def list_flows(self, query: FlowQuery) -> tuple[Sequence[Flow], int]:
        with self._lock:
            hits = [f for f in self.flows.values() if self._flow_matches(f, query)]
        hits.sort(key=lambda f: (f.last_at, f.id), reverse=True)
        return hits[query.offset : query.offset + query.limit], len(hits)

    def _flow_matches(self, flow: Flow, query: FlowQuery) -> bool:
        steps = [s for s in self.flow_steps.values() if s.flow_id == flow.id]
        return (
            (query.client_id is None or flow.client_id == query.client_id)
            and (query.user_id is None or flow.user_id == query.user_id)
            and (query.resource is None or flow.resource == query.resource)
            and (query.reason is None or any(s.reason == query.reason for s in steps))
            and (
                query.reference is None
                or any(s.reference == query.reference and s.reason for s in steps)
            )
            and (query.refused is None or (flow.refusals > 0) == query.refused)
            and (query.since is None or flow.last_at >= query.since)
            and (query.until is None or flow.last_at < query.until)
        )

    def get_flow(self, flow_id: str) -> Flow | None:
        with self._lock:
            return self.flows.get(flow_id)

    def list_flow_steps(self, flow_id: str) -> Sequence[FlowStep]:
        with self._lock:
            steps = [s for s in self.flow_steps.values() if s.flow_id == flow_id]
        return sorted(steps, key=lambda s: (s.at, s.seq, s.id))

    def failing_clients(self, since: datetime, limit: int) -> Sequence[tuple[str, int]]:
        counts: dict[str, int] = {}
        with self._lock:
            for s in self.flow_steps.values():
                if s.outcome == "refused" and s.at >= since and s.client_id is not None:
                    counts[s.client_id] = counts.get(s.client_id, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def flow_step_cutoff(self, cap: int) -> StepPosition | None:
        with self._lock:
            positions = sorted(((s.at, s.seq) for s in self.flow_steps.values()), reverse=True)
        return positions[cap] if len(positions) > cap else None

    def purge_flow_steps(self, before: datetime, up_to: StepPosition | None, limit: int) -> int:
        with self._lock:
            doomed = [
                s.id
                for s in self.flow_steps.values()
                if s.at < before or (up_to is not None and (s.at, s.seq) <= up_to)
            ][:limit]
            for step_id in doomed:
                del self.flow_steps[step_id]
        return len(doomed)

    def purge_flows(self, before: datetime, limit: int) -> int:
        with self._lock:
            alive = {s.flow_id for s in self.flow_steps.values()}
            doomed = [f.id for f in self.flows.values() if f.last_at < before or f.id not in alive][
                :limit
            ]
            for flow_id in doomed:
                del self.flows[flow_id]
        return len(doomed)

    def get_setting(self, key: str) -> Any | None:
        with self._lock:
            return copy.deepcopy(self.settings.get(key))

    def set_setting(self, key: str, value: Any) -> None:
        with self._lock:
            self.settings[key] = copy.deepcopy(value)


def _matches(event: AuditEvent, query: AuditQuery) -> bool:
    """Same filters as the SQL store: ``since`` inclusive, ``until`` exclusive."""
    return (
        (query.action is None or event.action == query.action)
        and (query.actor_id is None or event.actor_id == query.actor_id)
        and (query.target_id is None or event.target_id == query.target_id)
        and (query.since is None or event.at >= query.since)
        and (query.until is None or event.at < query.until)
    )
