"""``UTCDateTime`` (storage/sql/types.py): SQLite's text made at once must be the text
SQLAlchemy's own ``DATETIME`` stores, so rows written before and after read back the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.engine import Dialect

from authgate.storage.sql.types import UTCDateTime

VALUES = [
    datetime(2026, 12, 7, 3, 54, 57, 59254, tzinfo=UTC),
    datetime(2026, 12, 7, 3, 54, 57, tzinfo=UTC),  # no microseconds: still six digits
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 7, 1, 12, 0, 0, 1, tzinfo=ZoneInfo("Europe/Paris")),
]


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_sqlite_text_is_sqlalchemys_and_reads_back_as_the_same_instant(value: datetime) -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    read = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert ours is not None and theirs is not None and read is not None
    text = ours(value)
    assert text == theirs(value.astimezone(UTC).replace(tzinfo=None))
    assert len(text) == 26 and text[10] == " "
    back = read(text)
    assert back == value and back.tzinfo is UTC


#: SQLAlchemy's psycopg dialect is untyped.
POSTGRES: Dialect = psycopg.dialect()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("dialect", [sqlite.dialect(), POSTGRES])
def test_a_naive_datetime_is_refused_on_every_backend(dialect: Dialect) -> None:
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    with pytest.raises(ValueError, match="naive datetime"):
        bind(datetime(2026, 12, 7, 3, 54, 57))


def test_postgres_binds_the_aware_utc_value() -> None:
    dialect = POSTGRES
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    bound = bind(VALUES[4])
    assert bound == VALUES[4] and bound.tzinfo is UTC
