"""Faults inside a group commit on a SQLite file (``writer_lock.py``, ``SqlBase._grouped_write``),
injected at the sqlite3 connection.

Three threads write an access token each; the first holds the turn until the two others queue,
so they join its transaction under savepoints and one COMMIT covers all three. Whichever
statement of the group fails, every writer's answer is the truth: a writer that returned
normally has its token stored, one that raised has nothing stored, and a writer that ran
before the failure in the same transaction is told it failed, not left believing in a write
that was rolled back. After the failure the store writes again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from authgate.core.models import AccessToken
from authgate.core.ports import DuplicateKeyError, StoreUnavailableError
from authgate.storage import SqlStore, open_store, upgrade
from authgate.storage.sql.writer_lock import WriterLock
from tests.faults.conftest import Outage
from tests.storage import store_builders as b

WRITERS = 3


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    url = f"sqlite:///{tmp_path / 'authgate.db'}"
    upgrade(url)
    opened = open_store(url)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


@pytest.fixture
def outage(store: SqlStore) -> Iterator[Outage]:
    injected = Outage(store.engine)
    yield injected
    injected.remove()


def _wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def write_together(
    store: SqlStore, tokens: list[AccessToken], monkeypatch: pytest.MonkeyPatch
) -> dict[int, object]:
    """Each token written by a thread of its own, all in one group; each thread's outcome."""
    lock = store._writer
    assert isinstance(lock, WriterLock)
    real_begin = store._begin_group
    first_group = threading.Event()

    def slow_begin() -> Any:
        handle = real_begin()
        if not first_group.is_set():
            first_group.set()
            _wait_until(lambda: lock._waiting == WRITERS - 1)
        return handle

    monkeypatch.setattr(store, "_begin_group", slow_begin)
    outcomes: dict[int, object] = {}

    def write(i: int) -> None:
        try:
            store.create_access_token(tokens[i])
            outcomes[i] = True
        except Exception as error:
            outcomes[i] = error

    first = threading.Thread(target=write, args=(0,))
    first.start()
    _wait_until(first_group.is_set)
    others = [threading.Thread(target=write, args=(i,)) for i in range(1, WRITERS)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(10)
    monkeypatch.setattr(store, "_begin_group", real_begin)
    assert len(outcomes) == WRITERS
    return outcomes


def stored(store: SqlStore, tokens: list[AccessToken]) -> dict[int, bool]:
    return {i: store.get_access_token_by_prefix(t.prefix) is not None for i, t in enumerate(tokens)}


@pytest.mark.parametrize(
    ("statement", "nth", "fails_with_it"),
    [
        # The first writer's own INSERT: only it fails; the others form a group of their own.
        pytest.param("INSERT INTO access_tokens", 1, 1, id="first-member-insert"),
        # A joined writer's statements: the group's transaction is given up, so the first
        # writer, whose INSERT had run, fails too; the last one commits in a new group.
        pytest.param("SAVEPOINT member", 1, 2, id="savepoint"),
        pytest.param("INSERT INTO access_tokens", 2, 2, id="joined-member-insert"),
        pytest.param("RELEASE member", 1, 2, id="release"),
        pytest.param("SAVEPOINT member", 2, 3, id="last-savepoint"),
        # The group's COMMIT: nobody's token is written, and every writer hears of it.
        pytest.param("COMMIT", 1, 3, id="commit"),
    ],
)
def test_a_fault_in_a_group_fails_exactly_the_writers_whose_writes_were_lost(
    store: SqlStore,
    outage: Outage,
    monkeypatch: pytest.MonkeyPatch,
    statement: str,
    nth: int,
    fails_with_it: int,
) -> None:
    app = b.app()
    store.create_app(app)
    tokens = [b.access(None, app.id) for _ in range(WRITERS)]
    outage.fail_on(statement, nth=nth)
    outcomes = write_together(store, tokens, monkeypatch)
    assert outage.fired == [statement], "the statement under test never ran"

    failed = [i for i, outcome in outcomes.items() if outcome is not True]
    assert len(failed) == fails_with_it, outcomes
    for i in failed:
        assert isinstance(outcomes[i], StoreUnavailableError), outcomes
    assert stored(store, tokens) == {i: outcomes[i] is True for i in outcomes}
    if fails_with_it > 1:
        assert 0 in failed  # the first writer's INSERT ran, and was rolled back with the group

    outage.heal()
    again = b.access(None, app.id)
    store.create_access_token(again)
    assert store.get_access_token_by_prefix(again.prefix) is not None


def test_a_member_whose_savepoint_cannot_be_rolled_back_fails_the_group(
    store: SqlStore, outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A joined writer's duplicate key is undone to its savepoint, and the others go on
    (tests/storage/test_group_commit.py); if that rollback itself fails, the group's
    transaction cannot be trusted: it is rolled back and every writer in it is told."""
    app = b.app()
    store.create_app(app)
    taken = b.access(None, app.id)
    store.create_access_token(taken)
    # The two joining writers both clash: whichever joins first fails to roll back to its
    # savepoint, the other then writes in a group of its own, alone, and is refused.
    tokens = [b.access(None, app.id)] + [
        b.access(None, app.id, prefix=taken.prefix) for _ in range(WRITERS - 1)
    ]
    outage.fail_on("ROLLBACK TO member")
    outcomes = write_together(store, tokens, monkeypatch)
    assert outage.fired == ["ROLLBACK TO member"]
    assert isinstance(outcomes[0], StoreUnavailableError)  # its INSERT ran, then was lost
    assert all(isinstance(outcomes[i], DuplicateKeyError) for i in range(1, WRITERS)), outcomes
    assert store.get_access_token_by_prefix(tokens[0].prefix) is None

    outage.heal()
    store.create_access_token(tokens[0])
    assert store.get_access_token_by_prefix(tokens[0].prefix) is not None
