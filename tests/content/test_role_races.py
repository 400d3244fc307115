"""Other people's content changed by an admin demoted, disabled or signed out meanwhile,
on SQLite and PostgreSQL.

An admin edits, unpublishes or deletes any article or comment by virtue of the role alone.
The request judged that role on the account it loaded at its start: one whose role change,
disabling or "sign out everywhere" committed before its write still made that one change.
The services now judge it again under the admin's row lock, which those changes also take
(after the admins' lock); so does an author's change to their own content
(tests/content/test_own_content_races.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.exceptions import Forbidden

from bastion.content import services as content
from bastion.extensions import db
from bastion.models import Article, AuditEvent, Comment, User
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.meanwhile import (
    after_the_call,
    before_the_lock,
    deleted,
    demotable_admin,
    demoted,
    disabled,
    signed_out_everywhere,
)
from tests.support.roles import client_for, post

ASVS = ("V8.2.1", "V8.2.2", "V8.3.1")


def _admin_and_others() -> tuple[User, Article, Comment]:
    boss = demotable_admin()
    article = ArticleFactory(title="Their words", body_md="Their body")
    comment = CommentFactory(article=article, body="A reader's view")
    return boss, article, comment


ACTIONS: dict[str, Callable[[User, Article, Comment], object]] = {
    "edit article": lambda a, art, _c: content.update_article(a, art, title="Overwritten"),
    "unpublish article": lambda a, art, _c: content.update_article(a, art, publish=False),
    "delete article": lambda a, art, _c: content.delete_article(a, art),
    "edit comment": lambda a, _art, c: content.update_comment(a, c, "Overwritten"),
    "delete comment": lambda a, _art, c: content.delete_comment(a, c),
}


def _untouched(article_id: int, comment_id: int) -> None:
    db.session.expire_all()
    article = db.session.get(Article, article_id)
    comment = db.session.get(Comment, comment_id)
    assert article is not None and comment is not None
    assert (article.title, article.status) == ("Their words", "published")
    assert comment.body == "A reader's view"
    moderated = select(AuditEvent.event).where(AuditEvent.event.like("%_by_admin")
                                               | (AuditEvent.event == "comment.moderated"))
    assert db.session.scalars(moderated).all() == []


def _denials() -> list[dict[str, Any]]:
    db.session.expire_all()
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    return [row.details for row in rows]


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("change", ["demoted", "disabled"])
def test_an_admin_demoted_or_disabled_meanwhile_changes_nothing_of_others(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str, change: str
) -> None:
    boss, article, comment = _admin_and_others()
    article_id, comment_id = article.id, comment.id
    locked = before_the_lock(app, monkeypatch, content, boss.id,
                             demoted() if change == "demoted" else disabled)

    with pytest.raises(Forbidden) as refused:
        ACTIONS[action](boss, article, comment)

    assert refused.value.description == content.NO_LONGER_ALLOWED
    assert locked == [boss.id]
    _untouched(article_id, comment_id)
    target = article_id if action.endswith("article") else comment_id
    verb = action.split()[0].replace("unpublish", "edit")
    noun = action.split()[1]
    assert _denials() == [{"hidden": False, "what": f"{verb} {noun} {target}"}]


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_an_admin_still_an_admin_under_the_lock_acts(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Judged again, a role that still allows the change is no refusal (another admin's
    demotion committing meanwhile changes nothing for this one)."""
    boss, article, comment = _admin_and_others()
    bystander = UserFactory(role_name="admin")
    before_the_lock(app, monkeypatch, content, bystander.id, demoted())

    ACTIONS[action](boss, article, comment)

    assert _denials() == []


@pytest.mark.asvs(*ASVS)
def test_an_editor_demoted_meanwhile_writes_no_article(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = UserFactory(role_name="editor")
    writer_id = writer.id
    before_the_lock(app, monkeypatch, content, writer_id, demoted("viewer"))

    with pytest.raises(Forbidden, match="no longer do this"):
        content.create_article(writer, title="Late", body="Written as a viewer", publish=True)

    db.session.expire_all()
    assert db.session.scalars(select(Article)).all() == []
    assert _denials() == [{"hidden": False, "what": "create article"}]


@pytest.mark.asvs(*ASVS)
def test_a_demotion_during_the_change_waits_for_it(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started while the admin's deletion holds their lock, the demotion (admins' lock, then
    the user's) waits for it to commit, then commits itself: no deadlock, no lost change."""
    boss, _article, comment = _admin_and_others()
    boss_id, comment_id = boss.id, comment.id
    demotion = after_the_call(app, monkeypatch, content, "lock_user", boss_id, demoted())

    content.delete_comment(boss, comment)
    demotion.finish()

    assert demotion.held_up  # started under the deletion's lock, it waited for its commit

    db.session.expire_all()
    assert db.session.get(Comment, comment_id) is None
    stored = db.session.get(User, boss_id)
    assert stored is not None and stored.role_name == "editor"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "comment.moderated"))
    assert event is not None and event.actor_id == boss_id


# ------------------------------------------------------------------------------ pages ---
@pytest.mark.asvs(*ASVS, "V16.3.2")
def test_the_page_refuses_a_former_admin_with_a_403_and_audits_it(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    boss, article, comment = _admin_and_others()
    client = client_for(app, boss)
    boss_id, comment_id = boss.id, comment.id
    before_the_lock(app, monkeypatch, content, boss_id, demoted())

    resp = post(client, f"/comments/{comment_id}/delete")

    assert resp.status_code == 403
    assert "role or status changed while the request was on its way" in resp.get_data(
        as_text=True)
    _untouched(article.id, comment_id)
    denied = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    assert denied is not None and denied.actor_id == boss_id
    assert denied.details == {"hidden": False, "what": f"delete comment {comment_id}"}


@pytest.mark.asvs(*ASVS, "V7.4.1")
def test_the_page_refuses_an_admin_signed_out_everywhere_meanwhile(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Still an admin, but the sign-in the request came with was ended (a stolen cookie):
    the edit it was making is not saved."""
    boss, article, comment = _admin_and_others()
    client = client_for(app, boss)
    article_id = article.id
    before_the_lock(app, monkeypatch, content, boss.id, signed_out_everywhere)

    resp = post(client, f"/articles/{article_id}/edit",
                {"title": "Overwritten", "body": "Their body", "publish": "y"})

    assert resp.status_code == 403
    assert "signed out meanwhile" in resp.get_data(as_text=True)
    _untouched(article_id, comment.id)


@pytest.mark.asvs(*ASVS, "V7.4.2")
def test_the_page_of_an_admin_deleted_meanwhile_ends_signed_out(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin's account was deleted before the lock: the request ends as every request
    of a deleted account does (a 401 that empties the browser's sign-in), changing nothing."""
    boss, article, comment = _admin_and_others()
    client = client_for(app, boss)
    before_the_lock(app, monkeypatch, content, boss.id, deleted)

    resp = post(client, f"/comments/{comment.id}/delete")

    assert resp.status_code == 401
    assert "this account no longer exists" in resp.get_data(as_text=True)
    assert resp.headers["Clear-Site-Data"] == '"cache", "storage"'
    _untouched(article.id, comment.id)
