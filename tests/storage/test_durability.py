"""SQLite durability: an answered redemption or rotation must survive a power loss, so every
connection authgate opens syncs each commit (``synchronous=FULL``) unless the operator chose
``AUTHGATE_SQLITE_SYNCHRONOUS=normal``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa

from authgate.app import build_services
from authgate.config import Settings
from authgate.storage import upgrade

#: SQLite's numbers for ``PRAGMA synchronous``.
FULL, NORMAL = 2, 1


def _synchronous_of_fresh_connections(settings: Settings, count: int) -> list[int]:
    """``PRAGMA synchronous`` as seen by ``count`` connections held at once, each checked out
    on its own thread, so the pool has to open new ones."""
    services = build_services(settings)
    engine = services.store.engine
    seen: list[int] = []
    barrier = threading.Barrier(count)

    def look() -> None:
        with engine.connect() as conn:
            barrier.wait(timeout=10)
            seen.append(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=look) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    engine.dispose()
    return seen


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    url = f"sqlite:///{tmp_path / 'authgate.db'}"
    upgrade(url)
    return Settings(database_url=url, secret_key="k" * 40, **extra)


def test_every_connection_syncs_each_commit_by_default(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.sqlite_synchronous == "full"
    assert _synchronous_of_fresh_connections(settings, 4) == [FULL] * 4


def test_the_operator_can_relax_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_SQLITE_SYNCHRONOUS", "normal")
    settings = _settings(tmp_path)
    assert settings.sqlite_synchronous == "normal"
    assert _synchronous_of_fresh_connections(settings, 3) == [NORMAL] * 3


@pytest.mark.parametrize("value", ["off", "extra", "2", ""])
def test_no_weaker_or_unknown_setting_is_accepted(value: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="sqlite_synchronous"):
        Settings(sqlite_synchronous=value, secret_key="k" * 40)


def test_the_pragma_text_reaches_sqlite_unchanged(tmp_path: Path) -> None:
    """A WAL database keeps its mode while a fresh connection applies the setting."""
    settings = _settings(tmp_path)
    engine = build_services(settings).store.engine
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.execute(sa.text("PRAGMA synchronous")).scalar_one() == FULL
    engine.dispose()
