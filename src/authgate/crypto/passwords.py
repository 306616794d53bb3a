"""Password hashing with Argon2id (RFC 9106), via argon2-cffi."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
# A fixed hash to compare against when the account does not exist, so that a failed sign-in
# costs the same time whether or not the user exists.
_DUMMY = _HASHER.hash("authgate-dummy-password")


def hash_password(password: str) -> str:
    return str(_HASHER.hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return bool(_HASHER.verify(password_hash or _DUMMY, password)) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
