"""The SQLite writer lock (``storage/sql/writer_lock.py``): one writer at a time across threads
and processes, handed over without SQLite's sleeping busy handler, released when its holder
dies, and a bounded wait that ends in ``StoreUnavailableError``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from authgate.core.ports import StoreUnavailableError
from authgate.storage import open_store, upgrade
from authgate.storage.sql.writer_lock import WriterLock

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(lock_path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the lock file for ``seconds``; its pipe is already closed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock_path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    with proc.stdout:
        assert proc.stdout.readline().strip() == "held"
    return proc


def test_threads_take_turns_and_reentry_keeps_the_file_locked(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "db.sqlite")
    inside, overlaps = [0], [0]

    def write() -> None:
        for _ in range(200):
            with lock, lock:  # reentrant, as nested store calls on one thread
                inside[0] += 1
                overlaps[0] += inside[0] > 1
                inside[0] -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [0]
    assert lock.path == tmp_path / "db.sqlite-writer.lock"
    # Released: another process takes it at once.
    _holder(lock.path, 0).wait(timeout=10)


def test_another_process_waits_its_turn(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "db.sqlite")
    holder = _holder(lock.path, 0.5)
    start = time.monotonic()
    with lock:
        waited = time.monotonic() - start
        assert holder.poll() == 0  # it had finished (and so released) before we got in
    assert 0.3 < waited < 3.0


def test_the_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "db.sqlite")
    holder = _holder(lock.path, 60)
    threading.Timer(0.3, os.kill, (holder.pid, signal.SIGKILL)).start()
    start = time.monotonic()
    with lock:
        assert time.monotonic() - start < 5.0
    assert holder.wait(timeout=10) == -signal.SIGKILL


def test_a_wait_past_the_busy_timeout_is_store_unavailable(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "db.sqlite", wait_seconds=0.3)
    holder = _holder(lock.path, 30)
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="locked"), lock:
            raise AssertionError("entered a lock another process holds")
        assert 0.3 <= time.monotonic() - start < 2.0
        # The failed entry left the thread lock free: another thread can try (and also wait).
        done = threading.Event()

        def again() -> None:
            with pytest.raises(StoreUnavailableError), lock:
                pass
            done.set()

        threading.Thread(target=again).start()
        assert done.wait(timeout=5)
    finally:
        holder.kill()
        holder.wait()
    with lock:
        pass


def test_a_store_on_a_locked_file_refuses_writes_but_still_reads(tmp_path: Path) -> None:
    database = tmp_path / "authgate.db"
    url = f"sqlite:///{database}"
    upgrade(url)
    store = open_store(url)
    try:
        assert isinstance(store._writer, WriterLock)
        store._writer._wait = 0.3
        holder = _holder(database.with_name("authgate.db-writer.lock"), 30)
        try:
            with pytest.raises(StoreUnavailableError, match="locked"):
                store.touch_secret("no-such-secret", _now())
            assert store.ping()
            assert store.get_app("no-such-app") is None
        finally:
            holder.kill()
            holder.wait()
        store.touch_secret("no-such-secret", _now())  # the lock is free again
    finally:
        store.close()


def _now() -> datetime:
    return datetime.now(UTC)
