"""The display-name pattern is written out in the source; it must match Unicode's tables."""

from __future__ import annotations

import re

from bastion.api.schemas import DISPLAY_NAME, _no_chars_of
from bastion.profiles.services import BLANK_LETTERS, REFUSED_CATEGORIES


def test_written_out_pattern_matches_this_pythons_unicode_tables() -> None:
    assert _no_chars_of(REFUSED_CATEGORIES, BLANK_LETTERS) == DISPLAY_NAME


def test_pattern_refuses_control_and_format_characters() -> None:
    pattern = re.compile(DISPLAY_NAME)
    assert pattern.match("Ada Lovelace")
    for bad in ("a\u202eb", "zero\u200bwidth", "bell\x07", "tag\U000e0041", "\u3164",
                "x\u2028y", "\ue000"):
        assert not pattern.match(bad), ascii(bad)
