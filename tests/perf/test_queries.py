"""Hot pages use a fixed, small number of queries (no N+1, no second session lookup)."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import event

from bastion.extensions import db
from tests.factories import PASSWORD, ArticleFactory, CommentFactory, UserFactory
from tests.support.auth import AuthActions
from tests.support.queries import statements as recorded_statements


def _selects(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_signed_in_home_page_loads_session_user_and_articles_in_two_queries(
    make_app,
    backend: str,  # type: ignore[no-untyped-def]
) -> None:
    # A fresh app with no outer app context: every request loads its user from scratch,
    # as in production (the shared test app keeps g, and so the user, between requests).
    app = make_app(backend=backend)
    with app.app_context():
        for _ in range(10):  # ten different authors: no query per author
            CommentFactory(article=ArticleFactory())
        username = UserFactory().username
    client = app.test_client()
    AuthActions(client).login(username, PASSWORD)
    client.get("/")  # settle the session (CSRF token, last-seen stamp)
    with app.app_context(), recorded_statements() as statements:
        resp = client.get("/")
    assert resp.status_code == 200
    assert "Sign out" in resp.get_data(as_text=True)
    selects = _selects(statements)
    assert len(selects) == 2, selects
    # One of the two reads session record, user and role together (loaded on first use).
    assert any(all(t in s for t in ("user_sessions", "users", "roles")) for s in selects)


def test_anonymous_home_page_reads_only_listed_columns(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    ArticleFactory(body_md="SECRET-ISH LONG BODY", body_html="<p>long</p>")
    with recorded_statements() as statements:
        resp = client.get("/")
    assert resp.status_code == 200
    (select,) = _selects(statements)
    assert "body_md" not in select
    assert "body_html" not in select


@pytest.mark.postgres
def test_published_list_follows_the_index_without_sorting(make_app) -> None:  # type: ignore[no-untyped-def]
    """The list's ORDER BY matches ix_articles_status_published_at_id: no sort of all rows."""
    from sqlalchemy import text

    from bastion.content import services

    app = make_app(backend="postgresql")
    with app.app_context():
        for _ in range(3):
            ArticleFactory()
        plans: list[str] = []

        def explain(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if statement.lstrip().startswith("SELECT articles.id"):
                cursor.execute("EXPLAIN " + statement, params)
                plans.extend(row[0] for row in cursor.fetchall())
            return statement, params

        db.session.execute(text("SET enable_seqscan = off"))  # tiny table: judge the index
        event.listen(db.engine, "before_cursor_execute", explain, retval=True)
        try:
            page = services.list_articles(None, per_page=20)
        finally:
            event.remove(db.engine, "before_cursor_execute", explain)
        assert page.total == 3
        plan = "\n".join(plans)
        assert "ix_articles_status_published_at_id" in plan, plan
        assert "Sort" not in plan, plan
        db.session.rollback()
