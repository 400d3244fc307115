"""Markdown rendering: an allowlist sanitiser, safe link schemes and rel attributes."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from bastion.content.rendering import ATTRIBUTES, TAGS, render_markdown, summarise
from tests.content.xss_payloads import PAYLOADS


@pytest.mark.asvs("V1.2.2", "V1.3.1", "V1.3.5")
def test_links_are_marked_and_only_safe_schemes_survive() -> None:
    html = render_markdown(
        "[a](https://example.org) [b](mailto:x@example.org) [c](javascript:alert(1)) "
        "[d](data:text/html,x) [e](vbscript:x) ![i](https://example.org/i.png)"
    )
    assert '<a href="https://example.org" rel="nofollow noopener noreferrer">a</a>' in html
    assert 'href="mailto:x@example.org"' in html
    for scheme in ("javascript:", "data:", "vbscript:"):
        assert f'href="{scheme}' not in html
    assert '<img src="https://example.org/i.png" alt="i">' in html


class _Tags(HTMLParser):
    """Every tag and attribute in a fragment, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


@pytest.mark.asvs("V1.3.1", "V1.3.5")
@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_payload_survives_as_markup(payload: str) -> None:
    parser = _Tags()
    parser.feed(render_markdown(payload))
    for tag, attrs in parser.found:
        assert tag in TAGS, (payload, tag)
        for name, value in attrs:
            assert name in ATTRIBUTES.get(tag, set()) | {"rel"}, (payload, tag, name)
            if name in ("href", "src"):
                assert (value or "").split(":")[0].lower() in ("http", "https", "mailto") or (
                    ":" not in (value or "")
                ), (payload, value)


def test_raw_html_is_text_and_summary_is_plain() -> None:
    assert render_markdown("<b>x</b>") == "<p>&lt;b&gt;x&lt;/b&gt;</p>\n"
    assert summarise("# Title\n\nSome **bold** text") == "Title Some bold text"
