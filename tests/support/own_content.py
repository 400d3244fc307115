"""An author's own articles and comment, for the tests of changes made to one's own
content while the account is changed meanwhile (tests/content/test_own_content_races.py,
tests/api/test_own_content_races.py)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import Article, Comment
from tests.factories import ArticleFactory, CommentFactory, UserFactory

# The ids of an ``Own``: its published article, its draft and its comment.
Ids = tuple[int, int, int]


class Own:
    """An editor's published article, draft and comment (on the published article)."""

    def __init__(self) -> None:
        self.author = UserFactory(role_name="editor")
        self.article = ArticleFactory(author=self.author, title="Mine", body_md="My body")
        self.draft = ArticleFactory(author=self.author, title="My draft", status="draft",
                                    published_at=None)
        self.comment = CommentFactory(article=self.article, author=self.author, body="My view")
        self.ids: Ids = (self.article.id, self.draft.id, self.comment.id)


# The ``what`` of each action's refusal in its ``authz.denied`` audit record.
WHAT: dict[str, Callable[[Ids], str]] = {
    "edit article": lambda ids: f"edit article {ids[0]}",
    "publish article": lambda ids: f"edit article {ids[1]}",
    "unpublish article": lambda ids: f"edit article {ids[0]}",
    "delete article": lambda ids: f"delete article {ids[0]}",
    "edit comment": lambda ids: f"edit comment {ids[2]}",
    "delete comment": lambda ids: f"delete comment {ids[2]}",
    "comment": lambda ids: f"comment on article {ids[0]}",
}
ARTICLE_ACTIONS = sorted(a for a in WHAT if a.endswith("article"))


def untouched(ids: Ids) -> None:
    """The articles and the comment of ``Own`` are as it made them, and no comment added."""
    db.session.expire_all()
    article, draft = db.session.get(Article, ids[0]), db.session.get(Article, ids[1])
    comment = db.session.get(Comment, ids[2])
    assert article is not None and draft is not None and comment is not None
    assert (article.title, article.status) == ("Mine", "published")
    assert (draft.status, draft.published_at) == ("draft", None)
    assert comment.body == "My view"
    assert db.session.scalar(select(func.count(Comment.id))) == 1
