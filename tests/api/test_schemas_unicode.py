"""The display-name pattern is written out in the source; it must match Unicode's tables."""

from __future__ import annotations

import re

from bastion.api.schemas import _NAME_REFUSED, DISPLAY_NAME, _no_chars_of
from bastion.profiles.services import BLANK_LETTERS, REFUSED_CATEGORIES


def test_written_out_pattern_matches_this_pythons_unicode_tables() -> None:
    assert _no_chars_of(REFUSED_CATEGORIES, BLANK_LETTERS) == f"^[^{_NAME_REFUSED}]*$"


def test_display_name_pattern_says_what_the_profile_service_accepts() -> None:
    """The document's display-name pattern and the service agree on every character of the
    Basic Multilingual Plane (and a few beyond), alone, between spaces and between letters.

    Refused characters aside: the service strips a surrounding tab or line separator before
    it judges a name, where the pattern refuses it (stricter, never looser)."""
    from bastion.profiles.services import ProfileError, clean_profile

    def stored(name: str) -> bool:
        try:
            clean_profile(name, "")
        except ProfileError:
            return False
        return True

    pattern, allowed = re.compile(DISPLAY_NAME), re.compile(f"[^{_NAME_REFUSED}]")
    codes = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    for code in [*codes, 0xE0001, 0xE0041, 0xE0100, 0x1F600, 0x1D173, 0x20000]:
        for name in (chr(code), f" {chr(code)} ", f"a{chr(code)}b"):
            if not allowed.fullmatch(chr(code)):
                assert not pattern.fullmatch(name), hex(code)
            else:
                assert bool(pattern.fullmatch(name)) == stored(name), hex(code)


def test_pattern_refuses_control_and_format_characters() -> None:
    pattern = re.compile(DISPLAY_NAME)
    assert pattern.match("Ada Lovelace")
    for bad in ("a\u202eb", "zero\u200bwidth", "bell\x07", "tag\U000e0041", "\u3164",
                "x\u2028y", "\ue000"):
        assert not pattern.match(bad), ascii(bad)


def test_text_patterns_say_what_the_content_service_accepts() -> None:
    """The API document's title and body patterns and the service that stores them agree on
    every character of the Basic Multilingual Plane, alone and between letters."""
    from bastion.api.schemas import TEXT, TITLE
    from bastion.content.services import ContentError, _clean_text

    def stored(value: str, field: str) -> bool:
        try:
            _clean_text(value, field, 10)
        except ContentError:
            return False
        return True

    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # surrogates are no characters of their own
        for text in (chr(code), f"a{chr(code)}b"):
            assert bool(re.match(TITLE, text)) == stored(text, "title"), hex(code)
            assert bool(re.match(TEXT, text)) == stored(text, "body"), hex(code)


def test_text_patterns_agree_beyond_the_basic_plane() -> None:
    """Tags, variation selectors and musical format characters draw nothing; emoji do."""
    from bastion.api.schemas import TEXT, TITLE
    from bastion.content.services import ContentError, _clean_text

    for code in (0x1BCA0, 0x1BCA3, 0x1D173, 0x1D17A, 0xE0001, 0xE0041, 0xE0100, 0xE0FFF,
                 0x1F600, 0x10000, 0x1D400, 0x20000):
        for text in (chr(code), f"a{chr(code)}b", chr(code) * 3):
            try:
                _clean_text(text, "title", 10)
                stored = True
            except ContentError:
                stored = False
            assert bool(re.match(TITLE, text)) == stored, hex(code)
            assert bool(re.match(TEXT, text)) == stored, hex(code)
    assert not re.match(TITLE, "\U000e0041\U000e0042") and re.match(TITLE, "\U0001f600")
