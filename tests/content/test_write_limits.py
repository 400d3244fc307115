"""Article and comment saves on the pages count against the account, not the address.

Saving an article renders its Markdown (up to about 2.5 s of CPU for a hostile
100,000-character body); before these budgets only the site-wide 300 a minute per client
bounded an edit, so one account could keep a worker pool busy.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from bastion.extensions import db, limiter
from bastion.models import Article, Comment
from bastion.observability import counters
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for, post


def _from(address: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": address}}


def _edit(client: Any, article: Article, body: str, address: str = "192.0.2.1") -> TestResponse:
    data = {"title": article.title, "body": body}
    return post(client, f"/articles/{article.id}/edit", data, **_from(address))


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_article_edits_are_limited_per_account_whatever_the_address(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "ARTICLE_WRITE_RATE_LIMIT", "2 per minute")
    mine, theirs = ArticleFactory(body_md="old"), ArticleFactory()
    author, other = client_for(app, mine.author), client_for(app, theirs.author)
    # A new address for every save: the count follows the account.
    statuses = [_edit(author, mine, f"v{i}", f"198.51.100.{i}").status_code for i in range(2)]
    assert statuses == [302, 302]
    refused = _edit(author, mine, "v2", "198.51.100.9")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "2"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    page = refused.get_data(as_text=True)
    assert refused.mimetype == "text/html" and "Too Many Requests" in page
    assert "this allows 2 a minute" in page  # the same answer as any other route limit
    db.session.refresh(mine)
    assert mine.body_md == "v1"  # the refused save changed nothing
    # Another account from the same address is unaffected, and reading costs nothing.
    assert _edit(other, theirs, "theirs").status_code == 302
    assert author.get(f"/articles/{mine.id}/edit").status_code == 200


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_writing_and_editing_articles_share_the_budget(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "ARTICLE_WRITE_RATE_LIMIT", "2 per minute")
    editor = UserFactory(role_name="editor")
    client = client_for(app, editor)
    assert post(client, "/articles/new", {"title": "One", "body": "x"}).status_code == 302
    article = db.session.scalar(db.select(Article))
    assert _edit(client, article, "y").status_code == 302
    assert post(client, "/articles/new", {"title": "Two", "body": "x"}).status_code == 429
    assert _edit(client, article, "z").status_code == 429


@pytest.mark.asvs("V2.4.1", "V16.3.3")
def test_comment_writes_are_limited_per_account(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "COMMENT_WRITE_RATE_LIMIT", "2 per minute")
    seen: list[str] = []
    counters.add_sink(lambda name, labels: seen.append(name))
    try:
        article = ArticleFactory(status="published")
        comment = CommentFactory(article=article, body="first")
        author, other = client_for(app, comment.author), client_for(app, UserFactory())
        path = f"/comments/{comment.id}/edit"
        assert post(author, path, {"body": "second"}, **_from("198.51.100.1")).status_code == 302
        added = post(author, f"/articles/{article.id}/comments", {"body": "more"},
                     **_from("198.51.100.2"))
        assert added.status_code == 302
        refused = post(author, path, {"body": "third"}, **_from("198.51.100.3"))
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        db.session.refresh(comment)
        assert comment.body == "second"
        assert post(other, f"/articles/{article.id}/comments", {"body": "hi"}).status_code == 302
    finally:
        counters._sinks.pop()
    assert seen.count("rate_limited") == 1  # counted like any other breach
    assert db.session.scalar(db.select(db.func.count(Comment.id))) == 3


@pytest.mark.asvs("V2.4.1")
def test_a_failing_rate_limit_store_does_not_fail_the_save(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Flask-Limiter's own limits (RATELIMIT_SWALLOW_ERRORS): the write goes through."""

    class Broken:
        def hit(self, *args: Any, **kwargs: Any) -> bool:
            raise ConnectionError("store down")

    article = ArticleFactory()
    client = client_for(app, article.author)
    monkeypatch.setattr(type(limiter), "limiter", property(lambda self: Broken()))
    try:
        assert _edit(client, article, "saved anyway").status_code == 302
    finally:
        limiter._storage_dead = False  # Flask-Limiter noticed too; it is shared by every app
    db.session.refresh(article)
    assert article.body_md == "saved anyway"
