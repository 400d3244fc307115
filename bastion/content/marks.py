"""How many combining marks stack on one letter, for the rules that refuse "Zalgo" text.

Combining marks draw on the character before them; dozens on one letter make a column
that covers the lines above and below (other people's comments, bylines, list entries).
Real writing needs a few: Vietnamese two, Thai three, pointed Hebrew with cantillation
and Sanskrit in Tibetan script up to about six.
"""

from __future__ import annotations

import unicodedata

# Nonspacing and enclosing marks; spacing marks (Mc) take room of their own and cannot stack.
MARK_CATEGORIES = frozenset({"Mn", "Me"})
# For one-line text that sits among other lines: display names and article titles.
MAX_MARKS_IN_LINE = 4
# For prose: article bodies, comments and bios.
MAX_MARKS_IN_PROSE = 8


def longest_mark_run(text: str) -> int:
    """The most combining marks in a row anywhere in ``text``."""
    longest = run = 0
    for char in text:
        if unicodedata.category(char) in MARK_CATEGORIES:
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    return longest


def too_many_marks(limit: int) -> str:
    """The refusal message for text beyond ``limit``."""
    return f"Use at most {limit} accents or marks on one letter."
