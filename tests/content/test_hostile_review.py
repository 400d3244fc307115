"""Business-logic attacks on articles, comments and the CSP report collector.

Races are made deterministic: a wrapped function deletes the row from another connection
at the moment a concurrent request would, between the page loading the object and the
service writing to it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from bastion.content import services as content
from bastion.extensions import db
from bastion.models import Article, AuditEvent, Comment, utcnow
from bastion.security import authz, throttle_audit
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for, post

CSP_REPORT = b'{"csp-report": {"violated-directive": "img-src"}}'


def _vanish_when_called(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, table: str, pk: int
) -> None:
    """The first call of ``owner.name`` first deletes row ``pk`` of ``table`` and commits,
    as a concurrent delete would."""
    real: Callable[..., Any] = getattr(owner, name)
    done: list[bool] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(True)
            with db.engine.begin() as conn:
                conn.execute(text(f"DELETE FROM {table} WHERE id = :pk"), {"pk": pk})  # noqa: S608
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


def _audit_count(event: str) -> int:
    return db.session.scalar(
        db.select(db.func.count()).select_from(AuditEvent).where(AuditEvent.event == event)
    ) or 0


# ------------------------------------------------------------- edit or delete vs delete ---
@pytest.mark.asvs("V2.3.3", "V16.5.1")
def test_an_article_edit_racing_its_deletion_answers_404_not_500(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ORM's UPDATE matched no row at commit (StaleDataError): a 500 for the editor."""
    editor = UserFactory(role_name="editor")
    article = ArticleFactory(author=editor, status="published")
    aid = article.id
    client = client_for(app, editor)
    _vanish_when_called(monkeypatch, content, "render_markdown", "articles", aid)
    resp = post(client, f"/articles/{aid}/edit", {"title": "New", "body": "New", "publish": "y"})
    assert resp.status_code == 404
    assert "There is no article with that number" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Article, aid) is None


@pytest.mark.asvs("V2.3.3", "V16.5.1")
def test_a_comment_edit_racing_its_deletion_answers_404_not_500(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    comment = CommentFactory(article=ArticleFactory(status="published"))
    cid = comment.id
    client = client_for(app, comment.author)
    _vanish_when_called(monkeypatch, content, "_clean_text", "comments", cid)
    resp = post(client, f"/comments/{cid}/edit", {"body": "changed"})
    assert resp.status_code == 404
    assert "There is no comment with that number" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Comment, cid) is None


@pytest.mark.asvs("V2.3.3", "V16.3.3")
@pytest.mark.parametrize(
    ("kind", "event"), [("article", "article.deleted_by_admin"), ("comment", "comment.moderated")]
)
def test_deleting_what_was_deleted_meanwhile_is_404_and_audits_no_deletion(
    app: Flask, monkeypatch: pytest.MonkeyPatch, kind: str, event: str
) -> None:
    """Two moderators deleting at once: the second one was told "deleted" and the audit
    trail recorded a deletion that never happened (the ORM only warned)."""
    admin = UserFactory(role_name="admin")
    comment = CommentFactory(article=ArticleFactory(status="published"))
    if kind == "article":
        pk, table, path = comment.article_id, "articles", f"/articles/{comment.article_id}/delete"
        _vanish_when_called(monkeypatch, authz, "can_delete_article", table, pk)
    else:
        pk, table, path = comment.id, "comments", f"/comments/{comment.id}/delete"
        _vanish_when_called(monkeypatch, authz, "can_delete_comment", table, pk)
    resp = post(client_for(app, admin), path)
    assert resp.status_code == 404
    assert _audit_count(event) == 0


@pytest.mark.asvs("V2.3.3")
@pytest.mark.parametrize("change", ["edit article", "delete article", "edit comment",
                                    "delete comment"])
def test_the_services_signal_a_row_deleted_meanwhile_without_http(
    app: Flask, change: str
) -> None:
    """Services answer no requests: the page and the API each turn this into their 404."""
    comment = CommentFactory(article=ArticleFactory(status="published"))
    article = comment.article
    table, pk = ("articles", article.id) if "article" in change else ("comments", comment.id)
    with db.engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE id = :pk"), {"pk": pk})  # noqa: S608
    calls: dict[str, Callable[[], object]] = {
        "edit article": lambda: content.update_article(article.author, article, title="New"),
        "delete article": lambda: content.delete_article(article.author, article),
        "edit comment": lambda: content.update_comment(comment.author, comment, "New"),
        "delete comment": lambda: content.delete_comment(comment.author, comment),
    }
    with pytest.raises(content.ContentNotFoundError) as gone:
        calls[change]()
    gone_message = content.ARTICLE_GONE if "article" in change else content.COMMENT_GONE
    assert gone.value.message == gone_message


@pytest.mark.asvs("V2.3.3", "V16.5.1")
@pytest.mark.parametrize(
    ("method", "kind", "vanishes_in"),
    [
        ("PATCH", "article", (content, "render_markdown")),
        ("DELETE", "article", (authz, "can_delete_article")),
        ("DELETE", "comment", (authz, "can_delete_comment")),
    ],
)
def test_an_api_change_racing_a_deletion_answers_the_apis_404(
    app: Flask,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    kind: str,
    vanishes_in: tuple[object, str],
) -> None:
    """The service finds the row gone once it takes the lock; the API answers with its
    own 404 (problem+json, the service's message), not an error page or a 500."""
    from bastion.api import tokens

    comment = CommentFactory(article=ArticleFactory(status="published"))
    if kind == "article":
        pk, table, path = comment.article_id, "articles", f"/api/v1/articles/{comment.article_id}"
        who, gone = comment.article.author, content.ARTICLE_GONE
    else:
        pk, table, path = comment.id, "comments", f"/api/v1/comments/{comment.id}"
        who, gone = comment.author, content.COMMENT_GONE
    access = tokens.issue_pair(who).access_token
    _vanish_when_called(monkeypatch, *vanishes_in, table, pk)
    body = {"json": {"title": "New", "body": "New"}} if method == "PATCH" else {}
    resp = app.test_client().open(
        path, method=method, headers={"Authorization": f"Bearer {access}"}, **body
    )
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["detail"] == gone


# ------------------------------------------------------------ anonymous page copies ---
@pytest.mark.asvs("V14.2.2", "V8.2.2")
@pytest.mark.parametrize("change", ["unpublish", "delete"])
def test_a_withdrawn_article_leaves_the_anonymous_page_copies_at_once(
    make_app: Callable[..., Flask], change: str
) -> None:
    """Anonymous pages are reused for PUBLIC_PAGE_CACHE_SECONDS: an article unpublished
    because it said too much stayed readable, and listed on the home page, until then."""
    app = make_app(PUBLIC_PAGE_CACHE_SECONDS=60)
    with app.app_context():  # requests outside it, each with its own session as in service
        editor = UserFactory(role_name="editor")
        aid = ArticleFactory(author=editor, status="published", title="Leaked plans").id
        author = client_for(app, editor)
    anonymous = app.test_client()
    assert anonymous.get(f"/articles/{aid}").status_code == 200
    assert "Leaked plans" in anonymous.get("/").get_data(as_text=True)
    if change == "unpublish":
        resp = post(author, f"/articles/{aid}/edit", {"title": "Leaked plans", "body": "x"})
    else:
        resp = post(author, f"/articles/{aid}/delete")
    assert resp.status_code == 302
    assert anonymous.get(f"/articles/{aid}").status_code == 404
    assert "Leaked plans" not in anonymous.get("/").get_data(as_text=True)


@pytest.mark.asvs("V14.2.2")
def test_a_moderated_comment_leaves_the_anonymous_page_copies_at_once(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(PUBLIC_PAGE_CACHE_SECONDS=60)
    with app.app_context():
        comment = CommentFactory(article=ArticleFactory(status="published"), body="Abuse here")
        cid, aid = comment.id, comment.article_id
        admin = client_for(app, UserFactory(role_name="admin"))
    anonymous = app.test_client()
    assert "Abuse here" in anonymous.get(f"/articles/{aid}").get_data(as_text=True)
    assert post(admin, f"/comments/{cid}/delete").status_code == 302
    assert "Abuse here" not in anonymous.get(f"/articles/{aid}").get_data(as_text=True)


@pytest.mark.asvs("V14.2.2", "V8.2.2")
def test_a_disabled_accounts_profile_leaves_the_anonymous_page_copies_at_once(
    make_app: Callable[..., Flask],
) -> None:
    """A disabled account has no public page; its stored copy (name, bio) stayed readable
    by anonymous visitors, with a 200, for PUBLIC_PAGE_CACHE_SECONDS after the admin acted."""
    app = make_app(PUBLIC_PAGE_CACHE_SECONDS=60)
    with app.app_context():
        target = UserFactory(role_name="editor", bio="Abusive bio, reported")
        name, uid = target.username, target.id
        admin = client_for(app, UserFactory(role_name="admin"))
    anonymous = app.test_client()
    assert "Abusive bio" in anonymous.get(f"/u/{name}").get_data(as_text=True)
    assert post(admin, f"/admin/users/{uid}/disable", {"username": name}).status_code == 302
    resp = anonymous.get(f"/u/{name}")
    assert resp.status_code == 404
    assert "Abusive bio" not in resp.get_data(as_text=True)


# ------------------------------------------------------------------ double submits ---
@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_a_double_submitted_comment_is_posted_once(app: Flask) -> None:
    article = ArticleFactory(status="published")
    client = client_for(app, UserFactory())
    path = f"/articles/{article.id}/comments"
    first = post(client, path, {"body": "Great read!"})
    again = post(client, path, {"body": "Great read!\r\n"})  # the same once cleaned
    assert first.status_code == again.status_code == 302
    assert first.headers["Location"] == again.headers["Location"]
    assert db.session.scalar(db.select(db.func.count()).select_from(Comment)) == 1
    # Other words, or the same words later, are a new comment.
    assert post(client, path, {"body": "Another thought"}).status_code == 302
    db.session.execute(db.update(Comment).values(created_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    assert post(client, path, {"body": "Another thought"}).status_code == 302
    assert db.session.scalar(db.select(db.func.count()).select_from(Comment)) == 3


@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_a_double_submitted_article_is_saved_once(app: Flask) -> None:
    client = client_for(app, UserFactory(role_name="editor"))
    form = {"title": "Launch notes", "body": "All of it."}
    first, again = post(client, "/articles/new", form), post(client, "/articles/new", form)
    assert first.status_code == again.status_code == 302
    assert first.headers["Location"] == again.headers["Location"]
    assert db.session.scalar(db.select(db.func.count()).select_from(Article)) == 1
    # Other words, or the same words a while later, are a new article.
    assert post(client, "/articles/new", {**form, "body": "More."}).status_code == 302
    db.session.execute(db.update(Article).values(created_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    assert post(client, "/articles/new", {**form, "body": "More."}).status_code == 302
    assert db.session.scalar(db.select(db.func.count()).select_from(Article)) == 3


@pytest.mark.asvs("V15.2.2")
def test_comments_come_a_page_at_a_time(app: Flask) -> None:
    """Every comment of an article was rendered on its page: a busy (or flooded) discussion
    made each view of it megabytes of HTML. Fifty a page, oldest first."""
    from bastion.content.services import COMMENTS_PER_PAGE

    article = ArticleFactory(status="published")
    CommentFactory.create_batch(COMMENTS_PER_PAGE + 5, article=article)
    reader = app.test_client()
    first = reader.get(f"/articles/{article.id}").get_data(as_text=True)
    assert first.count('<li class="card" id="comment-') == COMMENTS_PER_PAGE
    assert f"Comments ({COMMENTS_PER_PAGE + 5})" in first
    assert f'href="/articles/{article.id}?page=2" rel="next">Newer' in first
    second = reader.get(f"/articles/{article.id}?page=2").get_data(as_text=True)
    assert second.count('<li class="card" id="comment-') == 5
    assert reader.get(f"/articles/{article.id}?page=999999999").status_code == 200
    # A new comment lands on the last page, and the answer goes there.
    resp = post(client_for(app, UserFactory()), f"/articles/{article.id}/comments",
                {"body": "Late to the party"})
    newest = db.session.scalar(db.select(Comment).order_by(Comment.id.desc()))
    assert newest is not None
    assert resp.headers["Location"].endswith(f"/articles/{article.id}?page=2#comment-{newest.id}")


def test_the_same_words_from_someone_else_are_their_own_comment(app: Flask) -> None:
    article = ArticleFactory(status="published")
    path = f"/articles/{article.id}/comments"
    for _ in range(2):
        assert post(client_for(app, UserFactory()), path, {"body": "+1"}).status_code == 302
    assert db.session.scalar(db.select(db.func.count()).select_from(Comment)) == 2


# ------------------------------------------------------------------- CSP report flood ---
@pytest.mark.asvs("V16.3.3", "V2.4.1")
def test_csp_reports_from_one_ipv6_network_are_sampled_as_one_client(app: Flask) -> None:
    """Sampling keyed by the full address gave a host holding a /64 one audit row per
    address: as many undeletable rows as requests."""
    client = app.test_client()
    for host in range(1, 11):
        resp = client.post("/csp-report", data=CSP_REPORT, content_type="application/csp-report",
                           environ_base={"REMOTE_ADDR": f"2001:db8:0:1::{host:x}"})
        assert resp.status_code == 204
    assert _audit_count("csp.report") == 1
    other = client.post("/csp-report", data=CSP_REPORT, content_type="application/csp-report",
                        environ_base={"REMOTE_ADDR": "2001:db8:0:2::1"})
    assert other.status_code == 204
    assert _audit_count("csp.report") == 2


@pytest.mark.asvs("V16.3.3", "V2.4.1")
def test_csp_report_audit_rows_are_capped_for_all_clients_together(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /48 holds 65,536 clients; each would add a row a minute without a shared cap."""
    from limits import RateLimitItemPerMinute

    monkeypatch.setattr(throttle_audit, "AUDIT_ROWS_PER_MINUTE", RateLimitItemPerMinute(3))
    client = app.test_client()
    for net in range(1, 9):
        resp = client.post("/csp-report", data=CSP_REPORT, content_type="application/csp-report",
                           environ_base={"REMOTE_ADDR": f"2001:db8:0:{net:x}::1"})
        assert resp.status_code == 204
    assert _audit_count("csp.report") == 3
