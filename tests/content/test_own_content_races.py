"""An author's changes to their own articles and comments while their account is changed
meanwhile, on the pages and in the services, on SQLite and PostgreSQL.

The request judged the author on the account it loaded at its start. A disabling, a
demotion (an editor's articles), "sign out everywhere" or the account's deletion committed
after that and before the write now stops the write: the services judge every change again
under the actor's row lock, which those changes take too, the author's own as much as an
admin's to someone else's (tests/content/test_role_races.py). Reading takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.exceptions import Forbidden

from bastion.content import services as content
from bastion.extensions import db
from bastion.models import Article, AuditEvent, Comment, User
from tests.factories import UserFactory
from tests.support.meanwhile import (
    AccountChange,
    before_the_lock,
    deleted,
    demoted,
    disabled,
    signed_out_everywhere,
)
from tests.support.own_content import ARTICLE_ACTIONS, WHAT, Ids, Own, untouched
from tests.support.roles import client_for, post

ASVS = ("V8.2.1", "V8.2.2", "V8.3.1")
# What each action calls.
SERVICE: dict[str, Callable[[Own], object]] = {
    "edit article": lambda o: content.update_article(o.author, o.article, title="Rewritten"),
    "publish article": lambda o: content.update_article(o.author, o.draft, publish=True),
    "unpublish article": lambda o: content.update_article(o.author, o.article, publish=False),
    "delete article": lambda o: content.delete_article(o.author, o.article),
    "edit comment": lambda o: content.update_comment(o.author, o.comment, "Rewritten"),
    "delete comment": lambda o: content.delete_comment(o.author, o.comment),
    "comment": lambda o: content.add_comment(o.author, o.article, "Late words"),
}
# The page of each action: its path and form (ids: article, draft, comment).
PAGE: dict[str, Callable[[Ids], tuple[str, dict[str, str]]]] = {
    "edit article": lambda ids: (f"/articles/{ids[0]}/edit",
                                 {"title": "Rewritten", "body": "My body", "publish": "y"}),
    "publish article": lambda ids: (f"/articles/{ids[1]}/edit",
                                    {"title": "My draft", "body": "Draft body", "publish": "y"}),
    "unpublish article": lambda ids: (f"/articles/{ids[0]}/edit",
                                      {"title": "Mine", "body": "My body"}),
    "delete article": lambda ids: (f"/articles/{ids[0]}/delete", {}),
    "edit comment": lambda ids: (f"/comments/{ids[2]}/edit", {"body": "Rewritten"}),
    "delete comment": lambda ids: (f"/comments/{ids[2]}/delete", {}),
    "comment": lambda ids: (f"/articles/{ids[0]}/comments", {"body": "Late words"}),
}


def _denials() -> list[dict[str, Any]]:
    db.session.expire_all()
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    return [row.details for row in rows]


# ---------------------------------------------------------------------------- services ---
@pytest.mark.asvs(*ASVS, "V7.4.2")
@pytest.mark.parametrize("action", sorted(SERVICE))
def test_an_author_disabled_meanwhile_changes_nothing_of_their_own(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    own = Own()
    locked = before_the_lock(app, monkeypatch, content, own.author.id, disabled)

    with pytest.raises(Forbidden) as refused:
        SERVICE[action](own)

    assert refused.value.description == content.NO_LONGER_ALLOWED
    assert locked == [own.author.id]
    untouched(own.ids)
    assert _denials() == [{"hidden": False, "what": WHAT[action](own.ids)}]


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("action", ARTICLE_ACTIONS)
def test_an_editor_demoted_meanwhile_changes_none_of_their_articles(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Editing, publishing, unpublishing and deleting one's articles is the editor role's:
    a viewer again, the author keeps them as they are."""
    own = Own()
    before_the_lock(app, monkeypatch, content, own.author.id, demoted("viewer"))

    with pytest.raises(Forbidden, match="no longer do this"):
        SERVICE[action](own)

    untouched(own.ids)
    assert _denials() == [{"hidden": False, "what": WHAT[action](own.ids)}]


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("action", ["edit comment", "delete comment", "comment"])
def test_an_editor_demoted_meanwhile_still_writes_comments(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Judged again, a role that still allows the change is no refusal: viewers comment."""
    own = Own()
    before_the_lock(app, monkeypatch, content, own.author.id, demoted("viewer"))

    SERVICE[action](own)

    assert _denials() == []


@pytest.mark.asvs(*ASVS, "V7.4.2")
@pytest.mark.parametrize("action", sorted(SERVICE))
def test_an_author_deleted_meanwhile_is_gone_not_served(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    own = Own()
    before_the_lock(app, monkeypatch, content, own.author.id, deleted)

    with pytest.raises(content.ActorGoneError):
        SERVICE[action](own)

    db.session.expire_all()
    assert db.session.scalar(select(func.count(Comment.id))) == 0  # gone with the account


@pytest.mark.asvs(*ASVS)
def test_an_authors_unraced_changes_are_made_under_their_lock(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every change takes the author's lock, and with nothing changed meanwhile (another
    account's demotion committing then is no change of theirs), each one is made."""
    own = Own()
    bystander = UserFactory(role_name="editor")
    locked = before_the_lock(app, monkeypatch, content, bystander.id, demoted("viewer"))

    for action in ("edit article", "publish article", "comment", "edit comment",
                   "delete comment", "unpublish article", "delete article"):
        SERVICE[action](own)

    assert locked == [own.author.id] * 7
    assert _denials() == []
    db.session.expire_all()
    draft = db.session.get(Article, own.ids[1])
    assert draft is not None and draft.status == "published"
    assert db.session.get(Article, own.ids[0]) is None


# ------------------------------------------------------------------------------- pages ---
def _page(app: Flask, monkeypatch: pytest.MonkeyPatch, action: str,
          change: AccountChange) -> tuple[Any, Ids, int]:
    """Post ``action``'s form as the author, ``change`` committing before the lock."""
    own = Own()
    client = client_for(app, own.author)
    author_id = own.author.id
    before_the_lock(app, monkeypatch, content, author_id, change)
    path, form = PAGE[action](own.ids)
    return post(client, path, form), own.ids, author_id


@pytest.mark.asvs(*ASVS, "V7.4.1", "V7.4.5")
@pytest.mark.parametrize("change", ["signed out everywhere", "disabled"])
@pytest.mark.parametrize("action", sorted(PAGE))
def test_the_page_of_an_author_signed_out_meanwhile_changes_nothing(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str, change: str
) -> None:
    """"Sign out everywhere" (and disabling, which ends every sign-in too) committed while
    the author's request was on its way: the sign-in it came with is over, so is its write."""
    staged = signed_out_everywhere if change == "signed out everywhere" else disabled

    resp, ids, _author_id = _page(app, monkeypatch, action, staged)

    assert resp.status_code == 403
    assert "signed out meanwhile" in resp.get_data(as_text=True)
    untouched(ids)


@pytest.mark.asvs(*ASVS, "V16.3.2")
@pytest.mark.parametrize("action", ARTICLE_ACTIONS)
def test_the_page_refuses_an_author_no_longer_an_editor_and_audits_it(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    resp, ids, author_id = _page(app, monkeypatch, action, demoted("viewer"))

    assert resp.status_code == 403
    assert "role or status changed while the request was on its way" in resp.get_data(
        as_text=True)
    untouched(ids)
    denied = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    assert denied is not None and denied.actor_id == author_id
    assert denied.details == {"hidden": False, "what": WHAT[action](ids)}


@pytest.mark.asvs(*ASVS, "V7.4.2")
@pytest.mark.parametrize("action", sorted(PAGE))
def test_the_page_of_an_author_deleted_meanwhile_ends_signed_out(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    resp, _ids, author_id = _page(app, monkeypatch, action, deleted)

    assert resp.status_code == 401
    assert "this account no longer exists" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, author_id) is None
    assert db.session.scalar(select(func.count(Comment.id))) == 0


@pytest.mark.asvs(*ASVS)
def test_reading_takes_no_lock_and_judges_nothing_again(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second judgement is for writes only: the pages an author reads, the editor's
    form included, neither lock the account nor read it again."""
    own = Own()
    client = client_for(app, own.author)
    calls: list[str] = []
    monkeypatch.setattr(content, "lock_user", lambda _uid: calls.append("lock"))
    monkeypatch.setattr(content, "judge_again", lambda *_a, **_k: calls.append("judge"))
    article_id, draft_id, comment_id = own.ids

    for path in ("/articles", f"/articles/{article_id}", f"/articles/{draft_id}",
                 f"/articles/{article_id}/edit", f"/comments/{comment_id}/edit",
                 "/articles?q=Mine"):
        assert client.get(path).status_code == 200, path

    assert calls == []
