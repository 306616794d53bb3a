"""Password hashing with Argon2id (RFC 9106), via argon2-cffi.

Each hash holds the hasher's memory cost (64 MiB by default) and a core for ~100 ms, so a
process runs at most ``concurrency`` at once — by default one fewer than the CPU cores it may
run on, at least one, so that hashing never has every core — on threads of its own at the
lowest CPU priority, and lets at most ``queue`` more wait for their turn (``configure``;
``AUTHGATE_PASSWORD_HASH_CONCURRENCY`` and ``_QUEUE``). A check beyond those is refused at
once with ``HashingBusyError`` (the sign-in page answers 429 with ``Retry-After``) instead of
holding a request thread: a flood of sign-ins cannot multiply the server's memory, nor fill
the threads or take the CPU time that serve the other pages and endpoints. Hashing a new
password (an operator setting one) waits its turn instead, and is never refused.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

DEFAULT_QUEUE = 8
#: The nice value of the hashing threads (19: the lowest priority).
NICE = 19
T = TypeVar("T")
_HASHER = PasswordHasher()
# A fixed hash to compare against when the account does not exist, so that a failed sign-in
# costs the same time whether or not the user exists.
_DUMMY = _HASHER.hash("authgate-dummy-password")


def default_concurrency(cpus: int | None = None) -> int:
    """Checks run at once when not configured: one fewer than ``cpus`` (the cores this process
    may run on), at least one. The cores left serve every other request while a flood of
    sign-ins is being checked."""
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not on Linux
            cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


class HashingBusyError(Exception):
    """Every hashing slot and queue place of this process is taken: try again shortly."""


class _Gate:
    """``concurrency`` threads of its own that hash, ``queue`` calls waiting for them; refusals
    counted. The threads run at the lowest CPU priority (``NICE``), and so do the threads
    Argon2 starts for its lanes: a flood of sign-ins takes the CPU time the rest of the server
    leaves, not the time it needs (on a single core, two checks at normal priority stalled
    token requests for seconds)."""

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("password hashing needs at least one slot and a queue of >= 0")
        self.concurrency = concurrency
        self.queue = queue
        self._jobs: SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.admitted = 0

    def run(self, call: Callable[[], T], *, refuse: bool) -> T:
        """``call()`` on a hashing thread, awaited; with ``refuse``, ``HashingBusyError`` at
        once when ``concurrency + queue`` calls are admitted already."""
        with self._lock:
            if refuse:
                self._refuse_if_full()
            self.admitted += 1
            if not self._threads:  # started on first use, in the process that hashes
                self._threads = [
                    threading.Thread(target=self._work, name=f"authgate-hash_{i}", daemon=True)
                    for i in range(self.concurrency)
                ]
                for thread in self._threads:
                    thread.start()
        future: Future[T] = Future()
        try:
            self._jobs.put((call, future))
            return future.result()
        finally:
            with self._lock:
                self.admitted -= 1

    def refuse_if_full(self) -> None:
        """``HashingBusyError`` (a refusal, counted) if a check asked now would be one."""
        with self._lock:
            self._refuse_if_full()

    def _refuse_if_full(self) -> None:
        global refusals
        if self.admitted >= self.concurrency + self.queue:
            refusals += 1
            raise HashingBusyError("too many password checks are waiting")

    def _work(self) -> None:
        _lower_priority()
        while True:
            call, future = self._jobs.get()
            try:
                result = call()
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)
            else:
                future.set_result(result)
            del call, future


def _lower_priority() -> None:
    """This thread, and the threads it starts, at the lowest CPU priority. On Linux the nice
    value is per thread and new threads inherit it; elsewhere ``setpriority`` would renice
    the whole process, so nothing is changed there."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


_GATE = _Gate(default_concurrency(), DEFAULT_QUEUE)
#: Password checks refused because the queue was full, since the process started.
refusals = 0


def configure(concurrency: int, queue: int) -> None:
    """This process's bounds (the server sets them from its settings at start); a
    ``concurrency`` of 0 is ``default_concurrency()``."""
    global _GATE
    concurrency = concurrency or default_concurrency()
    if (concurrency, queue) != (_GATE.concurrency, _GATE.queue):
        _GATE = _Gate(concurrency, queue)


def hash_password(password: str) -> str:
    return str(_GATE.run(lambda: _HASHER.hash(password), refuse=False))


def refuse_if_full() -> None:
    """``HashingBusyError`` now if every password-check place of this process is taken, as
    ``verify_password`` would raise it: a caller can refuse before doing anything else. (A
    place may still go before its own check; that check is refused then.)"""
    _GATE.refuse_if_full()


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; raises ``HashingBusyError`` when the queue is full."""

    def check() -> bool:
        try:
            return bool(_HASHER.verify(password_hash or _DUMMY, password))
        except (VerificationError, InvalidHashError):
            return False

    matched = _GATE.run(check, refuse=True)
    return matched and password_hash is not None
