"""Two people saving one article: the second save must not silently undo the first.

The edit form carries the version it was loaded from (``revision``); a save over a version
someone else saved meanwhile is re-shown unsaved (409) with the editor's text kept. The
race itself is made deterministic as in ``test_hostile_review``: a wrapped function saves
from another connection between the page loading the article and the service locking it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from bastion.content import services as content
from bastion.extensions import db
from bastion.models import Article
from tests.factories import ArticleFactory, UserFactory
from tests.support.roles import client_for, post

REVISION_RE = re.compile(r'name="revision" type="hidden" value="([0-9a-f]*)"')


def _revision_on(client: FlaskClient, path: str) -> str:
    """The version an edit page (or a re-shown form) says it was loaded from."""
    match = REVISION_RE.search(client.get(path).get_data(as_text=True))
    assert match, f"no revision field on {path}"
    return match.group(1)


def _saved(article_id: int) -> tuple[str, str, str]:
    db.session.expire_all()
    article = db.session.get(Article, article_id)
    assert article is not None
    return article.title, article.body_md, article.status


@pytest.mark.asvs("V2.3.3")
def test_saving_over_someone_elses_save_is_refused_and_keeps_both_texts(app: Flask) -> None:
    """The author and an admin both open the editor; the admin saves first. The author's
    save overwrote the admin's fix without either of them knowing."""
    article = ArticleFactory(title="Draft title", body_md="Original", status="published")
    path = f"/articles/{article.id}/edit"
    author = client_for(app, article.author)
    admin = client_for(app, UserFactory(role_name="admin", two_factor=True))
    authors_base = _revision_on(author, path)
    resp = post(admin, path, {"title": "Fixed title", "body": "Admin fix", "publish": "y",
                              "revision": _revision_on(admin, path)})
    assert resp.status_code == 302

    mine = {"title": "Author title", "body": "Author text", "publish": "y"}
    resp = post(author, path, {**mine, "revision": authors_base})
    assert resp.status_code == 409
    html = resp.get_data(as_text=True)
    assert "Someone else saved this article after you opened it" in html
    assert "Author text" in html and 'value="Author title"' in html  # nothing retyped
    assert f'href="/articles/{article.id}"' in html  # the saved version, to compare
    assert "<title>Error: " in html
    assert _saved(article.id) == ("Fixed title", "Admin fix", "published")

    # Saving again from the re-shown form replaces the version the author was shown.
    current = REVISION_RE.search(html)
    assert current and current.group(1) != authors_base
    assert post(author, path, {**mine, "revision": current.group(1)}).status_code == 302
    assert _saved(article.id) == ("Author title", "Author text", "published")


@pytest.mark.asvs("V2.3.3")
def test_a_double_submitted_edit_is_saved_once_without_a_conflict(app: Flask) -> None:
    """The second copy of a double click finds its own first copy saved: no conflict."""
    article = ArticleFactory(title="T", body_md="Before")
    path = f"/articles/{article.id}/edit"
    client = client_for(app, article.author)
    form = {"title": "T2", "body": "After", "publish": "y", "revision": _revision_on(client, path)}
    assert post(client, path, form).status_code == 302
    assert post(client, path, form).status_code == 302
    assert _saved(article.id) == ("T2", "After", "published")


def _save_meanwhile(monkeypatch: pytest.MonkeyPatch, article_id: int, title: str) -> None:
    """The first render_markdown call first saves another title from another connection,
    as a concurrent save would between this request loading the article and locking it."""
    real: Callable[..., Any] = content.render_markdown
    done: list[bool] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(True)
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE articles SET title = :t WHERE id = :pk"),
                             {"t": title, "pk": article_id})
        return real(*args, **kwargs)

    monkeypatch.setattr(content, "render_markdown", wrapped)


@pytest.mark.asvs("V2.3.3")
def test_a_save_committed_during_the_request_is_not_overwritten(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page had loaded the article before the other save committed: comparing with
    that copy instead of the locked row let the overwrite through."""
    article = ArticleFactory(title="Old", body_md="Body", status="published")
    path = f"/articles/{article.id}/edit"
    client = client_for(app, article.author)
    base = _revision_on(client, path)
    _save_meanwhile(monkeypatch, article.id, "Saved meanwhile")
    resp = post(client, path, {"title": "Mine", "body": "Mine", "publish": "y", "revision": base})
    assert resp.status_code == 409
    assert _saved(article.id) == ("Saved meanwhile", "Body", "published")


@pytest.mark.asvs("V2.3.3")
def test_the_service_refuses_an_edit_of_an_older_version(app: Flask) -> None:
    """The rule lives in the service, so every caller that knows its base version gets it."""
    article = ArticleFactory(title="One", body_md="Body")
    base = content.revision(article)
    content.update_article(article.author, article, title="Two")
    with pytest.raises(content.EditConflictError):
        content.update_article(article.author, article, title="Three", expected_revision=base)
    assert _saved(article.id)[0] == "Two"
    content.update_article(article.author, article, title="Three",
                           expected_revision=content.revision(article))
    assert _saved(article.id)[0] == "Three"


@pytest.mark.asvs("V2.3.3")
def test_a_stale_comment_edit_does_not_undo_a_moderators_change(app: Flask) -> None:
    """An admin removes a phone number from a comment while its author has the editor open;
    the author's save put it back without anyone knowing."""
    from tests.factories import CommentFactory

    comment = CommentFactory(body="Call me at 555-0100")
    path = f"/comments/{comment.id}/edit"
    author = client_for(app, comment.author)
    admin = client_for(app, UserFactory(role_name="admin", two_factor=True))
    authors_base = _revision_on(author, path)
    resp = post(admin, path, {"body": "[number removed]", "revision": _revision_on(admin, path)})
    assert resp.status_code == 302

    resp = post(author, path, {"body": "Call me at 555-0100, really", "revision": authors_base})
    assert resp.status_code == 409
    html = resp.get_data(as_text=True)
    assert "Someone else changed this comment after you opened it" in html
    assert "Call me at 555-0100, really" in html
    db.session.expire_all()
    assert db.session.get(type(comment), comment.id).body == "[number removed]"

    # Saved again from the re-shown form: a deliberate replacement. A double submit of the
    # same text is no conflict either.
    current = REVISION_RE.search(html)
    assert current and current.group(1) != authors_base
    assert post(author, path, {"body": "Sorry", "revision": current.group(1)}).status_code == 302
    assert post(author, path, {"body": "Sorry", "revision": current.group(1)}).status_code == 302
    db.session.expire_all()
    assert db.session.get(type(comment), comment.id).body == "Sorry"


def test_an_unconditional_comment_edit_writes_its_text_over_a_change_made_meanwhile(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a base version the last save wins. Compared with the copy loaded before
    the lock, the author's text (as it was then) looked unchanged and was never written,
    yet the save was reported done and the moderator's text stayed."""
    from tests.factories import CommentFactory

    comment = CommentFactory(body="Original words")
    comment_id = comment.id
    real = content.lock_user

    def moderated_first(user_id: int) -> None:
        """Just before the service's first lock (the author's, then the comment's)."""
        monkeypatch.setattr(content, "lock_user", real)
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE comments SET body = 'Moderated' WHERE id = :pk"),
                         {"pk": comment_id})
        real(user_id)

    monkeypatch.setattr(content, "lock_user", moderated_first)
    saved = content.update_comment(comment.author, comment, "Original words")
    assert saved.body == "Original words"
    db.session.expire_all()
    assert db.session.get(type(comment), comment_id).body == "Original words"  # type: ignore[union-attr]
