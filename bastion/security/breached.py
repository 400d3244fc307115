"""Offline list of common and breached passwords.

The list ships with the project (``data/common-passwords.txt.gz``) so registration never
sends a password, or part of its hash, to a third party.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt.gz"
# The shipped list holds about 187,000 entries; far fewer means a broken or cut-down file.
MIN_ENTRIES = 100_000


class PasswordListError(RuntimeError):
    """The list is missing or damaged: refuse to judge rather than pass every password."""


def list_problem() -> str | None:
    """Why the list cannot be used, or None; cheap enough for start-up (no decompression)."""
    if not DATA.is_file() or DATA.stat().st_size == 0:
        return f"the common-password list {DATA} is missing: reinstall the package"
    return None


@cache
def _entries() -> frozenset[str]:
    # Fail closed: an empty set here used to let "password123456" through, silently.
    if problem := list_problem():
        raise PasswordListError(problem)
    try:
        with gzip.open(DATA, "rt", encoding="utf-8", errors="ignore") as fh:
            entries = frozenset(line.strip().casefold() for line in fh if line.strip())
    except (OSError, EOFError) as exc:
        raise PasswordListError(f"the common-password list {DATA} cannot be read: {exc}") from exc
    if len(entries) < MIN_ENTRIES:
        raise PasswordListError(f"the common-password list {DATA} holds only {len(entries)} entries")
    return entries


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
