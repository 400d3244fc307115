"""Markdown rendering: an allowlist sanitiser, safe link schemes and rel attributes."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from flask import Flask

from bastion.content.rendering import ATTRIBUTES, TAGS, render_markdown, summarise
from bastion.extensions import db
from bastion.models import Article
from tests.content.xss_payloads import PAYLOADS
from tests.factories import UserFactory
from tests.support.roles import client_for, post


@pytest.mark.asvs("V1.2.2", "V1.3.1", "V1.3.5")
def test_links_are_marked_and_only_safe_schemes_survive() -> None:
    html = render_markdown(
        "[a](https://example.org) [b](mailto:x@example.org) [c](javascript:alert(1)) "
        "[d](data:text/html,x) [e](vbscript:x)"
    )
    assert '<a href="https://example.org" rel="nofollow noopener noreferrer">a</a>' in html
    assert 'href="mailto:x@example.org"' in html
    for scheme in ("javascript:", "data:", "vbscript:"):
        assert f'href="{scheme}' not in html


UPLOAD = "/uploads/" + "0123456789abcdef" * 2


@pytest.mark.asvs("V1.3.5", "V3.5.3")
@pytest.mark.parametrize("src", [UPLOAD, f"{UPLOAD}?size=64"])
def test_images_of_this_sites_uploads_are_kept(src: str) -> None:
    assert render_markdown(f"![cat]({src})") == f'<p><img src="{src}" alt="cat"></p>\n'


@pytest.mark.asvs("V1.3.5", "V3.5.3")
@pytest.mark.parametrize(
    "source",
    [
        "![x](/admin/audit.csv?since=0001-01-01)",  # a GET with an effect, as the reader
        "![x][r]\n\n[r]: /admin/audit.csv",
        "![x](/auth/logout)",
        f"![x]({UPLOAD}/delete)",
        f"![x]({UPLOAD}/../../admin/audit.csv)",
        f"![x]({UPLOAD}?size=64&next=/admin/audit.csv)",
        f"![x]({UPLOAD.upper()})",
        f"![x](//evil.example{UPLOAD})",
        f"![x](https://evil.example{UPLOAD})",
        "![x](https://example.org/i.png)",  # remote images: tracking, and CSP blocks them
        "![x](data:image/png;base64,AAAA)",
        "[![x](/admin/audit.csv)](/admin/audit.csv)",
    ],
)
def test_images_of_any_other_address_lose_their_source(source: str) -> None:
    parser = _Tags()
    parser.feed(render_markdown(source))
    images = [dict(attrs) for tag, attrs in parser.found if tag == "img"]
    assert images == [{"alt": "x"}], source


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


def test_headings_nest_under_the_pages_own_h1() -> None:
    """An author's "#" was dropped to a loose line of text (the page's h1 is the title);
    every level now moves one down, so the page keeps a single h1 and an outline."""
    html = render_markdown("# Top\n\n## Sub\n\n##### Five\n\n###### Six\n\ntext")
    assert html == "<h2>Top</h2>\n<h3>Sub</h3>\n<h6>Five</h6>\n<h6>Six</h6>\n<p>text</p>\n"
    assert "<h1" not in render_markdown("<h1>raw</h1>\n\n# md")


def test_struck_through_text_keeps_its_strike() -> None:
    """markdown-it writes ``<s>``, which the allowlist dropped: the words stayed and the
    strike was lost. It is written as ``<del>`` now; raw ``<s>`` stays text."""
    assert render_markdown("~~Tuesday~~ Wednesday") == "<p><del>Tuesday</del> Wednesday</p>\n"
    assert render_markdown("| a |\n|---|\n| ~~x~~ |").count("<del>x</del>") == 1
    assert "<s>" not in render_markdown("<s>raw</s> ~~md~~")
    assert summarise("~~Tuesday~~ Wednesday") == "Tuesday Wednesday"


def test_raw_html_is_text_and_summary_is_plain() -> None:
    assert render_markdown("<b>x</b>") == "<p>&lt;b&gt;x&lt;/b&gt;</p>\n"
    assert summarise("# Title\n\nSome **bold** text") == "Some bold text"


def test_summaries_are_the_prose_not_headings_tables_or_code() -> None:
    """They ran together: "Field notes Some thoughts Comparison Engine Year 1822 ..."."""
    body = ("# Field notes\n\nSome *thoughts*.\n\n## Comparison\n\n| Engine | Year |\n"
            "|---|---|\n| Difference | 1822 |\n\n```\ncode()\n```\n\nThe end.")
    assert summarise(body) == "Some thoughts. The end."
    # Nothing but a heading and a table: their text is all there is to show.
    assert summarise("# Only\n\n| a |\n|---|\n| 1 |") == "Only a 1"


@pytest.mark.asvs("V1.2.1", "V1.1.2")
def test_summary_is_text_escaped_once_where_shown(app: Flask) -> None:
    editor = UserFactory(role_name="editor")
    body = "Tom & Jerry <3 \"quoted\" <script>alert(1)</script>"
    resp = post(client_for(app, editor), "/articles/new",
                {"title": "Cartoons", "body": body, "publish": "y"})
    assert resp.status_code == 302
    article = db.session.scalar(db.select(Article))
    assert article.summary == 'Tom & Jerry <3 "quoted" <script>alert(1)</script>'
    page = client_for(app).get("/articles").get_data(as_text=True)
    assert "Tom &amp; Jerry &lt;3 &#34;quoted&#34; &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp;amp;" not in page
    assert "<script>alert(1)" not in page
