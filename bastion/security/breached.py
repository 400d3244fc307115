"""Offline list of common and breached passwords.

The list ships with the project (``data/common-passwords.txt.gz``) so registration never
sends a password, or part of its hash, to a third party.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt.gz"


@cache
def _entries() -> frozenset[str]:
    if not DATA.exists():
        return frozenset()
    with gzip.open(DATA, "rt", encoding="utf-8", errors="ignore") as fh:
        return frozenset(line.strip().casefold() for line in fh if line.strip())


# Parts shorter than this are too common to say anything (most 3-letter strings are listed).
MIN_PART = 4


def is_common(password: str) -> bool:
    """Listed, or two listed passwords glued together ("password" + "123456").

    Attackers' rule sets try such pairs first, so a long password made of two common ones
    is no stronger than either; a list alone cannot hold every combination.
    """
    entries = _entries()
    folded = password.casefold()
    if folded in entries:
        return True
    return any(
        folded[:i] in entries and folded[i:] in entries
        for i in range(MIN_PART, len(folded) - MIN_PART + 1)
    )


def size() -> int:
    return len(_entries())
