"""Group commit of SQLite writers (``storage/sql/writer_lock.py``, ``base.py``
``_grouped_write``): the write transactions of threads that queue behind each other share one
COMMIT; each returns only after it; a failure undoes only its own writes, unless the group's
transaction itself is lost, and then every member hears of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from authgate.core.ports import DuplicateKeyError, StoreUnavailableError
from authgate.storage import SqlStore, open_store, upgrade
from authgate.storage.sql import writer_lock
from authgate.storage.sql.tables import access_tokens, grants
from authgate.storage.sql.writer_lock import MAX_MEMBERS, WriterLock
from tests.storage import store_builders as b


class Transactions:
    """Fake ``begin``/``finish`` for a ``WriterLock``: what was begun, committed, rolled back."""

    def __init__(self, fail_commit: bool = False) -> None:
        self.begun = 0
        self.finished: list[tuple[int, bool]] = []  # (handle, committed)
        self.fail_commit = fail_commit
        self.lock = threading.Lock()

    def begin(self) -> int:
        with self.lock:
            self.begun += 1
            return self.begun

    def finish(self, handle: int, commit: bool) -> None:
        with self.lock:
            self.finished.append((handle, commit))
        if commit and self.fail_commit:
            raise StoreUnavailableError("disk I/O error")

    def committed(self, handle: int) -> bool:
        with self.lock:
            return (handle, True) in self.finished


def _wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _queued(lock: WriterLock, n: int) -> Callable[[], bool]:
    return lambda: lock._waiting == n  # the writers queued for the turn


class Writers:
    """``n`` threads that each run ``body(i, group)`` as a member of ``lock``; the first one
    starts alone and holds its body open until the others queue behind it."""

    def __init__(
        self,
        lock: WriterLock,
        txn: Transactions,
        n: int,
        body: Callable[[int, writer_lock.Group], None] = lambda i, group: None,
    ) -> None:
        self.lock, self.txn, self.n, self.body = lock, txn, n, body
        self.outcomes: dict[int, object] = {}
        self.handles: dict[int, int] = {}
        self.committed_on_return: dict[int, bool] = {}

    def _member(self, i: int) -> None:
        try:
            with self.lock.member(self.txn.begin, self.txn.finish) as group:
                self.handles[i] = group.handle
                if i == 0:
                    _wait_until(_queued(self.lock, self.n - 1))
                self.body(i, group)
            self.outcomes[i] = "ok"
            self.committed_on_return[i] = self.txn.committed(self.handles[i])
        except BaseException as error:
            self.outcomes[i] = error

    def run(self) -> None:
        first = threading.Thread(target=self._member, args=(0,))
        first.start()
        _wait_until(lambda: 0 in self.handles)
        others = [threading.Thread(target=self._member, args=(i,)) for i in range(1, self.n)]
        for thread in others:
            thread.start()
        for thread in [first, *others]:
            thread.join(10)
            assert not thread.is_alive()


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[WriterLock]:
    lock = WriterLock(tmp_path / "db.sqlite")
    yield lock
    lock.close()


def test_writers_that_queue_share_one_commit_and_return_after_it(lock: WriterLock) -> None:
    txn = Transactions()
    writers = Writers(lock, txn, 5)
    writers.run()
    assert writers.outcomes == dict.fromkeys(range(5), "ok")
    assert txn.begun == 1 and txn.finished == [(1, True)]
    assert set(writers.handles.values()) == {1}
    assert writers.committed_on_return == dict.fromkeys(range(5), True)
    # The file lock was given up with the turn: another writer gets both at once.
    with lock:
        pass
    assert txn.finished == [(1, True)]


def test_a_group_holds_at_most_max_members(lock: WriterLock) -> None:
    txn = Transactions()
    writers = Writers(lock, txn, MAX_MEMBERS + 3)
    writers.run()
    assert set(writers.outcomes.values()) == {"ok"}
    sizes = [list(writers.handles.values()).count(handle) for handle in range(1, txn.begun + 1)]
    assert max(sizes) == MAX_MEMBERS and sum(sizes) == MAX_MEMBERS + 3
    assert txn.finished == [(handle, True) for handle in range(1, txn.begun + 1)]
    assert all(writers.committed_on_return.values())


def test_a_writer_alone_commits_at_once(lock: WriterLock) -> None:
    txn = Transactions()
    for _ in range(3):
        with lock.member(txn.begin, txn.finish) as group:
            assert group.size == 1
    assert txn.finished == [(1, True), (2, True), (3, True)]


def test_a_failed_commit_fails_every_member(lock: WriterLock) -> None:
    txn = Transactions(fail_commit=True)
    writers = Writers(lock, txn, 4)
    writers.run()
    assert txn.finished == [(1, True)]
    for outcome in writers.outcomes.values():
        assert isinstance(outcome, StoreUnavailableError)
        assert str(outcome) == "disk I/O error"
    # Nothing is left held: the next writer begins afresh.
    txn.fail_commit = False
    with lock.member(txn.begin, txn.finish):
        pass
    assert txn.finished[-1] == (2, True)


def test_a_member_that_fails_alone_leaves_the_others_to_commit(lock: WriterLock) -> None:
    def body(i: int, group: writer_lock.Group) -> None:
        if i == 2:
            raise LookupError("undone by its own savepoint")

    txn = Transactions()
    writers = Writers(lock, txn, 4, body)
    writers.run()
    assert isinstance(writers.outcomes.pop(2), LookupError)
    assert writers.outcomes == dict.fromkeys((0, 1, 3), "ok")
    assert txn.finished == [(1, True)]


def test_a_broken_member_rolls_back_the_whole_group(lock: WriterLock) -> None:
    def body(i: int, group: writer_lock.Group) -> None:
        if i == 0:
            return
        if group.size == 3:  # the second to join breaks the transaction
            group.broken = True
            raise OSError("disk I/O error")

    txn = Transactions()
    writers = Writers(lock, txn, 4, body)
    writers.run()
    assert txn.finished[0] == (1, False)  # the broken group was rolled back, not committed
    failed = [i for i, outcome in writers.outcomes.items() if isinstance(outcome, OSError)]
    assert len(failed) == 1
    grouped = [i for i, handle in writers.handles.items() if handle == 1 and i not in failed]
    assert len(grouped) == 2
    for i in grouped:
        outcome = writers.outcomes[i]
        assert isinstance(outcome, StoreUnavailableError)
        assert "nothing was written" in str(outcome)
    # The writer that came after the broken group began a new one, and it committed.
    later = [i for i, handle in writers.handles.items() if handle != 1]
    assert len(later) == 1 and writers.outcomes[later[0]] == "ok"
    assert txn.finished[1:] == [(2, True)]


def test_an_exclusive_writer_commits_the_open_group_first(lock: WriterLock) -> None:
    txn = Transactions()
    order: list[str] = []

    def exclusive() -> None:
        with lock:
            order.append(f"exclusive, group committed: {txn.committed(1)}")

    def member() -> None:
        with lock.member(txn.begin, txn.finish):
            thread = threading.Thread(target=exclusive)
            thread.start()
            _wait_until(_queued(lock, 1))
        order.append("member returned")
        thread.join(5)

    worker = threading.Thread(target=member)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert txn.finished == [(1, True)]
    assert order[0] == "exclusive, group committed: True"
    assert "member returned" in order


def test_a_write_inside_another_on_one_thread_is_refused(lock: WriterLock) -> None:
    txn = Transactions()
    with lock.member(txn.begin, txn.finish):
        with pytest.raises(RuntimeError, match="inside another"), lock:
            pass
        with (
            pytest.raises(RuntimeError, match="inside another"),
            lock.member(txn.begin, txn.finish),
        ):
            pass
    with lock:
        with lock:  # an exclusive writer still reenters its own turn
            pass
        with (
            pytest.raises(RuntimeError, match="inside another"),
            lock.member(txn.begin, txn.finish),
        ):
            pass
    assert txn.finished == [(1, True)]


def test_a_failed_begin_gives_up_the_turn_and_the_file(lock: WriterLock) -> None:
    def begin() -> int:
        raise StoreUnavailableError("cannot begin")

    with (
        pytest.raises(StoreUnavailableError, match="cannot begin"),
        lock.member(begin, lambda handle, commit: None),
    ):
        raise AssertionError("ran without a transaction")
    done = threading.Event()

    def other() -> None:
        with lock:
            done.set()

    threading.Thread(target=other).start()
    assert done.wait(5)


# -- on a SQLite file ------------------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    url = f"sqlite:///{tmp_path / 'authgate.db'}"
    upgrade(url)
    store = open_store(url)
    assert isinstance(store, SqlStore)
    yield store
    store.close()


def _count(store: SqlStore, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_grouped_sqlite_writes_each_land_or_fail_alone(
    sqlite_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redemptions queued behind a slow one share its COMMIT; the one whose access token
    clashes is undone to its savepoint (its grant and code untouched), the others are stored."""
    store = sqlite_store
    u, a = b.user(), b.app()
    store.create_user(u)
    store.create_app(a)
    taken = b.access(None, a.id)
    store.create_access_token(taken)
    codes = [b.code(a.id, u.id) for _ in range(6)]
    for c in codes:
        store.create_code(c)
    issued = []
    for i in range(6):
        g = b.grant(a.id, u.id)
        prefix = {"prefix": taken.prefix} if i == 3 else {}
        issued.append((g, b.access(g, a.id, **prefix), b.refresh(g)))

    commits: list[int] = []
    finish = store._finish_group

    def counted(handle: Any, commit: bool) -> None:
        commits.append(commit)
        finish(handle, commit)

    monkeypatch.setattr(store, "_finish_group", counted)
    lock = store._writer
    assert isinstance(lock, WriterLock)
    outcomes: dict[int, object] = {}

    def redeem(i: int) -> None:
        try:
            outcomes[i] = store.redeem_code(codes[i].id, b.at(1), *issued[i])
        except Exception as error:
            outcomes[i] = error

    # The first redemption holds the turn until the five others queue behind it.
    real_begin = store._begin_group

    def slow_begin() -> Any:
        handle = real_begin()
        if not commits:  # only the first group waits
            _wait_until(_queued(lock, 5))
        return handle

    monkeypatch.setattr(store, "_begin_group", slow_begin)
    first = threading.Thread(target=redeem, args=(0,))
    first.start()
    _wait_until(lambda: lock._busy)
    others = [threading.Thread(target=redeem, args=(i,)) for i in range(1, 6)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(10)

    assert commits == [True]  # six redemptions, one COMMIT
    assert isinstance(outcomes.pop(3), DuplicateKeyError)
    assert outcomes == dict.fromkeys((0, 1, 2, 4, 5), True)
    for i, (g, access, refresh) in enumerate(issued):
        stored_code = store.get_code_by_prefix(codes[i].prefix)
        assert stored_code is not None
        if i == 3:
            assert store.get_grant(g.id) is None
            assert stored_code.consumed_at is None and stored_code.grant_id is None
            assert store.get_refresh_token_by_prefix(refresh.prefix) is None
        else:
            assert store.get_grant(g.id) is not None
            assert stored_code.grant_id == g.id
            stored = store.get_access_token_by_prefix(access.prefix)
            assert stored is not None and stored.grant_id == g.id
    assert _count(store, grants) == 5
    assert _count(store, access_tokens) == 6  # the five and the one that was there


def test_a_failed_sqlite_commit_stores_nothing_of_the_group(
    sqlite_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store
    a = b.app()
    store.create_app(a)
    tokens = [b.access(None, a.id) for _ in range(3)]
    lock = store._writer
    assert isinstance(lock, WriterLock)
    real_begin, real_finish = store._begin_group, store._finish_group

    class FailingCommit:
        """The DBAPI connection, whose COMMIT fails."""

        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

        def commit(self) -> None:
            raise store.engine.dialect.loaded_dbapi.OperationalError("disk I/O error")

    def slow_begin() -> Any:
        handle = real_begin()
        _wait_until(_queued(lock, 2))
        return handle

    def failing_finish(handle: Any, commit: bool) -> None:
        proxy, _cursor = handle
        real = proxy.dbapi_connection
        monkeypatch.setattr(proxy, "dbapi_connection", FailingCommit(real))
        try:
            real_finish(handle, commit)
        finally:
            monkeypatch.setattr(proxy, "dbapi_connection", real)

    monkeypatch.setattr(store, "_begin_group", slow_begin)
    monkeypatch.setattr(store, "_finish_group", failing_finish)
    outcomes: dict[int, object] = {}

    def create(i: int) -> None:
        try:
            store.create_access_token(tokens[i])
            outcomes[i] = "ok"
        except Exception as error:
            outcomes[i] = error

    first = threading.Thread(target=create, args=(0,))
    first.start()
    _wait_until(lambda: lock._busy)
    others = [threading.Thread(target=create, args=(i,)) for i in (1, 2)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(10)

    for outcome in outcomes.values():
        assert isinstance(outcome, StoreUnavailableError)
        assert str(outcome) == "disk I/O error"
    assert len(outcomes) == 3
    assert _count(store, access_tokens) == 0
    monkeypatch.setattr(store, "_begin_group", real_begin)
    monkeypatch.setattr(store, "_finish_group", real_finish)
    store.create_access_token(tokens[0])  # the store writes again
    assert _count(store, access_tokens) == 1
