"""One SQLite writer at a time, across the threads and the processes of this machine, and the
write transactions of a process's threads committed together.

SQLite runs one write transaction at a time. A writer that finds the database locked sleeps in
SQLite's busy handler (1, 2, 5, 10 … 100 ms) and tries again, so with two server processes
writing a token every few hundred microseconds each, the sleeping, not the work, set the pace:
a second worker halved throughput and pushed the 99th percentile of latency to half a second.

So writers queue here before ``BEGIN IMMEDIATE``: the threads of a process take turns, then
the turn's holder takes an exclusive ``flock`` of a file next to the database, retried after at
most a millisecond. The kernel drops the ``flock`` of a process that dies. A writer that waits
longer than the busy timeout gives up as SQLite would, with ``StoreUnavailableError``. Other
programs that write the file (the ``sqlite3`` shell, a migration) still meet SQLite's own lock.

Group commit (``member``): a write transaction that ends while other threads wait for their
turn does not commit; it hands its open transaction to the next writer, which runs its
statements inside it (under a savepoint, so that its failure undoes only its own), and so on,
up to ``MAX_MEMBERS``; the last one commits for all of them. A writer that finds nobody
waiting yields the processor once before it commits, so that threads about to write can
queue. Each writer returns only once that COMMIT is done, so an answered request is as durable
as before. Consecutive tokens dirty the same last pages of their table and indexes, and each
COMMIT writes every dirty page to the WAL: token INSERTs cost ~72 µs of CPU each committed
alone, ~37 µs each committed eight at a time (``bench/README.md``). A member whose statements
fail is rolled back to its savepoint and the others go on; if that rollback itself fails, or
the COMMIT does, every member of the group gets ``StoreUnavailableError`` and nothing of the
group is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from authgate.core.ports import StoreUnavailableError

#: How long a writer waits for the other processes, as ``busy_timeout`` (engine.py).
WAIT_SECONDS = 5.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.00005, 0.001
#: The most write transactions one COMMIT covers: the first of them waits for all the others.
MAX_MEMBERS = 8

#: ``finish(handle, commit)``: commit (``commit=True``) or roll back the group's transaction
#: and give its connection back; a failed COMMIT raises ``StoreUnavailableError``.
Finish = Callable[[Any, bool], None]


class Group:
    """One open write transaction that the write transactions of several threads join."""

    def __init__(self, handle: Any, finish: Finish) -> None:
        self.handle = handle
        #: The writers that joined it so far, the current one included.
        self.size = 0
        #: Set by a member whose failure could not be undone alone: the group is rolled back.
        self.broken = False
        self._finish = finish
        self._done = threading.Event()
        self._error: str | None = None

    def close(self) -> None:
        """Commit (or, if broken, roll back) for every member; by the turn's holder."""
        try:
            self._finish(self.handle, not self.broken)
            if self.broken:
                self._error = "a write grouped with this one failed; nothing was written"
        except Exception as error:  # every member hears of it
            self._error = str(error) or type(error).__name__
        finally:
            self._done.set()

    def outcome(self) -> None:
        """Wait for the group's COMMIT; ``StoreUnavailableError`` if it did not happen."""
        self._done.wait()
        if self._error is not None:
            raise StoreUnavailableError(self._error)


class WriterLock:
    """Turns for writers: ``with lock:`` holds the turn alone (reentrant on its thread; an open
    group is committed first); ``with lock.member(begin, finish) as group:`` joins the open
    group or begins one with ``begin()``, and runs in ``group.handle``'s transaction."""

    def __init__(self, database: Path, wait_seconds: float = WAIT_SECONDS) -> None:
        self.path = database.with_name(database.name + "-writer.lock")
        self._wait = wait_seconds
        self._cond = threading.Condition(threading.Lock())
        self._busy = False  # someone holds the turn
        self._holder: int | None = None  # its thread
        self._depth = 0  # reentries of an exclusive holder
        self._waiting = 0  # threads waiting for the turn
        self._group: Group | None = None  # open, its transaction begun, the file locked
        self._file_held = False
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._holder == threading.get_ident() and self._depth > 0:
            self._depth += 1
            return
        self._take_turn()
        try:
            group, self._group = self._group, None
            if group is not None:
                group.close()  # its file lock is now ours
            else:
                self._hold_file()
        except BaseException:
            self._leave()
            raise
        self._depth = 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._leave()

    @contextlib.contextmanager
    def member(self, begin: Callable[[], Any], finish: Finish) -> Iterator[Group]:
        """Run the body as one member of a group transaction (see the module's docstring).

        Returns once the group is committed; raises ``StoreUnavailableError`` if it was not.
        An exception of the body is the caller's to undo (``group.broken`` if it cannot)."""
        self._take_turn()
        try:
            group = self._group
            if group is not None and group.size >= MAX_MEMBERS:
                self._group = None
                group.close()
                group = None
            if group is None:
                self._hold_file()
                group = Group(begin(), finish)
                self._group = group
        except BaseException:
            self._group = None
            self._leave()
            raise
        group.size += 1
        ok = False
        try:
            yield group
            ok = True
        finally:
            self._after(group)
        if ok:
            group.outcome()

    def _after(self, group: Group) -> None:
        """Hand the open group to a waiting writer, or commit it and give up the turn."""
        if not group.broken and group.size < MAX_MEMBERS and self._waiting == 0:
            # Let the threads that are about to write queue up first: ``sched_yield`` with the
            # interpreter lock released hands the processor to a thread waiting for that lock,
            # and costs under a microsecond when none is. Without it, under load, nearly every
            # group had one member; with it, nearly every group is full. (``time.sleep(0)``
            # does the same but sleeps ~70 µs here, holding the database's write lock.)
            os.sched_yield()
        with self._cond:
            hand_over = not group.broken and group.size < MAX_MEMBERS and self._waiting > 0
            if hand_over:
                self._busy, self._holder = False, None
                self._cond.notify()
        if not hand_over:
            self._group = None
            group.close()
            self._leave()

    def _take_turn(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._holder == me:
                raise RuntimeError("a write transaction inside another one on the same thread")
            self._waiting += 1
            try:
                while self._busy:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._busy, self._holder = True, me

    def _leave(self) -> None:
        """Give up the turn, and the file lock with it (no group is open)."""
        try:
            if self._file_held:
                self._file_held = False
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            with self._cond:
                self._busy, self._holder = False, None
                self._cond.notify()

    def _hold_file(self) -> None:
        if not self._file_held:
            self._lock_file()
            self._file_held = True

    def _lock_file(self) -> None:
        fd = self._open()
        deadline = time.monotonic() + self._wait
        pause = _FIRST_PAUSE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreUnavailableError("database is locked") from None
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as error:
                raise StoreUnavailableError(f"cannot open {self.path.name}: {error}") from error
        return self._fd

    def close(self) -> None:
        """Close the lock file, unless a writer holds it."""
        with self._cond:
            if self._fd is not None and not self._busy and self._group is None:
                os.close(self._fd)
                self._fd = None
