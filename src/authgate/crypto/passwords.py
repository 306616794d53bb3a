"""Password hashing with Argon2id (RFC 9106), via argon2-cffi.

Each hash holds the hasher's memory cost (64 MiB by default) and a core for ~100 ms, so a
process runs at most ``concurrency`` at once, and lets at most ``queue`` more wait for their
turn (``configure``; ``AUTHGATE_PASSWORD_HASH_CONCURRENCY`` and ``_QUEUE``). A check beyond
those is refused at once with ``HashingBusyError`` (the sign-in page answers 429 with
``Retry-After``) instead of holding a request thread: a flood of sign-ins cannot multiply the
server's memory, nor fill the threads that serve the other pages and endpoints. Hashing a new
password (an operator setting one) waits its turn instead, and is never refused.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

DEFAULT_CONCURRENCY = 2
DEFAULT_QUEUE = 8
_HASHER = PasswordHasher()
# A fixed hash to compare against when the account does not exist, so that a failed sign-in
# costs the same time whether or not the user exists.
_DUMMY = _HASHER.hash("authgate-dummy-password")


class HashingBusyError(Exception):
    """Every hashing slot and queue place of this process is taken: try again shortly."""


class _Gate:
    """``concurrency`` hashes at once, and ``queue`` waiting; refusals counted."""

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("password hashing needs at least one slot and a queue of >= 0")
        self.concurrency = concurrency
        self.queue = queue
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self.admitted = 0

    @contextlib.contextmanager
    def slot(self, *, refuse: bool) -> Iterator[None]:
        global refusals
        with self._lock:
            if refuse and self.admitted >= self.concurrency + self.queue:
                refusals += 1
                raise HashingBusyError("too many password checks are waiting")
            self.admitted += 1
        try:
            with self._slots:
                yield
        finally:
            with self._lock:
                self.admitted -= 1


_GATE = _Gate(DEFAULT_CONCURRENCY, DEFAULT_QUEUE)
#: Password checks refused because the queue was full, since the process started.
refusals = 0


def configure(concurrency: int, queue: int) -> None:
    """This process's bounds (the server sets them from its settings at start)."""
    global _GATE
    if (concurrency, queue) != (_GATE.concurrency, _GATE.queue):
        _GATE = _Gate(concurrency, queue)


def hash_password(password: str) -> str:
    with _GATE.slot(refuse=False):
        return str(_HASHER.hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; raises ``HashingBusyError`` when the queue is full."""
    try:
        with _GATE.slot(refuse=True):
            matched = bool(_HASHER.verify(password_hash or _DUMMY, password))
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None
