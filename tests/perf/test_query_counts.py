"""Listing pages and API lists run the same statements with 3 rows as with 40.

A statement count that grows with the data (a query per comment, per author, per token)
makes a page slower the busier the site gets, and lets anyone with a few accounts make
any reader's page slow. Each test renders a page over a small data set, grows the data
past what one page shows or close to it, and renders it again: the count must not move.
Requests run without an outer app context, as on a server, so nothing comes from a
session kept between requests.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, text

from bastion.extensions import db
from bastion.models import ApiToken, Article, AuditEvent, Upload, User, UserSession, utcnow
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for

SMALL, LARGE = 3, 40
BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))

_backends = pytest.mark.parametrize("backend", BACKENDS)


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _get(app: Flask, client: FlaskClient, path: str, **kwargs: Any) -> list[str]:
    """The statements one GET of ``path`` runs (it must answer 200)."""
    with app.app_context():
        engine = db.engine
    with _statements(engine) as seen:
        resp = client.get(path, **kwargs)
    assert resp.status_code == 200, (path, resp.status_code)
    return seen


def _grows(
    app: Flask,
    client: FlaskClient,
    path: str,
    add: Callable[[int], object],
    **kwargs: Any,
) -> tuple[list[str], list[str]]:
    """Statements of ``path`` after ``add(SMALL)`` and again after ``add(LARGE - SMALL)``."""
    with app.app_context():
        add(SMALL)
    client.get(path, **kwargs)  # settle the session (CSRF token, last-seen stamp)
    small = _get(app, client, path, **kwargs)
    with app.app_context():
        add(LARGE - SMALL)
    large = _get(app, client, path, **kwargs)
    return small, large


def _assert_flat(small: list[str], large: list[str]) -> None:
    assert len(large) == len(small), "\n\n".join(large)


def _signed_in(app: Flask, role: str = "viewer", **kwargs: Any) -> tuple[FlaskClient, int]:
    with app.app_context():
        user = UserFactory(role_name=role, **kwargs)
        user_id = user.id
        return client_for(app, user), user_id


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    assert user is not None
    return user


# ----------------------------------------------------------------------- articles ---
@_backends
@pytest.mark.asvs("V15.2.2")
def test_home_page_statements_do_not_grow_with_articles(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend)
    client = app.test_client()
    small, large = _grows(app, client, "/", lambda n: [ArticleFactory() for _ in range(n)])
    _assert_flat(small, large)


@_backends
@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize(
    "path", ["/articles", "/articles?page=2", "/articles?drafts_page=2", "/articles?q=Article"]
)
def test_article_list_statements_do_not_grow_with_articles(  # type: ignore[no-untyped-def]
    make_app, backend: str, path: str
) -> None:
    app = make_app(backend=backend)
    client, editor_id = _signed_in(app, "editor")

    def add(n: int) -> None:
        for _ in range(n):
            ArticleFactory()  # a new author each
            ArticleFactory(author=_user(editor_id), status="draft", published_at=None)

    small, large = _grows(app, client, path, add)
    _assert_flat(small, large)


@_backends
@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("path", ["/articles", "/articles?q=Article", "/u/{author}"])
def test_article_lists_read_only_listed_columns(make_app, backend: str, path: str) -> None:  # type: ignore[no-untyped-def]
    """Lists show title, summary, date and byline: the bodies (up to 100,000 characters
    each, twice) stay in the database, for published articles and the reader's drafts."""
    app = make_app(backend=backend)
    client, editor_id = _signed_in(app, "editor")
    with app.app_context():
        editor = _user(editor_id)
        ArticleFactory(author=editor)
        ArticleFactory(author=editor, status="draft", published_at=None)
        path = path.format(author=editor.username)
    client.get(path)
    reads = [s for s in _get(app, client, path) if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    listed = [s for s in reads if "FROM articles" in s and "count(" not in s]
    assert len(listed) == (2 if path == "/articles" else 1), "\n\n".join(reads)
    for statement in listed:  # as selected columns (a search still matches on body_md)
        assert "articles.body_md," not in statement, statement
        assert "articles.body_html," not in statement, statement


@_backends
@pytest.mark.asvs("V15.2.2")
def test_article_page_statements_do_not_grow_with_comments(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend)
    client, _ = _signed_in(app, "admin")  # sees edit and delete buttons on every comment
    with app.app_context():
        article_id = ArticleFactory().id

    def add(n: int) -> None:
        for _ in range(n):
            CommentFactory(article=db.session.get_one(Article, article_id))  # new author each

    small, large = _grows(app, client, f"/articles/{article_id}", add)
    _assert_flat(small, large)
    # Anonymous readers too (no per-comment permission checks there).
    anonymous = app.test_client()
    first = _get(app, anonymous, f"/articles/{article_id}")
    assert len(first) <= len(large)


@_backends
@pytest.mark.asvs("V15.2.2")
def test_profile_page_statements_do_not_grow_with_articles(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend)
    client, _ = _signed_in(app)
    with app.app_context():
        author = UserFactory(role_name="editor")
        author_id, username = author.id, author.username

    def add(n: int) -> None:
        for _ in range(n):
            ArticleFactory(author=_user(author_id))

    small, large = _grows(app, client, f"/u/{username}", add)
    _assert_flat(small, large)


# ------------------------------------------------------------------------ account ---
def _sessions_and_tokens(user_id: int) -> Callable[[int], None]:
    def add(n: int) -> None:
        now = utcnow()
        for i in range(n):
            db.session.add(UserSession(token_hash=secrets.token_hex(32), user_id=user_id,
                                       expires_at=now + timedelta(days=1), ip="192.0.2.1",
                                       user_agent=f"Browser {i}"))
            # Sessions that ended long ago stay behind until they are purged.
            db.session.add(UserSession(token_hash=secrets.token_hex(32), user_id=user_id,
                                       expires_at=now - timedelta(days=1),
                                       last_seen_at=now - timedelta(days=2)))
            db.session.add(ApiToken(user_id=user_id, name=f"token {i}",
                                    token_hash=secrets.token_hex(32), hint="bst_abcd",
                                    scopes="articles:read", expires_at=now + timedelta(days=30)))
        db.session.commit()

    return add


@_backends
@pytest.mark.asvs("V15.2.2")
def test_account_page_statements_do_not_grow_with_sessions_and_tokens(  # type: ignore[no-untyped-def]
    make_app, backend: str
) -> None:
    app = make_app(backend=backend)
    client, user_id = _signed_in(app)
    small, large = _grows(app, client, "/account", _sessions_and_tokens(user_id))
    _assert_flat(small, large)


@_backends
@pytest.mark.asvs("V15.2.2")
def test_account_page_reads_only_live_sessions(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Ended sessions stay as rows until purged: the list must not load them to drop them."""
    app = make_app(backend=backend)
    client, user_id = _signed_in(app)
    with app.app_context():
        _sessions_and_tokens(user_id)(LARGE)  # 40 live, 40 expired
    loaded: list[int] = []

    def count(target: UserSession, context: object) -> None:
        loaded.append(target.id)

    client.get("/account")
    event.listen(UserSession, "load", count)
    try:
        page = _get(app, client, "/account")
    finally:
        event.remove(UserSession, "load", count)
    assert page
    # The 40 live ones and the sign-in's own (once for the request, once in the list).
    assert len(set(loaded)) == LARGE + 1, len(set(loaded))


@_backends
@pytest.mark.asvs("V15.2.2")
def test_token_page_statements_do_not_grow_with_tokens(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend)
    client, user_id = _signed_in(app)
    small, large = _grows(app, client, "/account/tokens", _sessions_and_tokens(user_id))
    _assert_flat(small, large)


@_backends
@pytest.mark.asvs("V15.2.2")
def test_article_images_page_statements_do_not_grow_with_images(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend)
    client, editor_id = _signed_in(app, "editor")
    with app.app_context():
        article_id = ArticleFactory(author=_user(editor_id)).id

    def add(n: int) -> None:
        for _ in range(n):
            upload_id = secrets.token_hex(16)
            db.session.add(Upload(id=upload_id, owner_id=editor_id, article_id=article_id,
                                  kind="article", content_type="image/png", size=2048,
                                  width=10, height=10, storage_name=f"{upload_id}.png",
                                  original_name="photo.png"))
        db.session.commit()

    small, large = _grows(app, client, f"/articles/{article_id}/images", add)
    _assert_flat(small, large)


# -------------------------------------------------------------------------- admin ---
def _events(n: int) -> None:
    names = ("login.failure", "login.success", "ratelimit.hit", "csp.report", "token.created")
    for i in range(n):
        db.session.add(AuditEvent(event=names[i % len(names)], actor_id=i, target_user_id=i,
                                  ip="192.0.2.1", details={"n": i}))
    db.session.commit()


def _deleted_accounts(n: int) -> None:
    """Accounts that acted, then were deleted: the page names them from ``user.deleted``."""
    for _ in range(n):
        user = UserFactory()
        db.session.add(AuditEvent(event="login.success", actor_id=user.id))
        db.session.add(AuditEvent(event="user.deleted", target_user_id=user.id,
                                  details={"username": user.username}))
        db.session.delete(user)
    db.session.commit()


@_backends
@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize(
    ("path", "add"),
    [
        ("/admin/users", lambda n: [UserFactory() for _ in range(n)]),
        ("/admin/users?q=user", lambda n: [UserFactory() for _ in range(n)]),
        ("/admin/audit", _events),
        ("/admin/audit", _deleted_accounts),
        ("/admin/security", _events),
        ("/admin/security?window=30d", _events),
    ],
)
def test_admin_page_statements_do_not_grow(  # type: ignore[no-untyped-def]
    make_app, backend: str, path: str, add: Callable[[int], object]
) -> None:
    app = make_app(backend=backend)
    client, _ = _signed_in(app, "admin")
    small, large = _grows(app, client, path, add)
    _assert_flat(small, large)


# ---------------------------------------------------------------------------- API ---
def _access(app: Flask, user_id: int) -> dict[str, str]:
    from bastion.api import tokens

    with app.app_context():
        token = tokens.issue_pair(_user(user_id)).access_token
    return {"Authorization": f"Bearer {token}"}


@_backends
@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("path", ["/api/v1/articles", "/api/v1/articles?mine=true",
                                  "/api/v1/articles?q=Article"])
def test_api_article_list_statements_do_not_grow(  # type: ignore[no-untyped-def]
    make_app, backend: str, path: str
) -> None:
    app = make_app(backend=backend)
    _, editor_id = _signed_in(app, "editor")
    headers = _access(app, editor_id)

    def add(n: int) -> None:
        for _ in range(n):
            ArticleFactory()
            ArticleFactory(author=_user(editor_id))

    small, large = _grows(app, app.test_client(), path, add, headers=headers)
    _assert_flat(small, large)


@_backends
@pytest.mark.asvs("V15.2.2")
def test_api_comment_list_statements_do_not_grow(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend)
    _, user_id = _signed_in(app)
    headers = _access(app, user_id)
    with app.app_context():
        article_id = ArticleFactory().id

    def add(n: int) -> None:
        for _ in range(n):
            CommentFactory(article=db.session.get_one(Article, article_id))

    small, large = _grows(app, app.test_client(),
                          f"/api/v1/articles/{article_id}/comments?per_page=50", add,
                          headers=headers)
    _assert_flat(small, large)


@_backends
@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("path", ["/api/v1/tokens", "/api/v1/me"])
def test_api_account_statements_do_not_grow(make_app, backend: str, path: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend)
    _, user_id = _signed_in(app)
    headers = _access(app, user_id)
    small, large = _grows(app, app.test_client(), path, _sessions_and_tokens(user_id),
                          headers=headers)
    _assert_flat(small, large)


@_backends
@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/tokens", "/api/v1/articles?mine=true"])
def test_api_reads_the_callers_account_once(make_app, backend: str, path: str) -> None:  # type: ignore[no-untyped-def]
    """Authentication reads the token's user; the view reuses that row, not a second read."""
    app = make_app(backend=backend)
    _, user_id = _signed_in(app, "editor")
    headers = _access(app, user_id)
    client = app.test_client()
    client.get(path, headers=headers)
    reads = [s for s in _get(app, client, path, headers=headers) if "FROM users" in s]
    assert len(reads) == 1, reads


@pytest.mark.postgres
@pytest.mark.asvs("V15.2.2")
def test_audit_page_event_names_do_not_read_the_whole_trail(make_app) -> None:  # type: ignore[no-untyped-def]
    """The filter's suggestions walk the index name by name: reading the names of 400
    events of 5 kinds visits a handful of index entries, not 400 rows."""
    from bastion.admin.audit_log import known_events

    app = make_app(backend="postgresql")
    with app.app_context():
        _events(400)
        db.session.execute(text("ANALYZE audit_events"))
        plans: list[Any] = []

        def explain(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if "audit_events" in statement:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                plans.append(cursor.fetchone()[0][0]["Plan"])
            return statement, params

        event.listen(db.engine, "before_cursor_execute", explain, retval=True)
        try:
            names = known_events()
        finally:
            event.remove(db.engine, "before_cursor_execute", explain)
        db.session.rollback()
    assert names == sorted(names) and len(names) == 5, names
    (plan,) = plans
    assert _rows_read(plan, "audit_events") < 50, plan


def _rows_read(node: dict[str, Any], table: str) -> int:
    """Rows the scans of ``table`` in a plan returned, over all their loops."""
    own = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
    rows = own if node.get("Relation Name") == table else 0
    return rows + sum(_rows_read(child, table) for child in node.get("Plans", []))
