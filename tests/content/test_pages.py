"""Article and comment pages: the happy paths, rendering and escaping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from bastion.api import tokens
from bastion.extensions import db
from bastion.models import ApiToken, Article, AuditEvent, Comment, utcnow
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for, post


def test_editor_writes_publishes_and_edits_an_article(app: Flask) -> None:
    editor = UserFactory(role_name="editor")
    client = client_for(app, editor, via_form=True)  # the whole journey, sign-in included
    resp = post(client, "/articles/new", {"title": "Hello world", "body": "Some **bold** text"})
    assert resp.status_code == 302
    article = db.session.scalar(db.select(Article))
    assert article.status == "draft"
    assert article.author_id == editor.id
    assert article.body_html == "<p>Some <strong>bold</strong> text</p>\n"
    # A draft is not listed publicly, but its author sees it among their drafts.
    assert "Hello world" not in client_for(app).get("/articles").get_data(as_text=True)
    assert "Your drafts" in client.get("/articles").get_data(as_text=True)
    resp = post(
        client,
        f"/articles/{article.id}/edit",
        {"title": "Hello again", "body": "Changed", "publish": "y"},
    )
    assert resp.status_code == 302
    db.session.refresh(article)
    assert (article.title, article.status) == ("Hello again", "published")
    page = client_for(app).get(f"/articles/{article.id}").get_data(as_text=True)
    assert "Hello again" in page
    assert "<p>Changed</p>" in page


def test_unpublishing_takes_the_publication_date_away(app: Flask) -> None:
    """A draft showed (and the API returned) the date of its earlier publication."""
    article = ArticleFactory(title="Back to draft")
    client = client_for(app, article.author)
    assert post(client, f"/articles/{article.id}/edit",
                {"title": "Back to draft", "body": "x"}).status_code == 302
    db.session.refresh(article)
    assert (article.status, article.published_at) == ("draft", None)
    post(client, f"/articles/{article.id}/edit", {"title": "Again", "body": "x", "publish": "y"})
    db.session.refresh(article)
    assert article.status == "published" and article.published_at is not None


def test_saving_says_what_changed_for_readers(app: Flask) -> None:
    """Publishing from the editor said only "Your changes are saved."."""
    article = ArticleFactory(title="T", status="draft", published_at=None)
    client = client_for(app, article.author)
    said = []
    for publish in ("y", "y", ""):
        resp = post(client, f"/articles/{article.id}/edit",
                    {"title": "T", "body": "x", **({"publish": publish} if publish else {})})
        said.append(client.get(resp.headers["Location"]).get_data(as_text=True))
    assert "Your article is published." in said[0]
    assert "Your changes are saved." in said[1]
    assert "a draft again" in said[2]


def test_edit_form_is_prefilled(app: Flask) -> None:
    article = ArticleFactory(title="Prefilled title", body_md="Body *md*")
    html = (
        client_for(app, article.author).get(f"/articles/{article.id}/edit").get_data(as_text=True)
    )
    assert 'value="Prefilled title"' in html
    assert "Body *md*" in html


def test_list_paginates_and_searches_with_literal_wildcards(app: Flask) -> None:
    for n in range(23):
        ArticleFactory(title=f"Post {n}")
    ArticleFactory(title="100% real_deal")
    client = client_for(app)
    assert client.get("/articles").get_data(as_text=True).count('class="card"') == 20
    page2 = client.get("/articles?page=2").get_data(as_text=True)
    assert page2.count('class="card"') == 4
    assert "Page 2 of 2" in page2
    found = client.get("/articles?q=%25").get_data(as_text=True)
    assert "Post 1<" not in found  # "%" is never a wildcard
    if db.engine.dialect.name == "sqlite":  # substrings; PostgreSQL searches words
        assert "100% real_deal" in found
        assert "1 result " in found
    else:
        assert "No published article matches" in found  # "%" holds no word
        found = client.get("/articles?q=REAL_de").get_data(as_text=True)
        assert "100% real_deal" in found and "1 result " in found
    assert "No published article matches" in client.get("/articles?q=_x_").get_data(as_text=True)


@pytest.mark.asvs("V1.2.1", "V1.3.1")
def test_comment_is_escaped_and_keeps_line_breaks(app: Flask) -> None:
    article = ArticleFactory()
    viewer = UserFactory()
    client = client_for(app, viewer)
    resp = post(
        client,
        f"/articles/{article.id}/comments",
        {"body": "line one\n<b>line</b> two & <script>x()</script>"},
    )
    assert resp.status_code == 302
    assert "#comment-" in resp.headers["Location"]
    html = client.get(f"/articles/{article.id}").get_data(as_text=True)
    assert (
        "line one<br>\n&lt;b&gt;line&lt;/b&gt; two &amp; &lt;script&gt;x()&lt;/script&gt;" in html
    )


def test_comment_authors_edit_and_delete_their_own(app: Flask) -> None:
    comment = CommentFactory(body="First")
    client = client_for(app, comment.author)
    assert "First" in client.get(f"/comments/{comment.id}/edit").get_data(as_text=True)
    assert post(client, f"/comments/{comment.id}/edit", {"body": "Second"}).status_code == 302
    db.session.refresh(comment)
    assert comment.body == "Second"
    assert post(client, f"/comments/{comment.id}/delete").status_code == 302
    db.session.expire_all()
    assert db.session.get(Comment, comment.id) is None


def test_an_edited_comment_is_marked_for_readers_and_the_api(app: Flask) -> None:
    article = ArticleFactory(status="published", published_at=utcnow())
    comment = CommentFactory(article=article, body="First")
    client = client_for(app, comment.author)
    reader = app.test_client()

    assert "edited" not in _comment_meta(reader.get(f"/articles/{article.id}"), comment.id)
    # Saving the same text again is not an edit.
    assert post(client, f"/comments/{comment.id}/edit", {"body": "First"}).status_code == 302
    db.session.refresh(comment)
    assert comment.edited_at is None

    assert post(client, f"/comments/{comment.id}/edit", {"body": "Second"}).status_code == 302
    db.session.refresh(comment)
    assert comment.edited_at is not None and comment.edited_at >= comment.created_at
    meta = _comment_meta(reader.get(f"/articles/{article.id}"), comment.id)
    assert f'edited <time datetime="{comment.edited_at.isoformat()}">' in meta

    access = tokens.issue_pair(UserFactory()).access_token
    listed = reader.get(f"/api/v1/articles/{article.id}/comments",
                        headers={"Authorization": f"Bearer {access}"}).get_json()["items"]
    assert [c["edited_at"] is not None for c in listed] == [True]


def test_comment_and_token_times_say_they_are_utc(app: Flask) -> None:
    """A comment's "30 Nov 2026 11:51" was UTC read as local time by every reader outside
    it (the account page's sessions and the audit log say UTC; comments did not)."""
    article = ArticleFactory(status="published", published_at=utcnow())
    comment = CommentFactory(article=article, body="First")
    client = client_for(app, comment.author)
    assert post(client, f"/comments/{comment.id}/edit", {"body": "Second"}).status_code == 302
    db.session.refresh(comment)
    meta = _comment_meta(app.test_client().get(f"/articles/{article.id}"), comment.id)
    assert f"{comment.created_at:%d %b %Y %H:%M} UTC</time>" in meta
    assert f"{comment.edited_at:%d %b %Y %H:%M} UTC</time>" in meta
    used = utcnow()
    db.session.add(
        ApiToken(
            user_id=comment.author.id,
            name="ci",
            token_hash="0" * 64,
            hint="bst_abcd",
            scopes="articles:read",
            expires_at=used + timedelta(days=30),
            last_used_at=used,
        )
    )
    db.session.commit()
    assert f"<td>{used:%Y-%m-%d %H:%M} UTC</td>" in client.get("/account").get_data(as_text=True)


def _comment_meta(resp: TestResponse, comment_id: int) -> str:
    page = resp.get_data(as_text=True)
    start = page.index(f'id="comment-{comment_id}"')
    return page[start:page.index("</p>", start)]


@pytest.mark.asvs("V8.2.2", "V16.2.1")
def test_admins_moderate_comments_and_deletion_is_audited(app: Flask) -> None:
    comment = CommentFactory()
    author_id = comment.author_id
    admin = UserFactory(role_name="admin")
    assert post(client_for(app, admin), f"/comments/{comment.id}/delete").status_code == 302
    db.session.expire_all()
    assert db.session.get(Comment, comment.id) is None
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.event == "comment.moderated"))
    assert event is not None
    assert (event.actor_id, event.target_user_id) == (admin.id, author_id)


def _audited(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name)))


@pytest.mark.asvs("V16.2.1", "V16.3.3")
def test_admin_edits_of_other_peoples_content_are_audited(app: Flask) -> None:
    article = ArticleFactory(title="Original", body_md="Body")
    comment = CommentFactory(body="Original comment")
    admin = UserFactory(role_name="admin")
    client = client_for(app, admin)
    edit = {"title": "Rewritten", "body": "Body", "publish": "y"}
    assert post(client, f"/articles/{article.id}/edit", edit).status_code == 302
    assert post(client, f"/comments/{comment.id}/edit", {"body": "Reworded"}).status_code == 302
    [edited] = _audited("article.edited_by_admin")
    assert (edited.actor_id, edited.target_user_id) == (admin.id, article.author_id)
    assert edited.details == {"article_id": article.id, "fields": ["title"]}
    [reworded] = _audited("comment.edited_by_admin")
    assert (reworded.actor_id, reworded.target_user_id) == (admin.id, comment.author_id)
    assert reworded.details == {"comment_id": comment.id, "article_id": comment.article_id}
    # An admin changing their own content is an ordinary edit, not an admin action.
    own = ArticleFactory(author=admin)
    own_comment = CommentFactory(author=admin)
    assert post(client, f"/articles/{own.id}/edit", edit).status_code == 302
    assert post(client, f"/comments/{own_comment.id}/edit", {"body": "Mine"}).status_code == 302
    assert len(_audited("article.edited_by_admin")) == len(_audited("comment.edited_by_admin")) == 1


@pytest.mark.asvs("V16.2.1")
def test_admin_deleting_an_article_audits_whose_it_was(app: Flask) -> None:
    article = ArticleFactory()
    author_id = article.author_id
    admin = UserFactory(role_name="admin")
    assert post(client_for(app, admin), f"/articles/{article.id}/delete").status_code == 302
    [deleted] = _audited("article.deleted_by_admin")
    assert (deleted.actor_id, deleted.target_user_id) == (admin.id, author_id)
    assert deleted.details == {"article_id": article.id}


def test_pages_show_empty_states(app: Flask) -> None:
    client = client_for(app)
    assert "Nothing has been published yet." in client.get("/articles").get_data(as_text=True)
    article = ArticleFactory()
    html = client.get(f"/articles/{article.id}").get_data(as_text=True)
    assert "No comments yet." in html
    assert "to comment." in html


def test_a_page_past_the_end_says_so_and_leads_to_the_last_one(app: Flask) -> None:
    """It said "Nothing has been published yet." with 21 articles published."""
    ArticleFactory.create_batch(21)
    html = client_for(app).get("/articles?page=99").get_data(as_text=True)
    assert "Nothing has been published yet." not in html
    assert "There is no page 99." in html and 'href="/articles?page=2"' in html
    searched = client_for(app).get("/articles?q=zzz&page=3").get_data(as_text=True)
    assert "No published article matches" in searched


@pytest.mark.parametrize("asked", ["99999999999999999999", "10000", "20000", "0099"])
def test_a_page_number_read_as_another_is_not_named(app: Flask, asked: str) -> None:
    """A number past the list's cap is read as the cap: ``?page=99999999999999999999``
    said "There is no page 10000.", which names a page nobody asked for."""
    ArticleFactory.create_batch(21)
    article = ArticleFactory()
    CommentFactory(article=article)
    for path in ("/articles", f"/articles/{article.id}", f"/u/{article.author.username}"):
        html = client_for(app).get(f"{path}?page={asked}").get_data(as_text=True)
        if asked == "10000":  # read as asked: named as asked
            assert "There is no page 10000" in html, path
        else:
            assert "There is no such page" in html and "There is no page" not in html, path


def test_an_editor_on_an_empty_home_page_is_offered_to_write(app: Flask) -> None:
    editor_home = client_for(app, UserFactory(role_name="editor")).get("/").get_data(as_text=True)
    assert 'href="/articles/new"' in editor_home and "once they sign in" not in editor_home
    viewer_home = client_for(app, UserFactory(role_name="viewer")).get("/").get_data(as_text=True)
    assert 'href="/articles/new"' not in viewer_home


def test_author_deletes_an_article(app: Flask) -> None:
    article = ArticleFactory()
    client = client_for(app, article.author)
    resp = post(client, f"/articles/{article.id}/delete")
    assert resp.status_code == 302
    db.session.expire_all()
    assert db.session.get(Article, article.id) is None


def test_a_new_article_page_says_where_images_are_added(app: Flask) -> None:
    """Images belong to a saved article, so the new-article page has no upload form; it says
    so instead of leaving a writer to look for one."""
    editor = UserFactory(role_name="editor")
    client = client_for(app, editor)
    page = client.get("/articles/new").get_data(as_text=True)
    assert "Images are added to a saved article" in page
    article = ArticleFactory(author=editor)
    edit = client.get(f"/articles/{article.id}/edit").get_data(as_text=True)
    assert "Images are added to a saved article" not in edit
    assert 'id="article-images-title"' in edit


def test_a_comment_page_past_the_end_leads_to_the_newest_comments(app: Flask) -> None:
    """Comments run oldest first; an old link to a page since emptied says so and leads to
    the last page, where the newest are, as the article and profile lists do."""
    from bastion.content.services import COMMENTS_PER_PAGE

    article = ArticleFactory(status="published")
    CommentFactory.create_batch(COMMENTS_PER_PAGE + 1, article=article)
    page = app.test_client().get(f"/articles/{article.id}?page=9").get_data(as_text=True)
    assert "There is no page 9 of comments." in page
    assert f'href="/articles/{article.id}?page=2#comments-heading"' in page
    single = ArticleFactory(status="published")
    CommentFactory(article=single)
    page = app.test_client().get(f"/articles/{single.id}?page=3").get_data(as_text=True)
    assert f'href="/articles/{single.id}#comments-heading">Go to the last page (1)' in page
