"""``crypto.secrets.random_string``: the right length and alphabet, and every character equally
likely (rejection sampling, no modulo bias)."""

from __future__ import annotations

import string
from collections import Counter

import pytest

from authgate.crypto import secrets


@pytest.mark.parametrize(
    "alphabet", [secrets.ALPHABET, string.ascii_lowercase + string.digits, "ab", "abc"]
)
def test_length_and_alphabet(alphabet: str) -> None:
    for length in (0, 1, 10, 40, 300):
        value = secrets.random_string(length, alphabet)
        assert len(value) == length
        assert set(value) <= set(alphabet)


@pytest.mark.parametrize("alphabet", [secrets.ALPHABET, string.ascii_lowercase + string.digits])
def test_every_character_is_equally_likely(alphabet: str) -> None:
    """Without rejection, ``byte % 62`` would make the first 8 characters 5/4 as likely as the
    rest; a chi-squared statistic over 124,000 draws tells the two apart by far."""
    size = len(alphabet)
    draws = 2000 * size
    counts = Counter(secrets.random_string(draws, alphabet))
    assert set(counts) == set(alphabet)
    expected = draws / size
    chi2 = sum((counts[c] - expected) ** 2 / expected for c in alphabet)
    # The 99.99th percentile of chi-squared with 61 degrees of freedom is about 118; modulo
    # bias would give several hundred.
    assert chi2 < 2.2 * size, chi2


def test_values_do_not_repeat() -> None:
    assert len({secrets.random_string(40) for _ in range(2000)}) == 2000
    assert len({secrets.generate("at").value for _ in range(500)}) == 500


@pytest.mark.parametrize("alphabet", ["a", "aa", "é" + string.ascii_letters, "x" * 129])
def test_unusable_alphabets_are_refused(alphabet: str) -> None:
    with pytest.raises(ValueError, match="alphabet"):
        secrets.random_string(5, alphabet)


def test_derived_secrets_are_well_formed_deterministic_and_keyed() -> None:
    """``derive``: a token of the usual form that the same key and source always give, and
    that another key or another source does not."""
    source = secrets.generate("rt").value
    one = secrets.derive("rt", b"k" * 32, source)
    assert secrets.parse(one.value, "rt") == one
    assert one == secrets.derive("rt", b"k" * 32, source)
    assert one.value != secrets.derive("rt", b"j" * 32, source).value
    assert one.value != secrets.derive("rt", b"k" * 32, source + "x").value
    # Many derivations: prefixes from the prefix alphabet, no two alike.
    chain = [one]
    for _ in range(200):
        chain.append(secrets.derive("rt", b"k" * 32, chain[-1].value))
    assert len({s.value for s in chain}) == len({s.prefix for s in chain}) == 201
    assert all(set(s.prefix) <= set(string.ascii_lowercase + string.digits) for s in chain)
