"""Time-ordered row ids (``crypto/ids.py``): valid RFC 9562 version 7 UUIDs, ordered by the
millisecond they were made in, and random after it."""

from __future__ import annotations

import time
import uuid

import pytest

from authgate.crypto import ids


def test_an_id_is_a_canonical_version_7_uuid_of_this_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    text = ids.time_ordered_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(text)
    assert str(parsed) == text  # lowercase, hyphenated: the form uuid4 ids have
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_ids_sort_by_the_millisecond_they_were_made_in(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1_700_000_000_000_000_000 + n * 1_000_000 for n in range(200)])
    monkeypatch.setattr("authgate.crypto.ids.time.time_ns", lambda: next(clock))
    made = [ids.time_ordered_id() for _ in range(200)]
    assert made == sorted(made)
    assert uuid.UUID(made[0]).int >> 80 == 1_700_000_000_000


def test_the_74_bits_after_the_time_are_random(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("authgate.crypto.ids.time.time_ns", lambda: 1_700_000_000_000_000_000)
    made = [uuid.UUID(ids.time_ordered_id()).int for _ in range(2000)]
    assert len(set(made)) == len(made)
    # Every one of the 74 random bit positions takes both values, about half the time each.
    positions = [*range(64, 76), *range(0, 62)]
    for bit in positions:
        ones = sum((value >> bit) & 1 for value in made)
        assert 800 < ones < 1200, bit
    # The version and variant bits never change.
    assert {(value >> 76) & 0xF for value in made} == {7}
    assert {(value >> 62) & 0b11 for value in made} == {0b10}
