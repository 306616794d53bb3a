"""Identifiers of new rows.

The rows written on every token request (grants, codes, access and refresh tokens, sessions,
audit events) get time-ordered UUIDs (version 7, RFC 9562 §5.7): 48 bits of Unix time in
milliseconds, then 74 random bits. A primary key, and every index on a column that holds such
an id, then grows at its end, in pages already in the cache, instead of at a random place in a
table of millions of rows (a page read, and one more page to write at commit, per index). The
random bits keep ids unpredictable; the time in them is no more than the row's ``created_at``.
Rows whose ids are public and long-lived (users, clients, resources) keep random UUIDs.
"""

from __future__ import annotations

import os
import time

_RANDOM_HIGH = (1 << 12) - 1  # rand_a: the 12 bits after the version
_RANDOM_LOW = (1 << 62) - 1  # rand_b: the 62 bits after the variant


def time_ordered_id() -> str:
    """A new UUIDv7 in its canonical text form (lowercase, hyphenated)."""
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")
    value = (
        (millis & ((1 << 48) - 1)) << 80
        | 0x7 << 76  # version 7
        | ((random >> 62) & _RANDOM_HIGH) << 64
        | 0b10 << 62  # the RFC variant
        | (random & _RANDOM_LOW)
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
