"""Markdown to safe HTML: render with markdown-it, then sanitise with an allowlist (nh3).

Articles keep the HTML rendered when they are written; only writes and profile pages (a
bio) render. markdown-it therefore loads on the first render instead of in every worker's
start-up, where it cost about 60 ms of CPU.
"""

from __future__ import annotations

import html
import re
from functools import cache
from typing import TYPE_CHECKING

import nh3

if TYPE_CHECKING:
    from markdown_it import MarkdownIt


@cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )

TAGS = {
    "p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td",
}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"},
              "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}
# The only images a page may load: this site's uploads, as the upload pages print them
# (``/uploads/<id>``, optionally ``?size=<px>``). Any other address would make every reader's
# browser send a GET, with their cookies, to a path the author chose (CSP allows
# ``img-src 'self'``); other images keep their alt text and lose their source.
UPLOAD_SRC = re.compile(r"\A/uploads/[0-9a-f]{32}(?:\?size=[0-9]{1,4})?\Z")


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """nh3 hook: drop an ``<img src>`` that is not one of this site's uploads."""
    if tag == "img" and attribute == "src" and not UPLOAD_SRC.match(value):
        return None
    return value


def render_markdown(source: str) -> str:
    """HTML that can go into a page as-is; raw HTML in the source is never passed through."""
    html = _markdown().render(source)
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
        attribute_filter=_filter_attribute,
    )


def summarise(source: str, limit: int = 280) -> str:
    """Plain-text summary (escaped by Jinja wherever it is shown).

    The sanitiser's output is HTML, entities and all; it is unescaped once here so that an
    article about "Q&A" is not listed as "Q&amp;A" (and the cut never lands inside an entity).
    """
    text = html.unescape(nh3.clean(_markdown().render(source), tags=set()))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
