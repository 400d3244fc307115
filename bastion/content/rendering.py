"""Markdown to safe HTML: render with markdown-it, then sanitise with an allowlist (nh3).

Articles keep the HTML rendered when they are written; only writes and profile pages (a
bio) render. markdown-it therefore loads on the first render instead of in every worker's
start-up, where it cost about 60 ms of CPU.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Collection, Mapping
from functools import cache
from typing import TYPE_CHECKING

import nh3

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.parser_block import RuleFuncBlockType
    from markdown_it.parser_inline import RuleFuncInlineType
    from markdown_it.rules_block import StateBlock
    from markdown_it.rules_core import StateCore
    from markdown_it.rules_inline import StateInline
    from markdown_it.token import Token

# Cells a document's tables may still have (kept in the parser's per-render ``env``).
_CELLS_LEFT = "bastion_table_cells_left"
# Characters of addresses and titles the document's reference links may still repeat.
_REFERENCED_LEFT = "bastion_referenced_chars_left"
# ...at least this many, so a short text (a bio) may cite one long address a few times.
REFERENCED_CHARS_MIN = 10_000
# The ``image_sizes`` lookup a render was given (``render_markdown``).
_IMAGE_SIZES = "bastion_image_sizes"

# Upload ids to each one's stored (width, height); ids it does not know are left out.
ImageSizes = Callable[[Collection[str]], Mapping[str, tuple[int, int]]]


@cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt
    from markdown_it.rules_block import table
    from markdown_it.rules_inline.image import image
    from markdown_it.rules_inline.link import link

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )
    md.block.ruler.at("table", _bounded_table(table), {"alt": ["paragraph", "reference"]})
    md.core.ruler.before("inline", "bastion_reference_budget", _reference_budget)
    md.inline.ruler.at("link", _bounded_references(link, "link_open"))
    md.inline.ruler.at("image", _bounded_references(image, "image"))
    md.core.ruler.push("bastion_cell_align", _align_cells)
    md.core.ruler.push("bastion_nest_headings", _nest_headings)
    md.core.ruler.push("bastion_strike_as_del", _strike_as_del)
    md.core.ruler.push("bastion_lazy_images", _lazy_images)
    md.core.ruler.push("bastion_image_sizes", _sized_images)
    return md


def _lazy_images(state: StateCore) -> None:
    """Every uploaded image after the first as ``loading="lazy" decoding="async"``.

    Images further down a long article were all fetched (up to 4096 px each) as the page
    opened, before the reader scrolled to any; lazy ones wait until they near the screen.
    The first stays eager: it is usually in the first screen (an article's lead picture),
    where lazy loading would only delay it. Images that will lose their source (not an
    upload) load nothing and are left alone.
    """
    seen = 0
    for token in state.tokens:
        for child in token.children or ():
            if child.type == "image" and UPLOAD_SRC.match(str(child.attrs.get("src", ""))):
                if seen:
                    child.attrs.update(LAZY_IMAGE)
                seen += 1


def _sized_images(state: StateCore) -> None:
    """``width`` and ``height`` on every uploaded image whose size the render was told.

    A browser that knows an image's size keeps its place while it loads; without it the
    text below jumps down as each image arrives (worst on a phone, halfway through
    reading). The sizes are the stored file's, read from the database by the caller, and
    the stylesheet scales images down to the column keeping that ratio. Authors cannot
    set either attribute: Markdown has no syntax for them and raw HTML is off. A resized
    avatar (``?size=``) is a different size from its file and gets none.
    """
    lookup: ImageSizes | None = state.env.get(_IMAGE_SIZES)
    if lookup is None:
        return
    images = [
        (str(child.attrs["src"]).removeprefix("/uploads/"), child)
        for token in state.tokens
        for child in token.children or ()
        if child.type == "image" and UPLOAD_SRC.match(str(child.attrs.get("src", "")))
    ]
    wanted = {upload_id for upload_id, _ in images if "?" not in upload_id}
    sizes = lookup(sorted(wanted)) if wanted else {}
    for upload_id, image in images:
        if upload_id in sizes:
            width, height = sizes[upload_id]
            image.attrs["width"], image.attrs["height"] = str(width), str(height)


def _strike_as_del(state: StateCore) -> None:
    """``~~text~~`` as ``<del>``, the element the allowlist keeps for it.

    markdown-it writes ``<s>``, which the sanitiser dropped: the words stayed but the strike
    was lost, so a correction ("~~Tuesday~~ Wednesday") read as both. Inline tokens carry
    the strike as children of the block's ``inline`` token.
    """
    for token in state.tokens:
        for child in token.children or ():
            if child.type in ("s_open", "s_close"):
                child.tag = "del"


def _nest_headings(state: StateCore) -> None:
    """Markdown headings one level down: the page's own h1 is the title or the name, so an
    author's ``#`` is an h2 under it (the allowlist has no h1: a top heading was left as a
    loose line of text) and the outline keeps one h1 per page."""
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"


def _align_cells(state: StateCore) -> None:
    """A table column's alignment as ``align``, which the allowlist keeps.

    markdown-it writes it as ``style="text-align:..."``, which the sanitiser drops (so ``:-:``
    was lost) and which the CSP (no ``'unsafe-inline'`` styles) would refuse if allowed.
    """
    for token in state.tokens:
        if token.type in ("th_open", "td_open"):
            style = token.attrs.pop("style", None)
            if isinstance(style, str) and style.startswith("text-align:"):
                token.attrs["align"] = style.removeprefix("text-align:")


def _bounded_table(rule: RuleFuncBlockType) -> RuleFuncBlockType:
    """markdown-it's table rule, with no more cells per document than source characters.

    A GFM table pads short rows with empty cells, so a row of one ``|`` under a wide header
    costs as much as a full row. markdown-it caps that at 65,536 padded cells per table only:
    a 2,000-character bio became 0.7 MB of HTML in 1.8 s on every profile view, and a
    100,000-character article of such tables took 86 s and 5 GB. Written cells take at least
    a character each, so real tables stay within the budget; rows beyond it remain text.
    """

    def bounded(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        if start_line + 1 >= end_line:
            return False
        left: int = state.env.setdefault(_CELLS_LEFT, len(state.src))
        delimiter = state.src[state.bMarks[start_line + 1] : state.eMarks[start_line + 1]]
        columns = delimiter.count("|") + 1  # never fewer than the rule will find
        rows = left // columns  # the header row included; the delimiter row has no cells
        if rows < 1:
            return False
        found = rule(state, start_line, min(end_line, start_line + 1 + rows), silent)
        if found and not silent:
            state.env[_CELLS_LEFT] = left - (state.line - start_line - 1) * columns
        return found

    return bounded


def _reference_budget(state: StateCore) -> None:
    state.env[_REFERENCED_LEFT] = max(len(state.src), REFERENCED_CHARS_MIN)


def _bounded_references(rule: RuleFuncInlineType, kind: str) -> RuleFuncInlineType:
    """markdown-it's link or image rule, with reference links repeating no more address and
    title characters (beyond their own length) per document than it has.

    ``[a]`` repeats the address and title of its definition ``[a]: <url> "title"``, written
    once: a 1,000-character one used 33,000 times made a 100,000-character article 17.5 MB
    of HTML, stored and sent to every reader (and 100 times over by one API list page).
    Real writing cites each definition a few times and stays well within the budget; uses
    beyond it stay text, as a reference to a label that is not defined does.
    """

    def bounded(state: StateInline, silent: bool) -> bool:
        start, first = state.pos, len(state.tokens)
        if not rule(state, silent):
            return False
        if silent or state.src[state.pos - 1] != "]":  # inline forms end with ")"
            return True
        token = next(t for t in state.tokens[first:] if t.type == kind)
        repeated = sum(len(str(token.attrs.get(name, ""))) for name in ("href", "src", "title"))
        cost = max(0, repeated - (state.pos - start))  # beyond what the use spells out
        left: int = state.env.get(_REFERENCED_LEFT, 0)
        if cost <= left:
            state.env[_REFERENCED_LEFT] = left - cost
        elif kind == "image":  # the alt text's tokens are its children: none in the stream
            _as_text(token, state.src[start : state.pos])
        else:  # keep the label's tokens, between the brackets as written
            label_end = state.md.helpers.parseLinkLabel(state, start, True)
            _as_text(token, "[")
            _as_text(state.tokens[-1], state.src[label_end : state.pos])
        return True

    return bounded


def _as_text(token: Token, content: str) -> None:
    token.type, token.tag, token.nesting, token.attrs = "text", "", 0, {}
    token.content, token.children = content, None


TAGS = {
    "p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td",
}
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "loading", "decoding", "width", "height"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
# The renderer's own image hints (``_lazy_images``), kept with these values only.
LAZY_IMAGE = {"loading": "lazy", "decoding": "async"}
# ``_sized_images``'s values: a stored image's pixels, at most 4096 (bastion.uploads).
IMAGE_DIMENSION = re.compile(r"\A[1-9][0-9]{0,3}\Z")
URL_SCHEMES = {"http", "https", "mailto"}
# The only images a page may load: this site's uploads, as the upload pages print them
# (``/uploads/<id>``, optionally ``?size=<px>``). Any other address would make every reader's
# browser send a GET, with their cookies, to a path the author chose (CSP allows
# ``img-src 'self'``); other images keep their alt text and lose their source.
UPLOAD_SRC = re.compile(r"\A/uploads/[0-9a-f]{32}(?:\?size=[0-9]{1,4})?\Z")


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """nh3 hook: drop an ``<img src>`` that is not one of this site's uploads, and a
    ``loading``/``decoding``/``width``/``height`` that is not a value the renderer writes."""
    if tag == "img" and attribute == "src" and not UPLOAD_SRC.match(value):
        return None
    if tag == "img" and attribute in LAZY_IMAGE and value != LAZY_IMAGE[attribute]:
        return None
    if tag == "img" and attribute in ("width", "height") and not IMAGE_DIMENSION.match(value):
        return None
    return value


def render_markdown(source: str, image_sizes: ImageSizes | None = None) -> str:
    """HTML that can go into a page as-is; raw HTML in the source is never passed through.

    ``image_sizes`` looks up the stored size of the uploads the document shows, once per
    render, so that their ``<img>`` carry it (``_sized_images``)."""
    env = {_IMAGE_SIZES: image_sizes} if image_sizes is not None else {}
    return sanitise_html(_markdown().render(source, env))


def sanitise_html(html: str) -> str:
    """The allowlist every rendered document goes through (markdown-it's own output)."""
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
    """Plain-text summary of Markdown source (see ``summarise_html``)."""
    return summarise_html(render_markdown(source), limit)


def summarise_html(rendered: str, limit: int = 280) -> str:
    """Plain-text summary of ``render_markdown``'s output (escaped by Jinja wherever shown).

    Taking the rendered HTML lets a save parse the Markdown once: parsing is the costly
    step (up to about 2 s for a hostile 100,000-character body), and it was done twice.
    The HTML is unescaped once here so that an article about "Q&A" is not listed as
    "Q&amp;A" (and the cut never lands inside an entity).
    """
    text = _plain(_NOT_PROSE.sub(" ", rendered)) or _plain(rendered)
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


# Headings, tables and code blocks run together in a one-line summary ("Notes Engine Year
# 1822 first..."); the prose says what an article is about. An article with no prose keeps
# all its text. The HTML is the renderer's own, sanitised: these elements never nest and
# are always closed.
_NOT_PROSE = re.compile(r"<(h[1-6]|table|pre)\b[^>]*>.*?</\1>", re.S)


def _plain(fragment: str) -> str:
    return " ".join(html.unescape(nh3.clean(fragment, tags=set())).split())
