"""A user deletes their own account from /account/delete: the admins' deletion, on oneself.

What goes and what stays is ``bastion.admin.deletion`` (``tests/admin/test_user_deletion.py``
proves it in full); these tests prove the way in: only the signed-in holder, only after a
fresh re-authentication, the username typed again and the CSRF token, never the last
active admin, and every sign-in of the account ends with it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.admin import audit_names, deletion
from bastion.admin.services import AdminError
from bastion.api import pats
from bastion.api.tokens import issue_pair
from bastion.extensions import db
from bastion.models import (
    ApiToken,
    Article,
    AuditEvent,
    Comment,
    RefreshToken,
    Upload,
    User,
    UserSession,
    utcnow,
)
from bastion.uploads import services as uploads
from tests.factories import PASSWORD, ArticleFactory, CommentFactory, UserFactory
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.races import meet_after, race
from tests.support.roles import WRONG_CONFIRMATIONS, age_reauthentication, client_for, post
from tests.uploads import corpus

URL = "/account/delete"


def _delete(client: FlaskClient, confirm: str, **extra: str) -> Any:
    return post(client, URL, {"confirm": confirm, **extra})


def _exists(user_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(User, user_id) is not None


def _deletions() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "user.deleted")))


def _rows(model: Any, column: Any, value: int) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(column == value)) or 0


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------- the page ---
def test_the_account_page_leads_to_the_confirmation_page(app: Flask) -> None:
    html = client_for(app, UserFactory()).get("/account").get_data(as_text=True)
    assert "Delete account" in html and f'href="{URL}"' in html


@pytest.mark.asvs("V14.3.2")
def test_the_page_says_plainly_what_goes(app: Flask) -> None:
    leaver = UserFactory(role_name="editor")
    article = ArticleFactory(author=leaver, status="published")
    CommentFactory(article=article, author=UserFactory())
    page = client_for(app, leaver).get(URL)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "This cannot be undone." in html
    assert "your 1 article, drafts and published alike, each with every comment on it" in html
    assert "(1 comment by other people)" in html
    assert "signed out here and on every other device" in html
    assert 'name="confirm"' in html and 'name="csrf_token"' in html
    assert page.headers["Cache-Control"] == "no-store"
    assert _exists(leaver.id)  # looking deletes nothing


# -------------------------------------------------------------- the deletion ---
@pytest.mark.asvs("V7.4.2", "V14.2.4", "V14.3.1")
def test_the_holder_deletes_their_account_and_every_sign_in_ends(app: Flask) -> None:
    leaver = UserFactory(username="leaver", email="leaver@example.test", role_name="editor")
    leaver_id = leaver.id
    other = UserFactory(role_name="editor")
    own = ArticleFactory(author=leaver, status="published")
    theirs = ArticleFactory(author=other, status="published")
    others_comment_on_own = CommentFactory(article=own, author=other)
    CommentFactory(article=theirs, author=leaver)
    staying = CommentFactory(article=theirs, author=other)
    uploads.store_image(leaver, io.BytesIO(corpus.png()), kind="avatar")
    own_id, others_comment_id, theirs_id, staying_id = (
        own.id, others_comment_on_own.id, theirs.id, staying.id)
    pair = issue_pair(leaver)
    pat = pats.create(leaver, name="laptop", scopes=["articles:read"]).secret
    phone = client_for(app, leaver)
    browser = client_for(app, leaver)
    assert is_signed_in(phone)

    resp = _delete(browser, " Leaver ")  # as the login reads it: case and spaces aside

    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert resp.headers["Clear-Site-Data"] == '"cache", "storage"'
    assert "Your account is deleted." in browser.get("/").get_data(as_text=True)
    assert not _exists(leaver_id)
    # Every sign-in ended: this browser, the other device, API and personal tokens.
    assert not is_signed_in(browser) and not is_signed_in(phone)
    api = app.test_client()
    for bearer in (pair.access_token, pat):
        assert api.get("/api/v1/me", headers=_bearer(bearer)).status_code == 401
    assert api.post("/api/v1/auth/refresh",
                    json={"refresh_token": pair.refresh_token}).status_code == 401
    # Nothing refers to the account any more; the other author's content stays.
    for model, column in ((UserSession, UserSession.user_id), (RefreshToken, RefreshToken.user_id),
                          (ApiToken, ApiToken.user_id), (Article, Article.author_id),
                          (Comment, Comment.author_id), (Upload, Upload.owner_id)):
        assert _rows(model, column, leaver_id) == 0, model
    assert db.session.get(Article, own_id) is None
    assert db.session.get(Comment, others_comment_id) is None  # went with the article
    assert db.session.get(Article, theirs_id) is not None
    assert db.session.get(Comment, staying_id) is not None
    # The password no longer signs anyone in, and the name is free of any account.
    again = app.test_client()
    assert sign_in(again, "leaver", PASSWORD).status_code == 200
    assert not is_signed_in(again)


def test_the_holder_is_mailed_once_the_deletion_commits(
    app: Flask, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stolen session re-authenticated moments ago could delete the account unnoticed:
    its address hears of it, with whom to tell, and no link (the account is gone; a link in
    a mail like this one is what a phisher would send)."""
    monkeypatch.setitem(app.config, "MAIL_URL", smtp_server.url)
    monkeypatch.setitem(app.config, "SECURITY_CONTACT", "mailto:abuse@bastion.example.net")
    leaver = UserFactory(username="leaver", email="leaver@example.org", role_name="editor")
    ArticleFactory(author=leaver, status="published")
    client = client_for(app, leaver)
    assert _delete(client, "someone else").status_code == 422
    assert smtp_server.mailbox.messages == []  # nothing is said of a deletion refused

    assert _delete(client, "leaver").status_code == 302

    (msg,) = smtp_server.mailbox.to("leaver@example.org")
    assert msg["Subject"] == "Your account was deleted"
    assert msg["Auto-Submitted"] == "auto-generated"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    for text in (plain.get_content(), html.get_content()):
        assert "The Bastion account leaver" in text
        assert f"{utcnow():%d %b %Y}" in text and " UTC" in text
        assert "articles: 1, comments: 0, images: 0" in text
        assert "abuse@bastion.example.net" in text and "mailto:" not in text
        assert "http" not in text
    assert "<a " not in html.get_content()


@pytest.mark.asvs("V16.3.3", "V16.2.1", "V14.2.4")
def test_the_deletion_is_audited_with_the_holder_as_actor(app: Flask) -> None:
    leaver = UserFactory(username="leaver", email="leaver@example.test")
    leaver_id = leaver.id
    assert _delete(client_for(app, leaver), "leaver").status_code == 302

    (event,) = _deletions()
    assert (event.actor_id, event.target_user_id) == (leaver_id, leaver_id)
    assert event.details == {
        "username": "leaver", "email_domain": "example.test", "articles": 0, "comments": 0,
        "comments_by_others": 0, "images": 0, "images_kept": 0, "sessions_ended": 1,
        "confirmed": True, "self": True,
    }
    assert event.ip and event.request_id
    # The trail names the actor by the username its deletion kept.
    actor, target = audit_names.actors_and_targets([event])[event.id]
    assert actor is not None and actor.label == "leaver (deleted)"
    assert target == actor


@pytest.mark.asvs("V7.4.2")
def test_api_tokens_of_the_deleted_account_stop_working(app: Flask) -> None:
    leaver = UserFactory(role_name="editor")
    access = issue_pair(leaver).access_token
    pat = pats.create(leaver, name="ci", scopes=["articles:read"]).secret
    api = app.test_client()
    for bearer in (access, pat):
        assert api.get("/api/v1/me", headers=_bearer(bearer)).status_code == 200
    assert _delete(client_for(app, leaver), leaver.username).status_code == 302
    for bearer in (access, pat):
        assert api.get("/api/v1/me", headers=_bearer(bearer)).status_code == 401


@pytest.mark.asvs("V14.2.2")
def test_the_worker_stops_serving_the_deleted_accounts_public_pages(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "PUBLIC_PAGE_CACHE_SECONDS", 60)
    author = UserFactory(role_name="editor")
    article = ArticleFactory(author=author, status="published")
    pages = (f"/articles/{article.id}", f"/u/{author.username}")
    reader = app.test_client()
    for path in pages:
        assert reader.get(path).status_code == 200
    assert _delete(client_for(app, author), author.username).status_code == 302
    db.session.expire_all()  # as a new request's session would start (the test shares one)
    for path in pages:
        assert reader.get(path).status_code == 404


def test_an_admin_who_is_not_the_last_may_delete_themselves(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin")
    client = client_for(app, boss)
    assert _delete(client, boss.username).status_code == 302
    assert not _exists(boss.id)


@pytest.mark.asvs("V2.3.2", "V8.2.1")
def test_two_admins_deleting_themselves_at_once_leave_one(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last two admins press Delete together: each page counted the other; the
    decision under the admins' lock lets one go and keeps the other."""
    ids = UserFactory(role_name="admin").id, UserFactory(role_name="admin").id

    def deletes(user_id: int) -> Callable[[], Any]:
        def run() -> Any:
            user = db.session.get(User, user_id)
            assert user is not None and deletion.own_deletion_refusal(user) is None
            return deletion.delete_own_account(user, confirmation=user.username)
        return run

    meet_after(monkeypatch, deletion, "own_deletion_refusal", 2)
    results = race([deletes(i) for i in ids], app)

    assert sum(_exists(i) for i in ids) == 1, results
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], AdminError), results
    assert "last active admin" in str(refused[0])


# --------------------------------------------------------------- refusals ---
@pytest.mark.asvs("V2.2.1", "V3.5.1")
@pytest.mark.parametrize(
    ("confirm", "message"),
    WRONG_CONFIRMATIONS,
)
def test_a_wrong_username_deletes_nothing(app: Flask, confirm: str, message: str) -> None:
    leaver = UserFactory(username="leaver")
    client = client_for(app, leaver)
    resp = _delete(client, confirm)
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert _exists(leaver.id) and not _deletions() and is_signed_in(client)


@pytest.mark.asvs("V7.5.1")
def test_deletion_needs_a_fresh_reauthentication(app: Flask) -> None:
    leaver = UserFactory()
    client = client_for(app, leaver)
    age_reauthentication(leaver, minutes=11)
    for resp in (client.get(URL), _delete(client, leaver.username)):
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    assert _exists(leaver.id) and not _deletions()


@pytest.mark.asvs("V3.5.1", "V3.5.3")
def test_a_cross_site_post_without_the_csrf_token_deletes_nothing(app: Flask) -> None:
    leaver = UserFactory()
    client = client_for(app, leaver)
    resp = client.post(URL, data={"confirm": leaver.username},
                       headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert resp.status_code == 400
    # Nor does a GET carrying the form's fields (a link or an image on another site).
    assert client.get(f"{URL}?confirm={leaver.username}").status_code == 200
    assert _exists(leaver.id) and not _deletions() and is_signed_in(client)


@pytest.mark.asvs("V8.2.2", "V8.3.1")
def test_a_signed_in_user_cannot_delete_someone_else(app: Flask) -> None:
    """No id in the URL: the account is the session's. Naming another account in the form,
    or adding a user id to it, deletes no one."""
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == "account.delete_account")
    assert not rule.arguments
    victim = UserFactory(username="victim")
    mallory = client_for(app, UserFactory(username="mallory"))
    for extra in ({}, {"user_id": str(victim.id)}, {"username": "victim"}):
        assert _delete(mallory, "victim", **extra).status_code == 422
    assert post(mallory, f"{URL}?user_id={victim.id}", {"confirm": "victim"}).status_code == 422
    assert _exists(victim.id) and not _deletions()
    assert is_signed_in(client_for(app, victim))


def test_signed_out_visitors_are_sent_to_sign_in(app: Flask) -> None:
    victim = UserFactory()
    visitor = app.test_client()
    for resp in (visitor.get(URL), visitor.post(URL, data={"confirm": victim.username})):
        assert resp.status_code in (302, 400)
    assert visitor.get(URL).headers["Location"].startswith("/auth/login")
    assert _exists(victim.id)


@pytest.mark.asvs("V8.2.1", "V2.3.2")
def test_the_last_active_admin_cannot_delete_themselves(app: Flask) -> None:
    last = UserFactory(role_name="admin")
    UserFactory(role_name="admin", disabled_at=utcnow())  # a disabled admin does not count
    client = client_for(app, last)
    page = client.get(URL)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "You are the last active admin" in html and 'name="confirm"' not in html
    resp = _delete(client, last.username)
    assert resp.status_code == 403
    assert "Make another account an admin first." in resp.get_data(as_text=True)
    # The service decides again under the locks (the page's check may be stale).
    with pytest.raises(AdminError, match="last active admin"):
        deletion.delete_own_account(last, confirmation=last.username)
    assert _exists(last.id) and not _deletions() and is_signed_in(client)


@pytest.mark.asvs("V7.4.1")
def test_a_sign_in_ended_meanwhile_deletes_nothing(app: Flask) -> None:
    """A deletion in flight when "sign out everywhere" or a password change committed is
    refused under the user's lock: the ended sign-in no longer speaks for the account."""
    leaver = UserFactory()
    with pytest.raises(AdminError, match="signed out while"):
        deletion.delete_own_account(leaver, confirmation=leaver.username,
                                    still_signed_in=lambda: False)
    assert _exists(leaver.id) and not _deletions()
