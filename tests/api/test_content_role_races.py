"""API changes to other people's content by an admin demoted or signed out meanwhile, on
SQLite and PostgreSQL.

The token's scopes and its user's role were judged when the request began (from the
worker's snapshot of the user's state, ``bastion.api.user_states``, which promises the
state as of the request's start, not for its whole length). The content services judge an
admin's change to someone else's content again under the admin's row lock, which role
changes and "sign out everywhere" take too; for the API, the sign-in read again is the
access token's revocation, or the personal access token's row.
"""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.api import pats
from bastion.content import services as content
from bastion.extensions import db
from bastion.models import Article, AuditEvent, Comment
from tests.api.conftest import Api
from tests.factories import ArticleFactory, CommentFactory
from tests.support.meanwhile import (
    before_the_lock,
    demotable_admin,
    demoted,
    signed_out_everywhere,
)

ASVS = ("V8.2.1", "V8.2.2", "V8.3.1")


@pytest.mark.asvs(*ASVS)
def test_a_demoted_admins_token_deletes_no_one_elses_comment(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    boss = demotable_admin()
    comment = CommentFactory(body="A reader's view")
    comment_id, token = comment.id, api.access_for(boss)
    before_the_lock(app, monkeypatch, content, boss.id, demoted())

    resp = api.call("DELETE", f"/comments/{comment_id}", token)

    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["detail"] == content.NO_LONGER_ALLOWED
    db.session.expire_all()
    assert db.session.get(Comment, comment_id) is not None
    denied = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    assert denied is not None and denied.actor_id == boss.id
    assert denied.details == {"hidden": False, "what": f"delete comment {comment_id}"}


@pytest.mark.asvs(*ASVS, "V7.4.1")
def test_an_admins_token_ended_meanwhile_edits_no_one_elses_article(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    boss = demotable_admin()
    article = ArticleFactory(title="Their words")
    article_id, token = article.id, api.access_for(boss)
    before_the_lock(app, monkeypatch, content, boss.id, signed_out_everywhere)

    resp = api.call("PATCH", f"/articles/{article_id}", token, json={"publish": False})

    assert resp.status_code == 403
    assert resp.get_json()["detail"] == content.SIGNED_OUT_MEANWHILE
    db.session.expire_all()
    stored = db.session.get(Article, article_id)
    assert stored is not None and (stored.title, stored.status) == ("Their words", "published")


@pytest.mark.asvs(*ASVS, "V7.4.1")
def test_a_personal_token_revoked_meanwhile_deletes_no_one_elses_comment(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """"Sign out everywhere" revokes personal tokens too; a request already past its token
    check when that committed is refused under the lock, not only the next one."""
    boss = demotable_admin()
    comment = CommentFactory()
    comment_id = comment.id
    secret = pats.create(boss, name="moderation", scopes=["comments:write", "admin"]).secret
    before_the_lock(app, monkeypatch, content, boss.id, signed_out_everywhere)

    resp = api.call("DELETE", f"/comments/{comment_id}", secret)

    assert resp.status_code == 403
    assert resp.get_json()["detail"] == content.SIGNED_OUT_MEANWHILE
    db.session.expire_all()
    assert db.session.get(Comment, comment_id) is not None


@pytest.mark.asvs(*ASVS)
def test_a_conditional_delete_by_a_demoted_admin_is_refused_before_its_conditions(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With If-Match the row is locked (and its conditions checked) after the admin's
    lock, the order every other change takes: refused on the committed role."""
    boss = demotable_admin()
    article = ArticleFactory()
    article_id, token = article.id, api.access_for(boss)
    etag = api.call("GET", f"/articles/{article_id}", token).headers["ETag"]
    before_the_lock(app, monkeypatch, content, boss.id, demoted())

    resp = api.call("DELETE", f"/articles/{article_id}", token, headers={"If-Match": etag})

    assert resp.status_code == 403
    db.session.expire_all()
    assert db.session.get(Article, article_id) is not None


@pytest.mark.asvs(*ASVS)
def test_a_conditional_delete_by_an_admin_still_checks_its_etag(
    app: Flask, api: Api
) -> None:
    boss = demotable_admin()
    article = ArticleFactory()
    article_id, token = article.id, api.access_for(boss)
    etag = api.call("GET", f"/articles/{article_id}", token).headers["ETag"]
    article.title = "Changed since"
    db.session.commit()

    assert api.call("DELETE", f"/articles/{article_id}", token,
                    headers={"If-Match": etag}).status_code == 412
    fresh = api.call("GET", f"/articles/{article_id}", token).headers["ETag"]
    assert api.call("DELETE", f"/articles/{article_id}", token,
                    headers={"If-Match": fresh}).status_code == 204
