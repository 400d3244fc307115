"""Migrations 0011 and 0017 build their indexes on PostgreSQL without blocking writes, and
recover from a concurrent build that failed halfway."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import OperationalError

from bastion.extensions import db
from bastion.models import Article
from bastion.models.content import search_words
from tests.factories import OldArticleFactory

BEFORE = "0010_email_idna_domains"
NEW_INDEXES = ("ix_articles_author_id_status_published_at_id", "ix_comments_article_id_id")
OLD_INDEXES = ("ix_articles_author_id", "ix_comments_article_id")
INSERT_ARTICLE = text(
    "INSERT INTO articles (author_id, title, slug, body_md, body_html, summary, status, "
    "created_at, updated_at) SELECT author_id, :t, :t, body_md, body_html, summary, status, "
    "created_at, updated_at FROM articles LIMIT 1"
)


def _at_0010(make_app: Callable[..., Flask]) -> tuple[Flask, Article]:
    """A PostgreSQL database at the revision before 0011, holding one article."""
    from flask_migrate import downgrade

    app = make_app(backend="postgresql", migrate=True)
    with app.app_context():
        downgrade(revision=BEFORE)
        article: Article = OldArticleFactory()  # type: ignore[no-untyped-call,assignment]
        db.session.commit()
        db.session.remove()
    return app, article


@contextmanager
def _upgrading_in_background(app: Flask) -> Iterator[list[BaseException]]:
    """Run ``flask db upgrade`` in a thread; its failure, if any, lands in the list."""
    from flask_migrate import upgrade

    errors: list[BaseException] = []

    def run() -> None:
        try:
            with app.app_context():
                upgrade()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        thread.join(timeout=60)
        assert not thread.is_alive(), "the migration never finished"


def _wait_until_blocked_by(conn: Connection, pid: int, seconds: float = 15) -> None:
    """Until some other session waits for ``pid`` (the migration, waiting for its writes)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waiting = conn.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
            {"pid": pid},
        )
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError("the migration never waited for the open write transaction")


def _indexes(conn: Connection) -> dict[str, tuple[bool, str]]:
    """Name -> (valid, definition) of this schema's indexes on articles and comments."""
    rows = conn.execute(text(
        "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE t.relname IN ('articles', 'comments') AND pg_table_is_visible(t.oid)"
    ))
    return {name: (valid, definition) for name, valid, definition in rows}


def test_upgrade_lets_writes_through_while_it_builds_the_indexes(
    make_app: Callable[..., Flask],
) -> None:
    """A plain CREATE INDEX waits for the writers before it and makes every later write
    queue behind it for the whole build; a concurrent build lets them through."""
    app, _ = _at_0010(make_app)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if " INDEX " in statement.upper():
            statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.connect() as writer, engine.connect() as probe, engine.connect() as other:
            writer.execute(INSERT_ARTICLE, {"t": "open while migrating"})  # stays uncommitted
            writer_pid = writer.scalar(text("SELECT pg_backend_pid()"))
            probe = probe.execution_options(isolation_level="AUTOCOMMIT")
            other = other.execution_options(isolation_level="AUTOCOMMIT")
            with _upgrading_in_background(app) as errors:
                _wait_until_blocked_by(probe, writer_pid)
                other.execute(text("SET lock_timeout = '2s'"))
                try:
                    other.execute(INSERT_ARTICLE, {"t": "written during the build"})
                    blocked = None
                except OperationalError as exc:
                    blocked = exc
                writer.rollback()
            assert not errors, errors
            assert blocked is None, f"a write waited for the index build: {blocked}"
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    ddl = [s for s in statements if s.lstrip().upper().startswith(("CREATE", "DROP"))]
    assert len([s for s in ddl if any(n in s for n in NEW_INDEXES + OLD_INDEXES)]) == 4, ddl
    assert all("CONCURRENTLY" in s.upper() for s in ddl), ddl  # later revisions' too
    with engine.connect() as conn:
        indexes = _indexes(conn)
    assert all(indexes[name][0] for name in NEW_INDEXES)
    assert not set(OLD_INDEXES) & set(indexes)


def test_upgrade_replaces_an_invalid_index_left_by_a_failed_build(
    make_app: Callable[..., Flask],
) -> None:
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index that PostgreSQL keeps
    up to date on every write but never reads; re-running the upgrade must rebuild it,
    and keep the index the failed run had already finished."""
    from flask_migrate import upgrade

    app, article = _at_0010(make_app)
    with app.app_context():
        engine = db.engine
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        # The first run finished the articles index, then failed on the comments one (here
        # by a duplicate: a build refused for any reason leaves the same kind of leftover).
        conn.execute(text(
            f"CREATE INDEX CONCURRENTLY {NEW_INDEXES[0]} "
            "ON articles (author_id, status, published_at, id)"
        ))
        conn.execute(text("DROP INDEX CONCURRENTLY ix_articles_author_id"))
        for body in ("first", "second"):
            conn.execute(
                text("INSERT INTO comments (article_id, author_id, body, created_at, updated_at)"
                     " VALUES (:a, :u, :b, now(), now())"),
                {"a": article.id, "u": article.author_id, "b": body},
            )
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute(text(
                f"CREATE UNIQUE INDEX CONCURRENTLY {NEW_INDEXES[1]} ON comments (article_id)"
            ))
        assert _indexes(conn)[NEW_INDEXES[1]][0] is False  # the leftover
    with app.app_context():
        upgrade(revision="0011_author_and_comment_indexes")
        revision = db.session.scalar(text("SELECT version_num FROM alembic_version"))
        db.session.remove()
    assert revision == "0011_author_and_comment_indexes"
    with engine.connect() as conn:
        indexes = _indexes(conn)
    valid, definition = indexes[NEW_INDEXES[1]]
    assert valid
    assert "UNIQUE" not in definition and definition.endswith("(article_id, id)")
    assert indexes[NEW_INDEXES[0]][0]
    assert not set(OLD_INDEXES) & set(indexes)


def test_search_words_upgrade_runs_again_after_its_index_build_failed(
    make_app: Callable[..., Flask],
) -> None:
    """0017 commits the column and its words before the concurrent build: a second run
    must find them there (not add the column again), fill in the words of articles saved
    meanwhile by the previous release, and replace the INVALID index a failed build left."""
    from flask_migrate import downgrade, upgrade

    app = make_app(backend="postgresql", migrate=True)
    with app.app_context():
        downgrade(revision="0016_rerender_image_sizes")
        OldArticleFactory(title="Straße", body_md="Some *text*.")  # type: ignore[no-untyped-call]
        db.session.remove()
        engine = db.engine
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        # What the failed run committed: the column, and the words of the first article.
        conn.execute(text("ALTER TABLE articles ADD COLUMN search_words TEXT DEFAULT '' NOT NULL"))
        conn.execute(text("UPDATE articles SET search_words = :w"),
                     {"w": search_words("Straße", "Some *text*.")})
        # The previous release saved one more (its words: the server default), and the
        # build failed, here on a duplicate (any failure leaves the same kind of leftover).
        conn.execute(INSERT_ARTICLE, {"t": "Gasse"})
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute(text(
                "CREATE UNIQUE INDEX CONCURRENTLY ix_articles_search_words ON articles (author_id)"
            ))
        assert _indexes(conn)["ix_articles_search_words"][0] is False
    with app.app_context():
        upgrade()
        words = dict(db.session.execute(text("SELECT title, search_words FROM articles")).all())
        db.session.remove()
    assert words == {"Straße": "strasse some *text*.", "Gasse": "gasse some *text*."}
    with engine.connect() as conn:
        indexes = _indexes(conn)
    valid, definition = indexes["ix_articles_search_words"]
    assert valid and "UNIQUE" not in definition
    assert definition.endswith("USING gin (to_tsvector('simple'::regconfig, search_words))")
    # The previous release's index stays for its searches while it still serves.
    valid, definition = indexes["ix_articles_search"]
    assert valid and definition.endswith(
        "USING gin (to_tsvector('simple'::regconfig, (((title)::text || ' '::text) || body_md)))"
    )


def test_search_words_upgrade_lets_readers_through_while_it_folds_the_articles(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding the column locks the table against every reader until its transaction ends:
    the words of every article (up to 100,000 characters each) are worked out after that
    commit, or the site could not show one article until all of them were folded."""
    from flask_migrate import downgrade, upgrade

    from bastion.content import stored_html

    app = make_app(backend="postgresql", migrate=True)
    with app.app_context():
        downgrade(revision="0016_rerender_image_sizes")
        for title in ("Straße", "Gasse"):
            OldArticleFactory(title=title)  # type: ignore[no-untyped-call]
        db.session.remove()
        engine = db.engine
    refused: list[str] = []

    with engine.connect() as reader:
        reader = reader.execution_options(isolation_level="AUTOCOMMIT")
        reader.execute(text("SET lock_timeout = '500ms'"))

        def folding_while_a_reader_reads(title: str, body: str) -> str:
            try:  # what the previous release does meanwhile: list the articles
                reader.scalar(text("SELECT count(*) FROM articles"))
            except OperationalError as exc:
                refused.append(str(exc.orig))
            return search_words(title, body)

        monkeypatch.setattr(stored_html, "search_words", folding_while_a_reader_reads)
        with app.app_context():
            upgrade()
            words = set(db.session.scalars(text("SELECT search_words FROM articles")))
            db.session.remove()
    assert refused == [], refused[0]
    assert {w.split()[0] for w in words} == {"strasse", "gasse"}
