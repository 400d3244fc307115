"""The query budget of every HTML page: flat in the data, no repeats, no unneeded columns.

``test_query_counts`` grows one kind of row per page; here one site is seeded as a busy one
looks (articles by many authors, a long discussion by many people, many accounts, sessions,
tokens and audit events) and every page is read as each kind of visitor, at a small and at a
large size. A statement count that moves with the data is an N+1 (a query per author, per
comment, per row). The same statement twice in one request is work thrown away. Columns a
page never shows (article bodies in lists, the Markdown source under a rendered article,
password hashes, TOTP secrets and bios of every author in a byline) are read for nothing,
and secrets are best not read at all. On PostgreSQL, the busiest pages' reads follow an
index in their own order instead of sorting every matching row.

Requests run without an outer app context, as on a server (``test_query_counts`` says why).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, text

from bastion.extensions import db
from bastion.models import ApiToken, Article, AuditEvent, Upload, User, UserSession, utcnow
from tests.conftest import _database_url, base_config, build_app
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for

BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))

# What the site holds at each size: the large one is the audit's "busy site".
SMALL = {"articles": 3, "authors": 1, "comments": 4, "users": 3, "events": 5, "owned": 1}
LARGE = {"articles": 30, "authors": 10, "comments": 60, "users": 40, "events": 50, "owned": 12}

# (visitor, page); {article}, {author} and {victim} are filled in from the seeded rows.
PAGES = [
    ("anonymous", "/"),
    ("viewer", "/"),
    ("anonymous", "/articles"),
    ("author", "/articles"),
    ("anonymous", "/articles?q=Article"),
    ("author", "/articles?q=Article"),
    ("anonymous", "/articles/{article}"),
    ("viewer", "/articles/{article}"),
    ("author", "/articles/{article}"),
    ("admin", "/articles/{article}"),
    ("author", "/articles/{article}/edit"),
    ("admin", "/articles/{article}/edit"),
    ("anonymous", "/u/{author}"),
    ("viewer", "/u/{author}"),
    ("viewer", "/account"),
    ("admin", "/account"),
    ("admin", "/admin/users"),
    ("admin", "/admin/users?q=user"),
    ("admin", "/admin/audit"),
    ("admin", "/admin/security"),
    ("admin", "/admin/users/{victim}/delete"),
]

Statement = tuple[str, str]  # SQL text, and its parameters as text


@contextmanager
def _recording(engine: Engine) -> Iterator[list[Statement]]:
    seen: list[Statement] = []

    def record(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append((statement, repr(params)))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@dataclass
class Site:
    """One app with its visitors and the ids the pages name."""

    app: Flask
    clients: dict[str, FlaskClient]
    ids: dict[str, Any]
    grown: int = 0
    small: dict[tuple[str, str], list[Statement]] = field(default_factory=dict)
    seen: dict[tuple[str, str], list[Statement]] = field(default_factory=dict)  # large size

    def path(self, page: str) -> str:
        return page.format(**self.ids)

    def read(self, who: str, page: str) -> list[Statement]:
        """The statements of one GET of ``page`` by ``who`` (it must answer 200)."""
        with self.app.app_context():
            engine = db.engine
        with _recording(engine) as seen:
            resp = self.clients[who].get(self.path(page))
        assert resp.status_code == 200, (who, page, resp.status_code, resp.location)
        return seen

    def read_all(self) -> dict[tuple[str, str], list[Statement]]:
        return {(who, page): self.read(who, page) for who, page in PAGES}


def _user(user_id: int) -> User:
    return db.session.get_one(User, user_id)


def _build(app: Flask) -> Site:
    with app.app_context():
        admin = UserFactory(role_name="admin")
        author = UserFactory(role_name="editor", display_name="Ada Author", bio="Writes. " * 200)
        viewer = UserFactory(display_name="Vic Viewer")
        victim = UserFactory(role_name="editor")
        article = ArticleFactory(author=author, body_md="Long *source*. " * 500,
                                 body_html="<p>Long rendered.</p>" * 500)
        CommentFactory(article=article, author=author)
        ids = {"admin": admin.id, "author": author.username, "author_id": author.id,
               "viewer": viewer.id, "victim": victim.id, "article": article.id}
        clients = {"anonymous": app.test_client(), "viewer": client_for(app, viewer),
                   "author": client_for(app, author), "admin": client_for(app, admin)}
    return Site(app, clients, ids)


def _grow(site: Site, size: dict[str, int]) -> None:
    """Add rows until the site holds ``size`` of each kind (beyond the fixed ones)."""
    with site.app.app_context():
        ids, step = site.ids, {k: v - SMALL[k] if site.grown else v for k, v in size.items()}
        site.grown += 1
        author, viewer, victim = _user(ids["author_id"]), _user(ids["viewer"]), _user(ids["victim"])
        article = db.session.get_one(Article, ids["article"])
        writers = [UserFactory(role_name="editor", bio="Bio. " * 300)
                   for _ in range(max(1, step["authors"]))]
        for i in range(step["articles"]):
            ArticleFactory(author=writers[i % len(writers)], body_md="Body. " * 300)
            ArticleFactory(author=author)
            ArticleFactory(author=author, status="draft", published_at=None)
        for i in range(step["comments"]):  # many people, the viewer and the author among them
            known = {"author": (viewer, author)[i % 2]} if i % 3 == 0 else {}
            CommentFactory(article=article, **known)
        for _ in range(step["users"]):
            UserFactory(bio="About me. " * 100)
        now = utcnow()
        for user_id in (ids["viewer"], ids["admin"]):
            for i in range(step["events"] // 5 + 1):
                db.session.add(UserSession(token_hash=secrets.token_hex(32), user_id=user_id,
                                           expires_at=now + timedelta(days=1), ip="192.0.2.7",
                                           user_agent=f"Browser {i}"))
                db.session.add(ApiToken(user_id=user_id, name=f"token {i}",
                                        token_hash=secrets.token_hex(32), hint="bst_abcd",
                                        scopes="articles:read",
                                        expires_at=now + timedelta(days=30)))
        names = ("login.failure", "login.success", "ratelimit.hit", "csp.report", "user.deleted")
        for i in range(step["events"]):
            db.session.add(AuditEvent(event=names[i % len(names)], actor_id=ids["admin"],
                                      target_user_id=1000 + i, details={"username": f"gone{i}"}))
        for _ in range(step["owned"]):  # what deleting the victim would take along
            owned = ArticleFactory(author=victim)
            CommentFactory(article=owned)
            CommentFactory(article=article, author=victim)
            upload_id = secrets.token_hex(16)
            db.session.add(Upload(id=upload_id, owner_id=victim.id, article_id=owned.id,
                                  kind="article", content_type="image/png", size=2048, width=10,
                                  height=10, storage_name=f"{upload_id}.png"))
        db.session.commit()


@pytest.fixture(scope="module", params=BACKENDS)
def budgets(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The site read at both sizes, once per backend (the tests only look at what it ran)."""
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"budget-{backend}")
    app = build_app(base_config(tmp, _database_url(backend, tmp, request)))
    site = _build(app)
    _grow(site, SMALL)
    site.read_all()  # settle every session (CSRF token, last-seen stamp)
    site.small = site.read_all()
    _grow(site, LARGE)
    site.seen = site.read_all()
    yield site
    with app.app_context():
        db.engine.dispose()


def _sql(statements: list[Statement]) -> list[str]:
    return [" ".join(sql.split()) for sql, _ in statements]


# ------------------------------------------------------------------------- counts ---
@pytest.mark.asvs("V15.2.2")
def test_no_page_runs_more_statements_on_a_busy_site(budgets: Site) -> None:
    small = budgets.small
    grown = {
        key: "\n\n".join(_sql(large))
        for key, large in budgets.seen.items()
        if len(large) != len(small[key])
    }
    assert not grown, "statement counts grew with the data:\n" + "\n\n".join(
        f"== {who} {page}: {len(small[(who, page)])} -> {len(budgets.seen[(who, page)])}\n{sql}"
        for (who, page), sql in grown.items()
    )


def test_no_page_runs_the_same_statement_twice(budgets: Site) -> None:
    repeated = {
        key: [sql for sql, n in Counter(statements).items() if n > 1]
        for key, statements in budgets.seen.items()
    }
    assert not {k: v for k, v in repeated.items() if v}, repeated


# ------------------------------------------------------------------------ columns ---
SECRETS_AND_BIO = ("password_hash", "totp_secret", ".bio", "security_stamp")


@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize(
    ("who", "page"),
    [("anonymous", "/"), ("viewer", "/"), ("anonymous", "/articles"), ("author", "/articles"),
     ("anonymous", "/articles?q=Article"), ("anonymous", "/articles/{article}"),
     ("admin", "/articles/{article}"), ("author", "/articles/{article}"),
     ("author", "/articles/{article}/edit"), ("viewer", "/u/{author}")],
)
def test_bylines_read_names_not_secrets_or_bios(budgets: Site, who: str, page: str) -> None:
    """A byline shows a name, @username and a profile link: the author rows joined to
    articles and comments bring those, not each author's password hash, TOTP secret and
    2,000-character bio (a page of 50 comments is 50 authors)."""
    content = [s for s in _sql(budgets.seen[(who, page)])
               if "FROM articles" in s or "FROM comments" in s]
    assert content
    for statement in content:
        assert not [c for c in SECRETS_AND_BIO if c in statement], statement


@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("who", ["anonymous", "viewer", "author", "admin"])
def test_article_page_reads_the_rendered_body_only(budgets: Site, who: str) -> None:
    """The page shows ``body_html``; the Markdown source (up to 100,000 characters) is for
    the editor."""
    (article,) = [s for s in _sql(budgets.seen[(who, "/articles/{article}")])
                  if "FROM articles" in s]
    assert "articles.body_html" in article
    assert "articles.body_md" not in article


@pytest.mark.asvs("V15.2.2")
def test_edit_page_reads_the_source_only(budgets: Site) -> None:
    """The editor shows the Markdown source; the rendered copy is made again on save."""
    (article,) = [s for s in _sql(budgets.seen[("author", "/articles/{article}/edit")])
                  if "FROM articles" in s]
    assert "articles.body_md" in article
    assert "articles.body_html" not in article


@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("page", ["/admin/users", "/admin/users?q=user"])
def test_admin_user_list_reads_no_secrets_or_bios(budgets: Site, page: str) -> None:
    """The table shows name, email, role and status: 25 password hashes, TOTP secrets and
    bios per page are neither shown nor needed."""
    (listed,) = [s for s in _sql(budgets.seen[("admin", page)]) if "ORDER BY users.username" in s]
    assert not [c for c in (*SECRETS_AND_BIO, "users.bio") if c in listed], listed


@pytest.mark.asvs("V15.2.2")
def test_deletion_page_counts_in_one_statement(budgets: Site) -> None:
    counts = [s for s in _sql(budgets.seen[("admin", "/admin/users/{victim}/delete")])
              if "count(" in s]
    assert len(counts) == 1, counts


def test_deletion_page_shows_the_same_counts(budgets: Site) -> None:
    """One statement or five, the confirmation page says what goes and what stays."""
    resp = budgets.clients["admin"].get(budgets.path("/admin/users/{victim}/delete"))
    html = resp.get_data(as_text=True)
    owned = LARGE["owned"]
    assert f"{owned} articles, each with every comment on it ({owned} comments by other" in html
    assert f"<li>{owned} comments they wrote;</li>" in html
    assert f"<li>{owned} images:" in html


# ------------------------------------------------------------------------ indexes ---
def _plans(statement: str, params: dict[str, Any]) -> str:
    db.session.execute(text("SET LOCAL enable_seqscan = off"))  # small tables: judge the index
    rows = db.session.execute(text("EXPLAIN " + statement), params)
    return "\n".join(row[0] for row in rows)


@pytest.mark.postgres
@pytest.mark.asvs("V15.2.2")
def test_busy_discussion_pages_follow_the_comment_index(make_app) -> None:  # type: ignore[no-untyped-def]
    """A page of a busy discussion reads its index entries in id order: neither every
    comment of the article sorted, nor every comment on the site filtered by article."""
    app = make_app(backend="postgresql")
    with app.app_context():
        articles = [ArticleFactory().id for _ in range(10)]
        someone = UserFactory().id
        # 20,000 comments on 10 articles, interleaved as they are posted.
        db.session.execute(text(
            "INSERT INTO comments (article_id, author_id, body, created_at, updated_at) "
            "SELECT :first + g % 10, :someone, 'c', now(), now() "
            "FROM generate_series(1, 20000) g"
        ), {"first": articles[0], "someone": someone})
        db.session.commit()
        db.session.execute(text("ANALYZE comments"))
        plans = [_plans("SELECT * FROM comments WHERE article_id = :a ORDER BY id "
                        "LIMIT 50 OFFSET :o", {"a": articles[3], "o": offset})
                 for offset in (0, 200)]
        db.session.rollback()
    for plan in plans:
        assert "ix_comments_article_id_id" in plan, plan
        assert "Sort" not in plan, plan


@pytest.mark.postgres
@pytest.mark.asvs("V15.2.2")
def test_profile_list_follows_the_author_index(make_app) -> None:  # type: ignore[no-untyped-def]
    """A prolific author's profile reads one page of their published articles from the
    index, newest first, not all of them sorted; drafts and others' articles are skipped."""
    app = make_app(backend="postgresql")
    with app.app_context():
        authors = [UserFactory(role_name="editor").id for _ in range(4)]
        db.session.execute(text(
            "INSERT INTO articles (author_id, title, slug, body_md, body_html, summary, status,"
            " published_at, created_at, updated_at) SELECT :a1 + g % 4, 'A', 'a', '', '', '',"
            " CASE WHEN g % 5 = 0 THEN 'draft' ELSE 'published' END,"
            " CASE WHEN g % 5 = 0 THEN NULL ELSE now() - g * interval '1 minute' END,"
            " now(), now() FROM generate_series(1, 2000) g"
        ), {"a1": authors[0]})
        db.session.commit()
        db.session.execute(text("ANALYZE articles"))
        plan = _plans(
            "SELECT id FROM articles WHERE status = 'published' AND author_id = :a "
            "ORDER BY published_at DESC, id DESC LIMIT 20 OFFSET 100", {"a": authors[1]})
        db.session.rollback()
    assert "ix_articles_author_id_status_published_at_id" in plan, plan
    assert "Sort" not in plan, plan
