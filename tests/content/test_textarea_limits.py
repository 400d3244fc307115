"""Text areas take every character; the server says when a text is too long, and keeps it.

A Length validator gave each text area a ``maxlength``, which browsers count in UTF-16 code
units while the server counts characters (code points): a comment of emoji was cut, without
a word, at half the length the server accepts.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from flask import Flask

from bastion.admin.services import REASON_MAX
from bastion.content.services import BODY_MAX, COMMENT_MAX
from bastion.extensions import db
from bastion.models import Comment
from bastion.profiles.services import BIO_MAX
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import age_reauthentication, client_for, post

EMOJI = "\U0001f600"  # one code point, two UTF-16 code units (what maxlength counts)
UNITS = len(EMOJI.encode("utf-16-le")) // 2


class _TextAreas(HTMLParser):
    """Every text area's attributes and text, by name."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.text: dict[str, str] = {}
        self._in: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "textarea":
            self._in = str(dict(attrs).get("name"))
            self.attrs[self._in] = dict(attrs)
            self.text[self._in] = ""

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self.text[self._in] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._in = None


def _assert_takes_astral_text(html: str, limits: dict[str, int]) -> _TextAreas:
    """Each named text area is there, and a browser would let ``limit`` emoji into it."""
    areas = _TextAreas(html)
    for name, limit in limits.items():
        assert name in areas.attrs, (name, sorted(areas.attrs))
        maxlength = areas.attrs[name].get("maxlength")
        assert maxlength is None or int(maxlength) >= UNITS * limit, (name, maxlength)
    return areas


@pytest.mark.asvs("V2.2.1")
def test_no_text_area_cuts_what_the_server_accepts(app: Flask) -> None:
    """Every text area of the site: article body, comment (new and edited), bio, and the
    admin's reason for a two-factor reset."""
    editor, admin = UserFactory(role_name="editor"), UserFactory(role_name="admin")
    article = ArticleFactory(author=editor)
    comment = CommentFactory(article=article, author=editor)
    target = UserFactory(role_name="editor", two_factor=True)
    client = client_for(app, editor)
    pages = {
        "/articles/new": {"body": BODY_MAX},
        f"/articles/{article.id}/edit": {"body": BODY_MAX},
        f"/articles/{article.id}": {"body": COMMENT_MAX},
        f"/comments/{comment.id}/edit": {"body": COMMENT_MAX},
        "/account": {"bio": BIO_MAX},
    }
    for path, limits in pages.items():
        resp = client.get(path)
        assert resp.status_code == 200, path
        _assert_takes_astral_text(resp.get_data(as_text=True), limits)
    as_admin = client_for(app, admin)
    age_reauthentication(admin, 0)  # the reset form asks for a fresh sign-in first
    resp = as_admin.get(f"/admin/users/{target.id}/2fa-reset")
    assert resp.status_code == 200
    _assert_takes_astral_text(resp.get_data(as_text=True), {"reason": REASON_MAX})


@pytest.mark.asvs("V2.2.1")
def test_a_comment_of_emoji_up_to_the_limit_is_posted(app: Flask) -> None:
    """COMMENT_MAX emoji are 2 * COMMENT_MAX UTF-16 units: past the old ``maxlength``."""
    article = ArticleFactory()
    client = client_for(app, UserFactory())
    html = client.get(f"/articles/{article.id}").get_data(as_text=True)
    _assert_takes_astral_text(html, {"body": COMMENT_MAX})
    resp = post(client, f"/articles/{article.id}/comments", {"body": EMOJI * COMMENT_MAX})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    assert db.session.scalar(db.select(Comment.body)) == EMOJI * COMMENT_MAX


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("where", ["new comment", "edited comment", "article"])
def test_an_over_long_text_is_refused_with_its_message_and_kept(app: Flask, where: str) -> None:
    """One character too many: the field's own message, the whole text back in the text
    area (not cut to fit), and that text area still taking it."""
    author = UserFactory(role_name="editor")
    article = ArticleFactory(author=author)
    comment = CommentFactory(article=article, author=author, body="Before.")
    client = client_for(app, author)
    if where == "article":
        # ASCII with some emoji: 100,001 emoji would be over the request size limit.
        limit, text = BODY_MAX, "x" * (BODY_MAX - 999) + EMOJI * 1000
        resp = post(client, f"/articles/{article.id}/edit",
                    {"title": article.title, "body": text, "revision": ""})
    else:
        limit, text = COMMENT_MAX, EMOJI * (COMMENT_MAX + 1)
        path = (f"/articles/{article.id}/comments" if where == "new comment"
                else f"/comments/{comment.id}/edit")
        resp = post(client, path, {"body": text})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert f"Use at most {limit} characters." in html
    areas = _assert_takes_astral_text(html, {"body": limit})
    assert areas.text["body"].strip("\r\n") == text
    db.session.expire_all()
    assert db.session.get(Comment, comment.id).body == "Before."  # type: ignore[union-attr]
