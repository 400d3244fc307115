"""Images load as a reader needs them: later article images lazily, every image sized.

A long article fetched every one of its images (up to 4096 px each) as it opened, and the
edit page's thumbnails and the article's images had no height, so the text jumped as each
arrived.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

from flask import Flask

from bastion.content.rendering import render_markdown, sanitise_html
from bastion.extensions import db
from bastion.models import Upload
from tests.factories import ArticleFactory
from tests.support.auth import csrf_token
from tests.support.roles import client_for
from tests.uploads import corpus

UPLOADS = ["/uploads/" + f"{n:032x}" for n in (1, 2, 3)]
LAZY = {"loading": "lazy", "decoding": "async"}


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.found.append(dict(attrs))


def _images(html: str) -> list[dict[str, str | None]]:
    parser = _Images()
    parser.feed(html)
    return parser.found


def test_uploaded_images_after_the_first_load_lazily() -> None:
    source = "\n\n".join(
        [
            f"![a]({UPLOADS[0]})",
            "![gone](https://example.org/x.png)",
            f"[![b]({UPLOADS[1]})](https://example.org)",
            f"![c]({UPLOADS[2]}?size=64)",
        ]
    )
    first, remote, linked, small = _images(render_markdown(source))
    assert first == {"src": UPLOADS[0], "alt": "a"}  # the lead picture: not delayed
    assert remote == {"alt": "gone"}  # loads nothing: nothing to hint
    assert linked == {"src": UPLOADS[1], "alt": "b", **LAZY}
    assert small == {"src": f"{UPLOADS[2]}?size=64", "alt": "c", **LAZY}


def test_the_sanitiser_keeps_only_the_renderers_own_loading_hints() -> None:
    kept = sanitise_html(f'<img src="{UPLOADS[0]}" loading="lazy" decoding="async">')
    assert _images(kept) == [{"src": UPLOADS[0], **LAZY}]
    for hostile in (
        'loading="eager" decoding="sync"',
        'loading="LAZY " decoding=""',
        'loading="lazy onerror=x"',
        'fetchpriority="high" srcset="/x 2x"',
        'width="100%" height="0"',
        'width="99999" height="1 onerror=x"',
        'width="-5" height="0x10"',
    ):
        html = sanitise_html(f'<img src="{UPLOADS[0]}" {hostile}>')
        assert _images(html) == [{"src": UPLOADS[0]}], hostile
    assert sanitise_html('<a href="https://example.org" loading="lazy">x</a>') == (
        '<a href="https://example.org" rel="nofollow noopener noreferrer">x</a>'
    )


def test_uploaded_images_carry_the_size_the_render_was_told() -> None:
    """Once per render, for the uploads shown without ``?size=``; an unknown id gets none."""
    asked: list[list[str]] = []

    def sizes(ids: object) -> dict[str, tuple[int, int]]:
        asked.append(list(ids))  # type: ignore[call-overload]
        return {UPLOADS[0].removeprefix("/uploads/"): (640, 480)}

    source = f"![a]({UPLOADS[0]}) ![b]({UPLOADS[1]}) ![a again]({UPLOADS[0]}) ![c]({UPLOADS[0]}?size=64)"
    found = _images(render_markdown(source, sizes))
    assert [(i.get("width"), i.get("height")) for i in found] == [
        ("640", "480"), (None, None), ("640", "480"), (None, None)
    ]
    assert asked == [sorted(u.removeprefix("/uploads/") for u in UPLOADS[:2])]
    assert render_markdown("No pictures.", sizes) == "<p>No pictures.</p>\n" and len(asked) == 1
    # Markdown cannot set them: the attribute syntax is not enabled, raw HTML is escaped.
    typed = f'![a]({UPLOADS[0]} "t"){{width=9}} <img src="{UPLOADS[0]}" width="9">'
    assert [(i.get("width"), i.get("height")) for i in _images(render_markdown(typed))] == [
        (None, None)
    ]


def test_an_articles_page_and_its_edit_page_load_images_as_needed(app: Flask) -> None:
    article = ArticleFactory(status="draft", published_at=None)
    client = client_for(app, article.author)
    edit = f"/articles/{article.id}/edit"
    for size in ((60, 20), (30, 90)):
        form = {
            "csrf_token": csrf_token(client, edit),
            "next": edit,
            "image": (io.BytesIO(corpus.png(size)), "d.png", "image/png"),
        }
        resp = client.post(
            f"/articles/{article.id}/images", data=form, content_type="multipart/form-data"
        )
        assert resp.status_code == 302
    page = client.get(edit).get_data(as_text=True)
    thumbs = _images(page)
    # Newest first or not, each thumbnail's box has the image's own shape before it loads.
    assert sorted((t["width"], t["height"]) for t in thumbs) == [("96", "288"), ("96", "32")]
    assert all(t.get("loading") == "lazy" and t.get("decoding") == "async" for t in thumbs)

    sources = sorted(set(re.findall(r"/uploads/[0-9a-f]{32}", page)))
    body = "\n\n".join(f"![p{n}]({src})\n\nText." for n, src in enumerate(sources))
    resp = client.post(
        edit, data={"csrf_token": csrf_token(client, edit), "title": article.title, "body": body}
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    shown = _images(client.get(f"/articles/{article.id}").get_data(as_text=True))
    assert [i.get("loading") for i in shown] == [None, "lazy"]
    stored = db.session.query(Upload).filter_by(article_id=article.id).all()
    assert sorted((u.width, u.height) for u in stored) == [(30, 90), (60, 20)]
    assert sorted((i["src"], i.get("width"), i.get("height")) for i in shown) == sorted(
        (f"/uploads/{u.id}", str(u.width), str(u.height)) for u in stored
    )
