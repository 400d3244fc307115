"""Bad input gets a clear 4xx with a helpful message, never a 500, and stores nothing."""

from __future__ import annotations

import unicodedata

import pytest
from flask import Flask

from bastion.content.services import BODY_MAX, COMMENT_MAX, TITLE_MAX
from bastion.extensions import db
from bastion.models import Article, Comment
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.queries import row_count
from tests.support.roles import client_for, post

BAD_ARTICLES = [
    ({"title": "x" * (TITLE_MAX + 1), "body": "ok"}, f"Use at most {TITLE_MAX} characters."),
    ({"title": "ok", "body": "x" * (BODY_MAX + 1)}, f"Use at most {BODY_MAX} characters."),
    ({"title": "a\x00b", "body": "ok"}, "Must not contain NUL characters."),
    ({"title": "ok", "body": "a\x00b"}, "Must not contain NUL characters."),
    ({"title": "   ", "body": "ok"}, "This field is required."),
    ({"title": "ok", "body": ""}, "This field is required."),
    ({"body": "no title at all"}, "This field is required."),
    # Text that draws as something else.
    ({"title": "invoice\u202egpj.exe", "body": "ok"}, "control characters (U+202E)"),
    ({"title": "\u2067isolated", "body": "ok"}, "control characters (U+2067)"),
    ({"title": "vertical\x0btab", "body": "ok"}, "control characters (U+000B)"),
    ({"title": "red\x1b[31m", "body": "ok"}, "control characters (U+001B)"),
    ({"title": "ok", "body": "bell\x07"}, "control characters (U+0007)"),
    # Text that draws nothing: an empty-looking title in every list.
    ({"title": "\u200b\u200c\u2060", "body": "ok"}, "Write something visible"),
    ({"title": "\u3164\u2800\ufe0f", "body": "ok"}, "Write something visible"),
    ({"title": "ok", "body": "\u200b\n\U000e0041\U000e007f"}, "Write something visible"),
    # "Zalgo": a tower of combining marks on one letter draws over the lines around it.
    ({"title": "Z" + "\u0336\u0303\u0489\u0352\u0334", "body": "ok"},
     "Use at most 4 accents or marks on one letter."),
    ({"title": "ok", "body": "Z" + "\u0336\u0303\u0489" * 3}, "Use at most 8 accents or marks"),
]


@pytest.mark.asvs("V2.2.1", "V2.2.2", "V1.3.3")
@pytest.mark.parametrize(("data", "message"), BAD_ARTICLES)
def test_bad_article_is_refused_with_a_message(
    app: Flask, data: dict[str, str], message: str
) -> None:
    client = client_for(app, UserFactory(role_name="editor"))
    resp = post(client, "/articles/new", data)
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert row_count(Article) == 0


@pytest.mark.asvs("V2.2.1")
def test_scripts_that_need_joiners_and_direction_marks_are_welcome(app: Flask) -> None:
    """Joiners (emoji, Persian), right-to-left text and its marks in bodies stay allowed."""
    client = client_for(app, UserFactory(role_name="editor"))
    title = "\U0001f469\u200d\U0001f4bb \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u200fok"
    # Marks as real writing uses them: Vietnamese, pointed Hebrew with cantillation, Sanskrit
    # stacked in Tibetan script.
    body = ("\u202b\u05e9\u05dc\u05d5\u05dd\u202c and\ttabs\nand lines Vie\u0323\u0302t "
            "\u05d1\u05bc\u05b0\u05e8\u05b5\u05d0\u05e9\u05c1\u05b4\u0596\u05d9\u05ea "
            "\u0f67\u0f92\u0fb7\u0fb1\u0fb2\u0f7a")
    assert post(client, "/articles/new", {"title": title, "body": body}).status_code == 302
    stored = db.session.scalar(db.select(Article))
    # Stored in NFC, which puts a letter's marks in their canonical order.
    assert stored is not None and (stored.title, stored.body_md) == (title, unicodedata.normalize("NFC", body))


def test_a_title_pasted_over_two_lines_is_one(app: Flask) -> None:
    client = client_for(app, UserFactory(role_name="editor"))
    assert post(client, "/articles/new", {"title": "two\r\nlines\tand", "body": "ok"}).status_code == 302
    assert db.session.scalar(db.select(Article.title)) == "two lines and"


@pytest.mark.asvs("V2.2.1")
def test_bad_edit_leaves_the_article_untouched(app: Flask) -> None:
    article = ArticleFactory(title="Keep me", body_md="Keep body")
    client = client_for(app, article.author)
    resp = post(client, f"/articles/{article.id}/edit", {"title": "New", "body": "b\x00"})
    assert resp.status_code == 422
    assert "Must not contain NUL characters." in resp.get_data(as_text=True)
    db.session.expire_all()
    after = db.session.get(Article, article.id)
    assert after is not None
    assert (after.title, after.body_md) == ("Keep me", "Keep body")


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x" * (COMMENT_MAX + 1), f"Use at most {COMMENT_MAX} characters."),
        ("nul\x00", "Must not contain NUL characters."),
        # What to do, not "This field is required.".
        ("   ", "The comment is empty: write something first."),
        ("", "The comment is empty: write something first."),
        ("esc\x1b]8;;http://evil.invalid\x07", "control characters (U+001B)"),
        ("\u200b\u200d\ufeff", "Write something visible"),
        ("first!" + "\u0336\u0303\u0489" * 20, "Use at most 8 accents or marks on one letter."),
    ],
)
def test_bad_comment_is_refused(app: Flask, body: str, message: str) -> None:
    article = ArticleFactory()
    existing = CommentFactory(article=article, body="Keep")
    client = client_for(app, existing.author)
    resp = post(client, f"/articles/{article.id}/comments", {"body": body})
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    resp = post(client, f"/comments/{existing.id}/edit", {"body": body})
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    db.session.expire_all()
    assert row_count(Comment) == 1
    assert db.session.get(Comment, existing.id).body == "Keep"


@pytest.mark.asvs("V2.2.1")
def test_oversized_request_is_refused_whole(app: Flask) -> None:
    client = client_for(app, UserFactory(role_name="editor"))
    resp = post(client, "/articles/new", {"title": "big", "body": "x" * 2_000_000})
    assert resp.status_code == 413
    assert "too large" in resp.get_data(as_text=True)
    assert row_count(Article) == 0


@pytest.mark.parametrize(
    "source",
    [
        "[unclosed](http://example.org",
        "*" * 5000,
        "> " * 2000 + "deep",
        "- " * 2000 + "list",
        "```\nnever closed",
        "<div><span>unbalanced",
        "\u202e\u0000"[:1] + "right-to-left \ud7ff \uffff",
        "[a]: javascript:alert(1)\n\n[a]",
        "| a | b |\n|---|\n| 1 | 2 | 3 |",
    ],
)
@pytest.mark.asvs("V1.3.5")
def test_odd_markdown_is_stored_and_rendered_safely(app: Flask, source: str) -> None:
    client = client_for(app, UserFactory(role_name="editor"))
    resp = post(client, "/articles/new", {"title": "Odd", "body": source, "publish": "y"})
    assert resp.status_code == 302
    article = db.session.scalar(db.select(Article))
    page = client.get(f"/articles/{article.id}")
    assert page.status_code == 200
    assert 'href="javascript' not in article.body_html.lower()


UNKNOWN_PAGES = [
    "/articles/999999",
    "/articles/0",
    "/articles/abc",
    "/articles/-1",
    "/articles/99999999999999999999999",
    "/articles/99999999999999999999999/edit",
    "/comments/99999999999999999999/edit",
    "/articles/99999999999999999999/images",
    "/uploads/00000000000000000000000000000000",
    "/uploads/" + "9" * 300,
    "/u/nobody-here",
    "/u/%00",
    "/u/" + "x" * 300,
]
UNKNOWN_POSTS = [
    "/articles/999999/delete",
    "/articles/99999999999999999999/comments",
    "/comments/999999/delete",
    "/admin/users/99999999999999/role",
    "/admin/users/0/disable",
    "/articles/99999999999999999999/images",
    "/uploads/" + "9" * 300 + "/delete",
    "/account/tokens/99999999999999999999/revoke",
]
ODD_SEARCHES = [
    "q=%00",
    "q=" + "a" * 5000,
    "page=-5",
    "page=abc",
    "page=" + "9" * 40,
    "q=%27%20OR%201=1--",
    "q=%5C",
    "q=%25%25_",
    "q=%F0%9F%92%A5",
    "q=a&q=b",
]


@pytest.mark.asvs("V2.2.1")
def test_unknown_ids_answer_404_with_a_message(app: Flask) -> None:
    client = client_for(app, UserFactory(role_name="admin"))
    for path in UNKNOWN_PAGES:
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert "There is" in resp.get_data(as_text=True), path
    for path in UNKNOWN_POSTS:
        assert post(client, path, {"body": "x", "role": "viewer"}).status_code == 404, path


@pytest.mark.asvs("V2.2.1", "V15.3.5", "V15.3.7")
def test_odd_searches_answer_normally(app: Flask) -> None:
    ArticleFactory(title="Something")
    client = client_for(app)
    for query in ODD_SEARCHES:
        assert client.get(f"/articles?{query}").status_code == 200, query
        assert (
            client.get(
                f"/u/{db.session.scalar(db.select(Article)).author.username}?{query}"
            ).status_code
            == 200
        ), query


# Keys that url_for reads as its own parameters, and a path variable of the profile page.
URL_FOR_KEYS = [
    "_method=POST",
    "endpoint=x",
    "_scheme=http&_external=",
    "_external=1&_scheme=http",
    "_anchor=x",
    "values=1",
    "username=bob",
]


@pytest.mark.asvs("V2.2.1", "V15.3.7")
@pytest.mark.parametrize("extra", URL_FOR_KEYS)
def test_page_links_keep_only_the_arguments_the_page_reads(app: Flask, extra: str) -> None:
    # The query string once went whole into url_for: a 500 (BuildError, TypeError,
    # ValueError) or absolute http:// links on every list with more than one page.
    editor = UserFactory(username="ada", role_name="editor")
    ArticleFactory.create_batch(21, title="needle", author=editor)  # 20 a page
    client = client_for(app)
    for path, next_page in (
        ("/articles?q=needle", "/articles?q=needle&amp;page=2"),
        ("/articles?q=", "/articles?page=2"),
        ("/articles?page=1", "/articles?page=2"),
        ("/u/ada?page=1", "/u/ada?page=2"),
    ):
        resp = client.get(f"{path}&{extra}")
        assert resp.status_code == 200, (path, extra)
        html = resp.get_data(as_text=True)
        assert f'<a href="{next_page}" rel="next">' in html, (path, extra)
        assert 'href="http' not in html, (path, extra)
