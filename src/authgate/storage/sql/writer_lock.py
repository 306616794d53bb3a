"""One SQLite writer at a time, across the threads and the processes of this machine.

SQLite runs one write transaction at a time. A writer that finds the database locked sleeps in
SQLite's busy handler (1, 2, 5, 10 … 100 ms) and tries again, so with two server processes
writing a token every few hundred microseconds each, the sleeping, not the work, set the pace:
a second worker halved throughput and pushed the 99th percentile of latency to half a second.

So writers queue here before ``BEGIN IMMEDIATE``: the threads of a process on a lock, then one
thread per process on an exclusive ``flock`` of a file next to the database, retried after at
most a millisecond. The kernel drops the ``flock`` of a process that dies. A writer that waits
longer than the busy timeout gives up as SQLite would, with ``StoreUnavailableError``. Other
programs that write the file (the ``sqlite3`` shell, a migration) still meet SQLite's own lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from authgate.core.ports import StoreUnavailableError

#: How long a writer waits for the other processes, as ``busy_timeout`` (engine.py).
WAIT_SECONDS = 5.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.00005, 0.001


class WriterLock:
    """A reentrant context manager: the process-wide ``flock`` is taken by the outermost entry
    of the thread that holds the in-process lock, and released by its exit."""

    def __init__(self, database: Path, wait_seconds: float = WAIT_SECONDS) -> None:
        self.path = database.with_name(database.name + "-writer.lock")
        self._wait = wait_seconds
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._depth == 0:
            try:
                self._lock_file()
            except BaseException:
                self._threads.release()
                raise
        self._depth += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

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
        with self._threads:
            if self._fd is not None and self._depth == 0:
                os.close(self._fd)
                self._fd = None
