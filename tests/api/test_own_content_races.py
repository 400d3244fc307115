"""API changes to one's own articles and comments while the account is changed meanwhile,
on SQLite and PostgreSQL.

The token and its user's role were judged when the request began. "Sign out everywhere"
(which revokes the access token's family and the personal tokens), a disabling, a
demotion or the account's deletion committed before the write now stops it: the content
services judge the author's own changes again under the author's row lock, as they judge
an admin's changes to someone else's (tests/api/test_content_role_races.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from bastion.api import pats
from bastion.content import services as content
from bastion.extensions import db
from bastion.models import AuditEvent, Comment, User
from tests.api.conftest import Api
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

ASVS = ("V8.2.1", "V8.2.2", "V8.3.1")
SCOPES = ["articles:read", "articles:write", "comments:write"]
# Each change: method, path and body (ids: the published article, the draft, the comment).
CALLS: dict[str, Callable[[Ids], tuple[str, str, dict[str, Any] | None]]] = {
    "edit article": lambda ids: ("PATCH", f"/articles/{ids[0]}", {"title": "Rewritten"}),
    "publish article": lambda ids: ("PATCH", f"/articles/{ids[1]}", {"publish": True}),
    "unpublish article": lambda ids: ("PATCH", f"/articles/{ids[0]}", {"publish": False}),
    "delete article": lambda ids: ("DELETE", f"/articles/{ids[0]}", None),
    "delete comment": lambda ids: ("DELETE", f"/comments/{ids[2]}", None),
    "comment": lambda ids: ("POST", f"/articles/{ids[0]}/comments", {"body": "Late words"}),
}


def _own(api: Api, kind: str) -> tuple[User, Ids, str]:
    """An editor's published article, draft and comment, and a token of ``kind``."""
    own = Own()
    secret = (api.access_for(own.author) if kind == "access token"
              else pats.create(own.author, name="mine", scopes=SCOPES).secret)
    return own.author, own.ids, secret


def _call(app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch, action: str, kind: str,
          change: AccountChange) -> tuple[Any, Ids, int]:
    author, ids, secret = _own(api, kind)
    author_id = author.id
    before_the_lock(app, monkeypatch, content, author_id, change)
    method, path, body = CALLS[action](ids)
    return api.call(method, path, secret, json=body), ids, author_id


@pytest.mark.asvs(*ASVS, "V7.4.1", "V7.4.5")
@pytest.mark.parametrize("kind", ["access token", "personal token"])
@pytest.mark.parametrize("action", sorted(CALLS))
def test_a_token_ended_meanwhile_changes_nothing_of_its_owners(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch, action: str, kind: str
) -> None:
    """"Sign out everywhere" revokes the access token's family and every personal token:
    a request already past its token check is refused under the lock, not only the next."""
    resp, ids, _author_id = _call(app, api, monkeypatch, action, kind, signed_out_everywhere)

    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["detail"] == content.SIGNED_OUT_MEANWHILE
    untouched(ids)


@pytest.mark.asvs(*ASVS, "V7.4.2")
@pytest.mark.parametrize("kind", ["access token", "personal token"])
@pytest.mark.parametrize("action", sorted(CALLS))
def test_an_account_disabled_meanwhile_changes_nothing_of_its_own(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch, action: str, kind: str
) -> None:
    resp, ids, _author_id = _call(app, api, monkeypatch, action, kind, disabled)

    assert resp.status_code == 403
    assert resp.get_json()["detail"] in (content.SIGNED_OUT_MEANWHILE,
                                         content.NO_LONGER_ALLOWED)
    untouched(ids)


@pytest.mark.asvs(*ASVS, "V16.3.2")
@pytest.mark.parametrize("action", ARTICLE_ACTIONS)
def test_an_editor_demoted_meanwhile_changes_none_of_their_articles(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Publishing (and editing, unpublishing, deleting) one's articles is the editor
    role's: refused on the role as committed, and audited."""
    resp, ids, author_id = _call(app, api, monkeypatch, action, "access token",
                                 demoted("viewer"))

    assert resp.status_code == 403
    assert resp.get_json()["detail"] == content.NO_LONGER_ALLOWED
    untouched(ids)
    denied = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    assert denied is not None and denied.actor_id == author_id
    assert denied.details == {"hidden": False, "what": WHAT[action](ids)}


@pytest.mark.asvs(*ASVS, "V7.4.2")
@pytest.mark.parametrize("action", sorted(CALLS))
def test_an_account_deleted_meanwhile_gets_the_401_of_a_dead_token(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    resp, _ids, author_id = _call(app, api, monkeypatch, action, "access token", deleted)

    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    db.session.expire_all()
    assert db.session.get(User, author_id) is None
    assert db.session.scalar(select(func.count(Comment.id))) == 0


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("kind", ["access token", "personal token"])
def test_unraced_changes_of_ones_own_are_made(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Nothing of the author's changed meanwhile (another account's sign-out is no change
    of theirs): every change is made, each under the author's lock."""
    author, ids, secret = _own(api, kind)
    bystander = UserFactory(role_name="editor")
    locked = before_the_lock(app, monkeypatch, content, bystander.id, signed_out_everywhere)

    for action in ("edit article", "publish article", "comment", "delete comment",
                   "unpublish article", "delete article"):
        method, path, body = CALLS[action](ids)
        assert api.call(method, path, secret, json=body).status_code in (200, 201, 204), action

    assert locked == [author.id] * 6


@pytest.mark.asvs(*ASVS)
def test_reading_through_the_api_takes_no_lock(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lists and reads neither lock the account nor judge it again."""
    _author, ids, secret = _own(api, "access token")
    calls: list[str] = []
    monkeypatch.setattr(content, "lock_user", lambda _uid: calls.append("lock"))
    monkeypatch.setattr(content, "judge_again", lambda *_a, **_k: calls.append("judge"))

    for path in ("/articles", "/articles?mine=true", f"/articles/{ids[0]}",
                 f"/articles/{ids[1]}", f"/articles/{ids[0]}/comments", "/me"):
        assert api.call("GET", path, secret).status_code == 200, path

    assert calls == []
