"""Password hashing with Argon2id (RFC 9106), via argon2-cffi.

Each hash holds the hasher's memory cost (64 MiB by default) while it runs, so a process runs
at most ``MAX_CONCURRENT`` at once: a burst of sign-ins waits its turn instead of multiplying
the server's memory (and a flood of them cannot exhaust it).
"""

from __future__ import annotations

import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_CONCURRENT = 2
_HASHER = PasswordHasher()
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT)
# A fixed hash to compare against when the account does not exist, so that a failed sign-in
# costs the same time whether or not the user exists.
_DUMMY = _HASHER.hash("authgate-dummy-password")


def hash_password(password: str) -> str:
    with _SLOTS:
        return str(_HASHER.hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        with _SLOTS:
            matched = bool(_HASHER.verify(password_hash or _DUMMY, password))
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None
