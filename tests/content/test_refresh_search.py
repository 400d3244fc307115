"""``content refresh-search`` makes articles written without the ORM's listener searchable.

The previous release, still running during a rolling deploy past migration 0017, inserts
articles with search words '' (the column's default) and edits others without touching
their words; raw SQL and bulk UPDATEs do the same. Search finds them only as their stored
words say, until the command stores the words a save would.
"""

from __future__ import annotations

from typing import Any

from click.testing import Result
from flask import Flask
from sqlalchemy import func, select, text, update

from bastion.content import services as content
from bastion.content.stored_html import write_search_words
from bastion.extensions import db
from bastion.models import Article, AuditEvent, utcnow
from tests.factories import ArticleFactory, UserFactory


def _refresh(app: Flask, *args: str) -> Result:
    result = app.test_cli_runner().invoke(args=["content", "refresh-search", *args])
    db.session.expire_all()
    return result


def _titles(query: str) -> set[str]:
    return {a.title for a in content.list_articles(None, query=query).items}


def _row(article_id: int) -> dict[str, Any]:
    """Every column of the article as stored."""
    found = db.session.execute(
        text("SELECT * FROM articles WHERE id = :id"), {"id": article_id}
    ).mappings().one()
    return dict(found)


def _stored_words(article_id: int) -> str:
    return db.session.scalar(select(Article.search_words).where(Article.id == article_id)) or ""


def _insert_as_the_previous_release(title: str, body: str) -> int:
    """An article written by code that does not know ``search_words`` (the previous
    release, or SQL by hand): the column takes its server default ''."""
    author = UserFactory(role_name="editor")
    inserted = db.session.execute(
        text("INSERT INTO articles (author_id, title, slug, body_md, body_html, summary,"
             " status, published_at) VALUES (:author, :title, 'slug', :body, '<p>x</p>', 'x',"
             " 'published', :now)"),
        {"author": author.id, "title": title, "body": body, "now": utcnow()},
    )
    db.session.commit()
    article_id = db.session.scalar(select(func.max(Article.id)))
    assert inserted.rowcount == 1 and article_id is not None
    return article_id


def test_an_article_inserted_without_words_is_found_after_the_command(app: Flask) -> None:
    article_id = _insert_as_the_previous_release("Hauptstraße", "Walk down it.")
    ArticleFactory(title="Unrelated", body_md="Nothing here.")
    assert _stored_words(article_id) == ""
    assert _titles("hauptstrasse") == set()
    assert _titles("walk") == set()

    result = _refresh(app)

    assert result.exit_code == 0, result.output
    assert result.output == "1 article(s) changed, 1 already up to date.\n"
    assert _stored_words(article_id) == "hauptstrasse walk down it."
    assert _titles("HAUPTSTRASSE") == {"Hauptstraße"}
    assert _titles("walk") == {"Hauptstraße"}


def test_a_bulk_update_of_the_body_is_found_after_the_command(app: Flask) -> None:
    """An UPDATE keeps the words of the text it replaced: search found the old text and
    not the new, as with an edit made by the previous release."""
    article = ArticleFactory(title="Notes", body_md="Old walrus text.")
    db.session.execute(
        update(Article).where(Article.id == article.id).values(body_md="New narwhal text.")
    )
    db.session.commit()
    assert _titles("walrus") == {"Notes"}
    assert _titles("narwhal") == set()

    result = _refresh(app)

    assert result.exit_code == 0, result.output
    assert "1 article(s) changed" in result.output
    assert _titles("walrus") == set()
    assert _titles("narwhal") == {"Notes"}


def test_nothing_to_do_succeeds_and_says_so(app: Flask) -> None:
    for n in range(3):
        ArticleFactory(title=f"Current {n}")
    result = _refresh(app)
    assert result.exit_code == 0, result.output
    assert result.output == "0 article(s) changed, 3 already up to date.\n"
    assert _refresh(app).output == result.output  # and again


def test_every_batch_is_refreshed_and_a_second_run_changes_nothing(app: Flask) -> None:
    ids = [_insert_as_the_previous_release(f"Bulk {n}", f"word{n}") for n in range(7)]
    result = _refresh(app, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert result.output == "7 article(s) changed, 0 already up to date.\n"
    assert [_stored_words(i) for i in ids] == [f"bulk {n} word{n}" for n in range(7)]
    assert _refresh(app, "--batch-size", "2").output.startswith("0 article(s) changed, 7 ")


def test_only_the_search_words_are_written(app: Flask) -> None:
    """No updated_at moved (lists and conditional requests read it), no HTML rendered
    again (a stored rendering the code would now make differently stays), no audit event."""
    article_id = _insert_as_the_previous_release("Quiet", "A *body*.")
    db.session.execute(
        text("UPDATE articles SET updated_at = :then, body_html = '<p>as once rendered</p>'"
             " WHERE id = :id"),
        {"then": utcnow().replace(year=2001), "id": article_id},
    )
    db.session.commit()
    before = _row(article_id)
    events = db.session.scalar(select(func.count()).select_from(AuditEvent))

    assert _refresh(app).exit_code == 0

    after = _row(article_id)
    assert after.pop("search_words") == "quiet a *body*."
    assert before.pop("search_words") == ""
    assert after == before
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_a_save_between_the_read_and_the_write_is_kept(app: Flask) -> None:
    """The words worked out from the text read are not written over a save made since
    (which stored words of its own text): the row is read again instead."""
    editor = UserFactory(role_name="editor")
    article = content.create_article(editor, title="Draft title", body="Text.", publish=True)
    with db.engine.connect() as other:
        row = other.execute(
            select(Article.id, Article.title, Article.body_md, Article.search_words)
            .where(Article.id == article.id)
        ).one()
        other.rollback()  # the read's snapshot ends; the save below is another transaction
        content.update_article(editor, article, title="Final title")
        assert not write_search_words(other, row, "draft title text.")
        other.commit()
    assert _stored_words(article.id) == "final title text."
    assert _titles("final") == {"Final title"}
    assert _titles("draft") == set()
