"""Acting on a comment deep in a long discussion leads back to where it was."""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.content.services import COMMENTS_PER_PAGE
from bastion.extensions import db
from bastion.models import Comment
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for, post


def _discussion(count: int) -> tuple[int, list[Comment]]:
    """An article with ``count`` comments by one viewer, oldest first."""
    article = ArticleFactory(status="published")
    author = UserFactory(role_name="viewer")
    comments = CommentFactory.create_batch(count, article=article, author=author)
    return article.id, comments


@pytest.mark.asvs("V2.2.1")
def test_deleting_a_comment_on_a_later_page_returns_to_that_page(app: Flask) -> None:
    """It went back to the first page: the reader lost their place in the discussion."""
    article_id, comments = _discussion(COMMENTS_PER_PAGE + 2)
    client = client_for(app, comments[0].author)
    resp = post(client, f"/comments/{comments[-1].id}/delete")
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/articles/{article_id}?page=2#comments-heading"
    assert "The comment is deleted." in client.get(resp.headers["Location"]).get_data(
        as_text=True
    )
    # The last comment of page 2 gone, page 2 is gone too: the new last page, not "no
    # comments on this page".
    resp = post(client, f"/comments/{comments[-2].id}/delete")
    assert resp.headers["Location"] == f"/articles/{article_id}#comments-heading"
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count(Comment.id))) == COMMENTS_PER_PAGE


@pytest.mark.asvs("V2.2.1")
def test_cancelling_a_comment_edit_returns_to_the_comment_on_its_page(app: Flask) -> None:
    """Cancel pointed at page 1 with the comment's anchor, which is on page 2."""
    article_id, comments = _discussion(COMMENTS_PER_PAGE + 1)
    last = comments[-1]
    html = client_for(app, last.author).get(f"/comments/{last.id}/edit").get_data(as_text=True)
    assert f'href="/articles/{article_id}?page=2#comment-{last.id}">Cancel</a>' in html


@pytest.mark.asvs("V3.7.2")
def test_signing_in_to_comment_returns_to_the_page_of_comments_read(app: Flask) -> None:
    """"Sign in to comment" under page 2 of the comments came back to page 1."""
    article_id, _ = _discussion(COMMENTS_PER_PAGE + 1)
    html = client_for(app).get(f"/articles/{article_id}?page=2").get_data(as_text=True)
    assert f'href="/auth/login?next=/articles/{article_id}?page%3D2">Sign in</a>' in html
    first = client_for(app).get(f"/articles/{article_id}").get_data(as_text=True)
    assert f'href="/auth/login?next=/articles/{article_id}">Sign in</a>' in first
