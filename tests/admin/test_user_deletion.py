"""An admin deletes an account: what is theirs goes at once, every sign-in ends, the trail stays.

Other people's content is kept apart: images the account put into another author's article
stay with it (handed over), that author's article and its other comments stay. Other
people's comments on the deleted account's articles go with those articles.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from bastion.admin import deletion
from bastion.admin import services as admin
from bastion.api import pats
from bastion.api.tokens import issue_pair
from bastion.auth import twofactor
from bastion.content import services as content
from bastion.extensions import db
from bastion.models import (
    ApiToken,
    Article,
    AuditEvent,
    Comment,
    RecoveryCode,
    RefreshToken,
    Upload,
    User,
    UserSession,
    utcnow,
)
from bastion.security import audit
from bastion.uploads import services as uploads
from bastion.uploads import storage
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.account_fixtures import is_signed_in
from tests.support.races import delete_user_elsewhere, meet_after, race
from tests.support.roles import WRONG_CONFIRMATIONS, age_reauthentication, client_for, post
from tests.uploads import corpus


def _url(user: Any) -> str:
    return f"/admin/users/{user.id}/delete"


def _delete(client: FlaskClient, target: Any, **data: str) -> Any:
    return post(client, _url(target), {"confirm": target.username, **data})


def _exists(user_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(User, user_id) is not None


def _events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def _rows(model: Any, column: Any, value: int) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(column == value)) or 0


def _files(upload: Upload) -> list[Path]:
    return [storage.path_for(n) for n in uploads.file_names(upload)]


def _image(owner: User, article: Article | None = None) -> Upload:
    kind = "article" if article is not None else "avatar"
    return uploads.store_image(owner, io.BytesIO(corpus.png()), kind=kind, article=article)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    """An account with content of every kind, beside another author's."""

    boss: User
    target: User
    own: Article
    theirs: Article
    others_comment_on_own: Comment
    own_comment_on_theirs: Comment
    others_comment_on_theirs: Comment
    going: list[Upload]
    kept: Upload


def _world() -> World:
    boss = UserFactory(role_name="admin")
    # An admin may put images into anyone's article: the one case where some stay.
    target = UserFactory(role_name="admin", email="leaving@example.test")
    author = UserFactory(role_name="editor")
    own = ArticleFactory(author=target, status="published")
    theirs = ArticleFactory(author=author, status="published")
    going = [_image(target), _image(target, own), _image(boss, own)]  # the last is boss's
    return World(
        boss=boss,
        target=target,
        own=own,
        theirs=theirs,
        others_comment_on_own=CommentFactory(article=own, author=author),
        own_comment_on_theirs=CommentFactory(article=theirs, author=target),
        others_comment_on_theirs=CommentFactory(article=theirs, author=author),
        going=going,
        kept=_image(target, theirs),
    )


# ------------------------------------------------------------------- the page ---
def test_the_users_list_links_to_deletion_except_for_ones_own_account(app: Flask) -> None:
    boss, other = UserFactory(role_name="admin"), UserFactory()
    html = client_for(app, boss).get("/admin/users").get_data(as_text=True)
    assert f'href="{_url(other)}"' in html
    assert f'href="{_url(boss)}"' not in html


def test_the_page_says_what_goes_and_what_stays(app: Flask) -> None:
    w = _world()
    page = client_for(app, w.boss).get(_url(w.target))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "cannot be undone" in html
    assert "1 article, each with every comment on it (1 comment by other people)" in html
    assert "1 comment they wrote" in html
    assert "3 images: their profile photo" in html
    assert "1 image they put into other people's articles" in html
    assert "the audit log" in html
    assert 'name="confirm"' in html
    assert deletion.deletion_summary(w.target) == deletion.DeletionSummary(
        articles=1, comments=1, comments_by_others=1, images=3, images_kept=1
    )
    assert _exists(w.target.id)  # looking deletes nothing


# -------------------------------------------------------------- the deletion ---
@pytest.mark.asvs("V7.4.2", "V7.4.5", "V2.3.3", "V16.3.3", "V16.2.1")
def test_deletion_removes_the_account_and_ends_every_sign_in(app: Flask) -> None:
    w = _world()
    target_id, username = w.target.id, w.target.username
    twofactor.new_recovery_codes(w.target)
    db.session.commit()
    audit.record("login.success", actor_id=target_id, target_user_id=target_id)
    browser = client_for(app, w.target)
    pair = issue_pair(w.target)
    pat = pats.create(w.target, name="laptop", scopes=["articles:read"]).secret
    api = app.test_client()
    assert is_signed_in(browser)
    for bearer in (pair.access_token, pat):
        assert api.get("/api/v1/me", headers=_bearer(bearer)).status_code == 200
    going_files = [f for u in w.going for f in _files(u)]
    kept_files = _files(w.kept)
    own_id, own_thread = w.own.id, (w.others_comment_on_own.id, w.own_comment_on_theirs.id)
    theirs_id, author_id = w.theirs.id, w.theirs.author_id
    kept_id, staying_comment_id = w.kept.id, w.others_comment_on_theirs.id
    assert all(f.is_file() for f in going_files + kept_files)
    client = client_for(app, w.boss)

    resp = _delete(client, w.target)

    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/users"
    assert not _exists(target_id)
    # Every way the account was signed in has ended, on the very next request.
    assert not is_signed_in(browser)
    for bearer in (pair.access_token, pat):
        assert api.get("/api/v1/me", headers=_bearer(bearer)).status_code == 401
    refresh = api.post("/api/v1/auth/refresh", json={"refresh_token": pair.refresh_token})
    assert refresh.status_code == 401
    assert pats.authenticate(pat) is None
    # Nothing refers to the account any more, on either database.
    for model, column in ((UserSession, UserSession.user_id), (RefreshToken, RefreshToken.user_id),
                          (ApiToken, ApiToken.user_id), (RecoveryCode, RecoveryCode.user_id),
                          (Article, Article.author_id), (Comment, Comment.author_id),
                          (Upload, Upload.owner_id)):
        assert _rows(model, column, target_id) == 0, model
    # Their article went with every comment on it; the other author's content stays.
    assert db.session.get(Article, own_id) is None
    assert [db.session.get(Comment, i) for i in own_thread] == [None, None]
    assert db.session.get(Article, theirs_id) is not None
    assert db.session.get(Comment, staying_comment_id) is not None
    # Images: theirs (and boss's image in their article) gone with the files; the one in
    # the other author's article kept, now the author's.
    assert not any(f.exists() for f in going_files)
    assert all(f.is_file() for f in kept_files)
    kept = db.session.get(Upload, kept_id)
    assert kept is not None and kept.owner_id == author_id
    assert app.test_client().get(f"/uploads/{kept_id}").status_code == 200
    assert [e.target_user_id for e in _events("upload.handed_over")] == [author_id]
    page = client.get("/admin/users").get_data(as_text=True)
    assert (f"The account {username} is deleted, with 1 article, 1 comment and "
            "3 images. 1 image in other people&#39;s articles stay") in page


@pytest.mark.asvs("V16.3.3", "V16.2.1", "V14.2.4")
def test_deletion_is_audited_without_the_email_and_the_trail_stays(app: Flask) -> None:
    w = _world()
    target_id, username = w.target.id, w.target.username
    earlier = audit.record("login.success", actor_id=target_id, target_user_id=target_id)
    client_for(app, w.target)  # one session to end
    assert _delete(client_for(app, w.boss), w.target).status_code == 302

    (event,) = _events("user.deleted")
    assert (event.actor_id, event.target_user_id) == (w.boss.id, target_id)
    assert event.details == {
        "username": username, "email_domain": "example.test", "articles": 1, "comments": 1,
        "comments_by_others": 1, "images": 3, "images_kept": 1, "sessions_ended": 1,
        "confirmed": True,
    }
    assert "leaving@" not in json.dumps(event.details)
    assert event.ip and event.request_id
    assert [e.id for e in _events("login.success")] == [earlier.id]  # no FK: it outlives them
    html = client_for(app, w.boss).get(f"/admin/audit?user={target_id}").get_data(as_text=True)
    assert "user.deleted" in html and "login.success" in html


def test_a_disabled_admin_can_be_deleted_while_another_is_active(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    gone = UserFactory(role_name="admin", disabled_at=utcnow())
    assert _delete(client_for(app, boss), gone).status_code == 302
    assert not _exists(gone.id)


def test_the_username_may_be_typed_in_another_case(app: Flask) -> None:
    target = UserFactory(username="leaver")
    client = client_for(app, UserFactory(role_name="admin"))
    assert post(client, _url(target), {"confirm": " Leaver "}).status_code == 302
    assert not _exists(target.id)


@pytest.mark.asvs("V14.2.2")
def test_the_deleting_worker_stops_serving_their_public_pages(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "PUBLIC_PAGE_CACHE_SECONDS", 60)
    author = UserFactory(role_name="editor")
    article = ArticleFactory(author=author, status="published")
    title, pages = article.title, (f"/articles/{article.id}", f"/u/{author.username}")
    reader = app.test_client()
    for path in pages:
        assert reader.get(path).status_code == 200
    assert title in reader.get("/").get_data(as_text=True)

    assert _delete(client_for(app, UserFactory(role_name="admin")), author).status_code == 302
    db.session.expire_all()  # as a new request's session would start (the test shares one)

    for path in pages:
        assert reader.get(path).status_code == 404
    assert title not in reader.get("/").get_data(as_text=True)


@pytest.mark.asvs("V7.4.2")
def test_access_tokens_of_the_account_stay_dead_for_an_account_given_its_id(app: Flask) -> None:
    """SQLite may give a new account the id of a deleted one (the highest id is reused).
    The deleted account's access token must not speak for the newcomer, even one whose
    password was set at the same instant: its refresh family is revoked, not only gone."""
    target = UserFactory(role_name="editor")
    old_id, changed = target.id, target.password_changed_at
    access = issue_pair(target).access_token
    assert _delete(client_for(app, UserFactory(role_name="admin")), target).status_code == 302
    UserFactory(id=old_id, role_name="editor", password_changed_at=changed)
    resp = app.test_client().get("/api/v1/me", headers=_bearer(access))
    assert resp.status_code == 401


# --------------------------------------------------------------- refusals ---
@pytest.mark.asvs("V8.2.1", "V8.3.1")
@pytest.mark.parametrize("role", [None, "viewer", "editor"])
def test_only_admins_can_delete(app: Flask, role: str | None) -> None:
    target = UserFactory()
    client = client_for(app, UserFactory(role_name=role) if role else None)
    for resp in (client.get(_url(target)), _delete(client, target)):
        if role:
            assert resp.status_code == 403
        else:
            assert resp.status_code == 302
            assert resp.headers["Location"].startswith("/auth/login")
    assert _exists(target.id) and not _events("user.deleted")


@pytest.mark.asvs("V8.2.1")
def test_an_admin_without_two_factor_is_sent_to_enrol(app: Flask) -> None:
    target = UserFactory()
    client = client_for(app, UserFactory(role_name="admin", two_factor=False))
    for resp in (client.get(_url(target)), _delete(client, target)):
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/account/2fa")
    assert _exists(target.id)


@pytest.mark.asvs("V3.5.1")
def test_deletion_needs_the_csrf_token(app: Flask) -> None:
    target = UserFactory()
    client = client_for(app, UserFactory(role_name="admin"))
    resp = client.post(_url(target), data={"confirm": target.username})
    assert resp.status_code == 400
    assert _exists(target.id) and not _events("user.deleted")


@pytest.mark.asvs("V7.5.1")
def test_deletion_needs_a_recent_reauthentication(app: Flask) -> None:
    target = UserFactory()
    boss = UserFactory(role_name="admin")
    client = client_for(app, boss)
    age_reauthentication(boss, minutes=11)
    for resp in (client.get(_url(target)), _delete(client, target)):
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    assert _exists(target.id)


@pytest.mark.asvs("V2.2.1", "V3.5.1")
@pytest.mark.parametrize(
    ("confirm", "message"),
    WRONG_CONFIRMATIONS,
)
def test_a_wrong_username_changes_nothing(app: Flask, confirm: str, message: str) -> None:
    target = UserFactory()
    client = client_for(app, UserFactory(role_name="admin"))
    resp = post(client, _url(target), {"confirm": confirm})
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert _exists(target.id) and not _events("user.deleted")
    assert is_signed_in(client_for(app, target))


@pytest.mark.asvs("V8.2.1")
def test_an_admin_cannot_delete_their_own_account(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin")  # not the last admin: the rule holds anyway
    client = client_for(app, boss)
    page = client.get(_url(boss))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "You cannot delete your own account from here. To delete it, use" in html
    assert 'name="confirm"' not in html
    resp = _delete(client, boss)
    assert resp.status_code == 403
    assert "You cannot delete your own account" in resp.get_data(as_text=True)
    with pytest.raises(admin.AdminError, match="your own account"):
        deletion.delete_user(boss, boss, confirmation=boss.username)
    assert _exists(boss.id) and is_signed_in(client)


@pytest.mark.asvs("V8.2.1", "V2.3.2")
def test_the_last_active_admin_cannot_be_deleted(app: Flask) -> None:
    last = UserFactory(role_name="admin")
    UserFactory(role_name="admin", disabled_at=utcnow())  # a disabled admin does not count
    # No admin can be on the page but the last one (their own account): the command line
    # and races are where the rule decides.
    assert deletion.deletion_refusal(None, last) == (
        f"{last.username} is the last active admin and cannot be deleted."
    )
    with pytest.raises(admin.AdminError, match="last active admin"):
        deletion.delete_user(None, last, confirmation=last.username)
    assert _exists(last.id) and not _events("user.deleted")


def test_an_admin_demoted_meanwhile_deletes_no_one(app: Flask) -> None:
    boss, other = UserFactory(role_name="admin"), UserFactory(role_name="admin")
    target = UserFactory()
    admin.set_role(other, boss, "editor")
    with pytest.raises(admin.AdminError, match="can no longer manage users"):
        deletion.delete_user(boss, target, confirmation=target.username)
    assert _exists(target.id)


@pytest.mark.asvs("V2.3.2", "V8.2.1")
def test_two_admins_deleting_each_other_at_once_leave_one(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = UserFactory(role_name="admin"), UserFactory(role_name="admin")
    ids = a.id, b.id

    def deletes(actor_id: int, target_id: int) -> Callable[[], Any]:
        def run() -> Any:
            actor, target = db.session.get(User, actor_id), db.session.get(User, target_id)
            assert actor is not None and target is not None
            return deletion.delete_user(actor, target, confirmation=target.username)
        return run

    meet_after(monkeypatch, admin, "_other_active_admins", 2)
    results = race([deletes(*ids), deletes(*reversed(ids))], app)

    assert sum(_exists(i) for i in ids) == 1, results
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], admin.AdminError), results


def test_a_user_that_does_not_exist_is_a_404(app: Flask) -> None:
    client = client_for(app, UserFactory(role_name="admin"))
    for resp in (client.get("/admin/users/987654/delete"),
                 post(client, "/admin/users/987654/delete", {"confirm": "nobody"})):
        assert resp.status_code == 404
        assert "There is no user with that id" in resp.get_data(as_text=True)



def test_a_user_deleted_since_the_page_loaded_it_is_a_404_not_a_500(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two admins press Delete at once: the second finds the account gone under the lock."""
    target = UserFactory()
    client = client_for(app, UserFactory(role_name="admin"))
    refusal = deletion.deletion_refusal

    def deleted_right_after(actor: Any, user: Any) -> str | None:
        delete_user_elsewhere(app, user.id)
        return refusal(actor, user)

    monkeypatch.setattr(deletion, "deletion_refusal", deleted_right_after)
    resp = _delete(client, target)
    assert resp.status_code == 404
    assert "it was deleted meanwhile" in resp.get_data(as_text=True)
    assert not _events("user.deleted")


# ------------------------------------------- requests of the account in flight ---
def _deletes_first(app: Flask, target_id: int, boss_id: int) -> Callable[[], None]:
    """Delete the account through the admin service, from another thread."""
    def run() -> None:
        with app.app_context():
            try:
                boss, target = db.session.get(User, boss_id), db.session.get(User, target_id)
                assert boss is not None and target is not None
                deletion.delete_user(boss, target, confirmation=target.username)
            finally:
                db.session.remove()

    def in_thread() -> None:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)

    return in_thread


@pytest.mark.asvs("V7.4.2", "V16.5.1", "V16.5.3")
def test_an_upload_whose_uploader_is_deleted_meanwhile_ends_signed_out(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload is past its checks when the admin's deletion commits; under the
    uploader's lock it finds the account gone. That refusal was a 500: audited and
    answered after a rollback, it loaded the deleted row again."""
    boss = UserFactory(role_name="admin")
    target = UserFactory(role_name="editor")
    own = ArticleFactory(author=target)
    browser = client_for(app, target)
    target_id = target.id
    delete_now = _deletes_first(app, target_id, boss.id)
    lock = uploads.lock_user

    def deleted_first(user_id: int) -> None:
        delete_now()
        lock(user_id)

    monkeypatch.setattr(uploads, "lock_user", deleted_first)
    path = f"/articles/{own.id}/images"
    resp = post(browser, path, {"image": (io.BytesIO(corpus.png()), "late.png")},
                content_type="multipart/form-data")

    assert resp.status_code == 401
    assert "this account no longer exists" in resp.get_data(as_text=True)
    assert resp.headers["Clear-Site-Data"] == '"cache", "storage"'
    assert not _exists(target_id)
    assert db.session.scalar(select(func.count()).select_from(Upload)) == 0
    assert browser.get("/account").headers["Location"].startswith("/auth/login")


@pytest.fixture(params=["sqlite", "postgresql"])
def fk_app(make_app: Callable[..., Flask], request: pytest.FixtureRequest) -> Flask:
    """An app of its own: the deletion runs in another thread, outside the test's context.
    The refusal comes from the database's foreign key, enforced on both (SQLite too)."""
    return make_app(backend=request.param)


@pytest.mark.asvs("V16.5.1", "V16.5.3")
@pytest.mark.parametrize("via", ["page", "api"])
def test_a_comment_racing_its_authors_deletion_ends_signed_out(
    fk_app: Flask, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """The comment passed its checks; the deletion commits before it is written, and the
    database refuses a comment by an account that no longer exists: a 401, not a 500."""
    from bastion.security import authz

    app = fk_app
    with app.app_context():
        boss = UserFactory(role_name="admin")
        target = UserFactory()
        article = ArticleFactory(status="published")
        browser = client_for(app, target)
        pat = pats.create(target, name="t", scopes=["comments:write"]).secret
        ids = target.id, boss.id, article.id
        db.session.remove()
    delete_now = _deletes_first(app, ids[0], ids[1])
    can_comment = authz.can_comment

    def deleted_after_the_check(actor: Any, art: Any) -> bool:
        allowed = can_comment(actor, art)
        delete_now()
        return allowed

    monkeypatch.setattr(authz, "can_comment", deleted_after_the_check)
    if via == "page":
        resp = post(browser, f"/articles/{ids[2]}/comments", {"body": "Late words"})
        assert resp.status_code == 401
        assert "this account no longer exists" in resp.get_data(as_text=True)
    else:
        resp = app.test_client().post(f"/api/v1/articles/{ids[2]}/comments",
                                      json={"body": "Late words"}, headers=_bearer(pat))
        assert resp.status_code == 401
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    with app.app_context():
        assert db.session.get(User, ids[0]) is None
        assert db.session.scalar(select(func.count()).select_from(Comment)) == 0
        db.session.remove()


def _waits_for_a_lock(pid: int) -> bool:
    """Whether PostgreSQL backend ``pid`` is waiting for a row or transaction lock."""
    with db.engine.connect() as conn:
        return bool(conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND wait_event_type = 'Lock'"
        ), {"pid": pid}))


@pytest.mark.postgres
def test_a_comment_on_ones_own_article_and_the_accounts_deletion_do_not_deadlock(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comment locked the article, then (its foreign key) the author's row; the deletion
    locks the row, then (its cascade) the article. Each waited for the other until
    PostgreSQL aborted one, the deletion: a 500 for the admin. Now the deletion waits."""
    app = make_app(backend="postgresql")
    with app.app_context():
        boss, target = UserFactory(role_name="admin"), UserFactory(role_name="editor")
        article = ArticleFactory(author=target, status="published")
        browser = client_for(app, target)
        ids = target.id, boss.id, article.id
        db.session.remove()
    deleter: dict[str, Any] = {}

    def delete() -> None:
        with app.app_context():
            try:
                deleter["pid"] = db.session.scalar(text("SELECT pg_backend_pid()"))
                boss, target = db.session.get(User, ids[1]), db.session.get(User, ids[0])
                assert boss is not None and target is not None
                deletion.delete_user(boss, target, confirmation=target.username)
                deleter["outcome"] = "deleted"
            except Exception as exc:  # asserted on below
                deleter["outcome"] = exc
            finally:
                db.session.remove()

    thread = threading.Thread(target=delete)
    recent_duplicate = content._recent_duplicate

    def deletion_waits_first(*args: Any) -> Any:
        """Past the comment's locks, before its insert: the deletion runs into them."""
        thread.start()
        deadline = time.monotonic() + 10
        while not ("pid" in deleter and _waits_for_a_lock(deleter["pid"])):
            assert time.monotonic() < deadline and "outcome" not in deleter, deleter
            time.sleep(0.01)
        return recent_duplicate(*args)

    monkeypatch.setattr(content, "_recent_duplicate", deletion_waits_first)
    resp = post(browser, f"/articles/{ids[2]}/comments", {"body": "Last words"})
    thread.join(30)
    assert deleter["outcome"] == "deleted"
    assert resp.status_code == 302
    with app.app_context():
        assert db.session.get(User, ids[0]) is None
        assert db.session.scalar(select(func.count()).select_from(Comment)) == 0
        db.session.remove()


@pytest.mark.asvs("V16.3.3")
def test_an_audit_record_after_a_rollback_names_a_deleted_actor(app: Flask) -> None:
    """``audit.record`` takes the signed-in id from the instance, never from its row."""
    from flask_login import login_user

    target = UserFactory()
    target_id = target.id
    with app.test_request_context("/"):
        login_user(target)
        db.session.execute(select(AuditEvent.id).limit(1))  # the request's transaction
        delete_user_elsewhere(app, target_id)
        db.session.rollback()  # expires the signed-in user, whose row is gone
        row = audit.record("authz.denied", details={"why": "test"})
    assert row.actor_id == target_id


# --------------------------------------------- shared state across workers (Redis) ---
@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.asvs("V7.4.2")
def test_another_worker_refuses_the_accounts_tokens_at_once(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    """One worker serves the API from its snapshot of the user (``api.user_states``);
    another deletes the account. The first must refuse the next call, not the one after
    the snapshot's age runs out."""
    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "RATELIMIT_KEY_PREFIX": prefix}
    reader = make_app(backend="postgres", **shared)
    writer = make_app(DATABASE_URL=reader.config["DATABASE_URL"], **shared)
    with reader.app_context():
        boss, target = UserFactory(role_name="admin"), UserFactory(role_name="editor")
        pair = issue_pair(target)
        ids = boss.id, target.id
        db.session.remove()

    def call(path: str = "/api/v1/articles") -> int:
        with reader.app_context():
            try:
                return reader.test_client().get(path, headers=_bearer(pair.access_token)).status_code
            finally:
                db.session.remove()

    assert call() == call() == 200  # the second from the worker's snapshot
    with writer.app_context():
        boss, target = db.session.get(User, ids[0]), db.session.get(User, ids[1])
        assert boss is not None and target is not None
        deletion.delete_user(boss, target, confirmation=target.username)
        db.session.remove()
    assert call() == 401
    assert call("/api/v1/me") == 401
    with reader.app_context():
        refresh = reader.test_client().post(
            "/api/v1/auth/refresh", json={"refresh_token": pair.refresh_token}
        )
        assert refresh.status_code == 401
        db.session.remove()
