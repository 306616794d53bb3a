"""Seed stored tokens by direct bulk SQL, for the growth test.

Each seeded token is what a client_credentials request leaves behind: one grant row and one
access-token row (random prefix and hash, unexpired, for the benchmark client), written with
authgate's own table definitions so the column types are exactly the server's.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from authgate.storage.sql import tables

BATCH = 20_000


def _engine(database_url: str) -> sa.Engine:
    if database_url.startswith("postgresql://"):
        database_url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    return sa.create_engine(database_url)


def stored_tokens(database_url: str) -> int:
    engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(tables.access_tokens))
            return int(count.scalar_one())
    finally:
        engine.dispose()


def seed(database_url: str, app_id: str, audience: str, target: int) -> int:
    """Add grants and access tokens until `target` access tokens are stored; returns how many
    were added."""
    engine = _engine(database_url)
    added = 0
    try:
        with engine.connect() as conn:
            have = int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(tables.access_tokens)
                ).scalar_one()
            )
        now = datetime.now(UTC)
        expires = now + timedelta(days=1)
        while have + added < target:
            n = min(BATCH, target - have - added)
            grants, tokens = [], []
            for _ in range(n):
                grant_id = str(uuid.uuid4())
                grants.append(
                    {
                        "id": grant_id,
                        "app_id": app_id,
                        "user_id": None,
                        "resource": audience,
                        "scope": "read",
                        "auth_time": None,
                        "created_at": now,
                        "revoked_at": None,
                    }
                )
                tokens.append(
                    {
                        "id": str(uuid.uuid4()),
                        "prefix": secrets.token_hex(8),
                        "token_hash": secrets.token_hex(32),
                        "grant_id": grant_id,
                        "app_id": app_id,
                        "user_id": None,
                        "secret_id": None,
                        "audience": audience,
                        "scope": "read",
                        "created_at": now,
                        "expires_at": expires,
                        "revoked_at": None,
                    }
                )
            with engine.begin() as conn:
                conn.execute(sa.insert(tables.grants), grants)
                conn.execute(sa.insert(tables.access_tokens), tokens)
            added += n
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE grants"))
                conn.execute(sa.text("ANALYZE access_tokens"))
        return added
    finally:
        engine.dispose()
