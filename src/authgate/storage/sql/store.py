"""``SqlStore``: the ``authgate.core.ports.Store`` on SQLite or PostgreSQL (SQLAlchemy Core).

The queries live in one module per aggregate; this class only puts them together.
"""

from __future__ import annotations

from authgate.storage.sql.store_apps import AppQueries, SecretQueries
from authgate.storage.sql.store_audit import AuditQueries, SettingQueries
from authgate.storage.sql.store_cleanup import CleanupQueries
from authgate.storage.sql.store_flows import FlowQueries
from authgate.storage.sql.store_keys import KeyQueries
from authgate.storage.sql.store_limits import RateLimitQueries, ReplayQueries
from authgate.storage.sql.store_resources import ResourceQueries
from authgate.storage.sql.store_tokens import CodeQueries, TokenQueries
from authgate.storage.sql.store_upstream import UpstreamQueries
from authgate.storage.sql.store_users import ApiTokenQueries, SessionQueries, UserQueries


class SqlStore(
    UserQueries,
    SessionQueries,
    ApiTokenQueries,
    AppQueries,
    SecretQueries,
    CodeQueries,
    TokenQueries,
    ResourceQueries,
    KeyQueries,
    ReplayQueries,
    RateLimitQueries,
    CleanupQueries,
    AuditQueries,
    FlowQueries,
    UpstreamQueries,
    SettingQueries,
):
    """Every method is one transaction; see ``SqlBase`` for the exceptions it may raise."""
