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


def is_common(password: str) -> bool:
    return password.casefold() in _entries()


def size() -> int:
    return len(_entries())
