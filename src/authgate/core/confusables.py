"""Confusable skeletons (Unicode Technical Standard #39 §4, "Confusable Detection"): two strings
a person cannot tell apart — "Acme" with a Latin "e" and "Acmе" with a Cyrillic one — have the
same skeleton.

"skeleton(X): 1. Convert X to NFD format. 2. Concatenate the prototypes for each character in
X according to the specified data, producing a string of exemplar characters. 3. Reapply NFD."

The data is Unicode's ``confusables.txt`` as the ``confusable_homoglyphs`` package ships it
(MIT licence; the Unicode data under the Unicode licence), where each mapping "source →
prototype" is kept in both directions. A prototype never maps further, so a character with
several neighbours is a prototype, one with a single neighbour maps to it; a pair of
characters that only map to each other (one source, one prototype) is written as the smaller
of the two, which gives both the same skeleton.
"""

from __future__ import annotations

import unicodedata

from confusable_homoglyphs.confusables import confusables_data

# The package wraps right-to-left characters in LEFT-TO-RIGHT MARKs for display.
_LRM = "\u200e"


def _neighbours(char: str) -> list[str]:
    entries = confusables_data.get(char) or []
    return [str(entry["c"]).replace(_LRM, "") for entry in entries]


def prototype(char: str) -> str:
    """The exemplar ``char`` is confusable with (itself if it is one)."""
    around = _neighbours(char)
    if len(around) != 1:
        return char
    target = around[0]
    if len(target) > 1 or len(_neighbours(target)) != 1:
        return target
    return min(char, target)


def skeleton(text: str) -> str:
    """UTS #39 skeleton of ``text``."""
    mapped = "".join(prototype(c) for c in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped)
