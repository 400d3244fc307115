"""Line breaks count as one character in forms, as the services store and count them.

Browsers send every line break typed in a textarea as CRLF, two characters. The forms'
length checks counted those, the services (and the API) count the stored ``\\n``: text
with many lines within the limit was refused on the page alone.
"""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.content.services import BODY_MAX, COMMENT_MAX
from bastion.extensions import db
from bastion.models import Article, Comment
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for, post

LINE = "A line of a long text.\n"


def _lines(limit: int) -> str:
    """Text within ``limit`` as stored, over it with each line break sent as CRLF."""
    text = LINE * (limit // len(LINE))
    assert len(text) <= limit < len(text.replace("\n", "\r\n"))
    return text.rstrip("\n")


def _as_sent(text: str) -> str:
    return text.replace("\n", "\r\n")


@pytest.mark.asvs("V1.1.1", "V2.2.1")
def test_a_comment_within_the_limit_is_posted_whatever_its_line_breaks(app: Flask) -> None:
    article = ArticleFactory()
    text = _lines(COMMENT_MAX)
    resp = post(client_for(app, UserFactory()), f"/articles/{article.id}/comments",
                {"body": _as_sent(text)})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    assert db.session.scalar(db.select(Comment.body)) == text


@pytest.mark.asvs("V1.1.1", "V2.2.1")
def test_an_article_near_its_limit_is_saved_again_from_its_edit_page(app: Flask) -> None:
    """Saved through the API (or typed in the text area), then opened in the
    editor and saved unchanged: refused as "Use at most 100000 characters"."""
    text = _lines(BODY_MAX)
    article = ArticleFactory(body_md=text)
    client = client_for(app, article.author)
    resp = post(client, f"/articles/{article.id}/edit",
                {"title": article.title, "body": _as_sent(text), "publish": "y"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    resp = post(client, "/articles/new", {"title": "Another", "body": _as_sent(text)})
    assert resp.status_code == 302
    assert db.session.scalar(db.select(db.func.count()).select_from(Article)) == 2


@pytest.mark.asvs("V1.1.1", "V2.2.1")
def test_a_comment_edit_within_the_limit_is_saved(app: Flask) -> None:
    comment = CommentFactory(body=_lines(COMMENT_MAX))
    resp = post(client_for(app, comment.author), f"/comments/{comment.id}/edit",
                {"body": _as_sent(comment.body[:-1] + "!")})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]


@pytest.mark.asvs("V2.2.1")
def test_text_over_the_limit_is_still_refused_with_its_message(app: Flask) -> None:
    article = ArticleFactory()
    text = "x" * COMMENT_MAX + "\ny"
    resp = post(client_for(app, UserFactory()), f"/articles/{article.id}/comments",
                {"body": _as_sent(text)})
    assert resp.status_code == 422
    assert f"Use at most {COMMENT_MAX} characters." in resp.get_data(as_text=True)
