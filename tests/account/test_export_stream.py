"""The account export is streamed: the same document as when it was built in memory, in
bounded memory however much the account holds, from one snapshot, and never a
valid-looking file when it fails part way."""

from __future__ import annotations

import json
import logging
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import event, insert, select, text
from werkzeug.test import EnvironBuilder

from bastion.account import export
from bastion.api.pat_routes import pat_out
from bastion.extensions import db
from bastion.models import (
    ApiToken,
    Article,
    AuditEvent,
    Comment,
    Upload,
    User,
    UserSession,
    utcnow,
)
from tests.account.test_export import NAVIGATE, URL, _author_with_everything
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for

# Text that JSON writers get wrong: quotes, backslashes, line and paragraph separators,
# characters beyond the Basic Multilingual Plane, right-to-left and combining marks.
TRICKY = 'Ünïcødé "quoted" \\back\\ \u2028line\u2029para 𝄞🎉 עברית e\u0301 </script> \t tab'
BIG_BODY = ("# Long\n\n" + "Ωmega 😀 " * 12_500)[:100_000]
HEAVY_ARTICLES, HEAVY_BODY = 300, 100_000


def _reference(app: Flask, user_id: int, exported_at: datetime) -> bytes:
    """The document as the export built it before it streamed: one ``AccountExport`` read
    in full, dumped at once."""
    db.session.expire_all()
    user = db.session.get(User, user_id)
    assert user is not None

    def rows(model: Any, owner: Any, *order: Any) -> list[Any]:
        return list(db.session.scalars(select(model).where(owner == user_id).order_by(*order)))

    with app.test_request_context(URL, base_url="https://localhost"):
        document = export.AccountExport(
            exported_at=exported_at,
            account=export.AccountData(
                username=user.username, email=user.email, display_name=user.display_name,
                bio=user.bio, role=user.role.name, created_at=user.created_at,
                email_confirmed_at=user.email_confirmed_at, last_sign_in_at=user.last_login_at,
                two_factor=user.has_2fa),
            articles=[export.ArticleData(
                id=a.id, title=a.title, body=a.body_md, status=a.status,
                created_at=a.created_at, updated_at=a.updated_at, published_at=a.published_at,
                url=url_for("content.show_article", article_id=a.id, _external=True))
                for a in rows(Article, Article.author_id, Article.id)],
            comments=[export.CommentData.model_validate(c)
                      for c in rows(Comment, Comment.author_id, Comment.id)],
            uploads=[export.UploadData(
                id=u.id, kind=u.kind, content_type=u.content_type, size=u.size,
                article_id=u.article_id, created_at=u.created_at,
                url=url_for("uploads.serve_upload", upload_id=u.id, _external=True))
                for u in rows(Upload, Upload.owner_id, Upload.created_at, Upload.id)],
            sessions=[export.SessionData.model_validate(s)
                      for s in rows(UserSession, UserSession.user_id, UserSession.id)],
            personal_access_tokens=[pat_out(t)
                                    for t in rows(ApiToken, ApiToken.user_id, ApiToken.id)],
        )
    return document.model_dump_json(indent=2).encode()


def _stream(client: FlaskClient) -> Any:
    resp = client.get(URL, headers=NAVIGATE, buffered=False)
    assert resp.status_code == 200
    return resp


def _checked_out() -> int:
    return int(db.engine.pool.checkedout())  # type: ignore[attr-defined]


def _events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def test_the_sections_are_the_documents_fields_in_order() -> None:
    assert list(export.AccountExport.model_fields) == [
        "exported_at", "account", *export.SECTIONS]


def test_the_streamed_document_is_byte_for_byte_the_one_built_in_memory(app: Flask) -> None:
    made = _author_with_everything("ada")
    user = made["user"]
    ArticleFactory(author=user, title=TRICKY, body_md=BIG_BODY, status="draft",
                   published_at=None)
    for n in range(3):
        CommentFactory(author=user, article=made["article"], body=f"{TRICKY} {n}")
    client = client_for(app, user)

    resp = _stream(client)
    chunks = list(resp.response)
    resp.close()
    raw = b"".join(chunks)

    assert len(chunks) > 1  # sent in parts, not as one body
    doc = json.loads(raw)
    assert len(doc["articles"]) == 3 and doc["articles"][-1]["body"] == BIG_BODY
    assert doc["articles"][-1]["title"] == TRICKY
    exported_at = export.STAMP.validate_python(doc["exported_at"])
    assert raw == _reference(app, user.id, exported_at)
    assert export.AccountExport.model_validate_json(raw).comments[-1].body == f"{TRICKY} 2"


def test_an_account_with_nothing_is_the_same_document_too(app: Flask) -> None:
    user = UserFactory(username="new")
    client = client_for(app, user)
    raw = client.get(URL, headers=NAVIGATE).data
    doc = json.loads(raw)
    assert doc["articles"] == doc["comments"] == doc["uploads"] == []
    assert raw == _reference(app, user.id, export.STAMP.validate_python(doc["exported_at"]))


def _heavy_author() -> User:
    """An author with HEAVY_ARTICLES articles of HEAVY_BODY characters (30 million)."""
    user = UserFactory(role_name="editor")
    now = utcnow()
    for start in range(0, HEAVY_ARTICLES, 25):  # inserted in batches: the test's own memory
        db.session.execute(insert(Article), [
            {"author_id": user.id, "title": f"Heavy {n}", "slug": f"heavy-{n}",
             "body_md": f"{n:06d}" + "x" * (HEAVY_BODY - 6), "status": "draft",
             "created_at": now, "updated_at": now}
            for n in range(start, start + 25)])
        db.session.commit()
        db.session.expunge_all()
    return user


@pytest.mark.asvs("V15.2.2")
def test_memory_stays_bounded_however_much_the_account_holds(app: Flask) -> None:
    """300 articles of 100,000 characters: built in memory, the document took its size
    twice over (the objects and the encoded bytes); streamed, a few batches."""
    user = _heavy_author()
    client = client_for(app, user)
    total = HEAVY_ARTICLES * HEAVY_BODY
    with tempfile.TemporaryFile() as out:
        tracemalloc.start()
        try:
            resp = _stream(client)
            largest = 0
            for chunk in resp.response:
                out.write(chunk)
                largest = max(largest, len(chunk))
            resp.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        out.seek(0)
        doc = json.load(out)
    assert len(doc["articles"]) == HEAVY_ARTICLES
    assert [a["body"][:6] for a in doc["articles"]] == [f"{n:06d}" for n in range(HEAVY_ARTICLES)]
    assert all(len(a["body"]) == HEAVY_BODY for a in doc["articles"])
    assert peak < total // 5, f"peak {peak:,} bytes for a {total:,}-character document"
    assert largest < 2 * HEAVY_BODY + export.CHUNK_BYTES  # written an item or so at a time
    (audited,) = _events("account.exported")
    assert audited.details == {"articles": HEAVY_ARTICLES, "comments": 0, "uploads": 0}


def _failing_comments(snap: Any, user_id: int) -> Iterator[Any]:
    yield from export.SECTIONS["articles"](snap, user_id)  # something real goes out first
    raise RuntimeError("disk on fire")


def test_a_failure_part_way_leaves_invalid_json_and_a_log_line(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made = _author_with_everything("ada")
    ArticleFactory(author=made["user"], body_md=BIG_BODY)  # more than a chunk goes out
    client = client_for(app, made["user"])
    monkeypatch.setitem(export.SECTIONS, "comments", _failing_comments)
    before = _checked_out()

    resp = _stream(client)
    got: list[bytes] = []
    # The error reaches the server, which cuts the connection (no chunked ending).
    with caplog.at_level(logging.ERROR, "bastion.account"), pytest.raises(RuntimeError):
        got.extend(resp.response)  # keeps what came before the error
    resp.close()
    raw = b"".join(got)

    assert raw.startswith(b'{\n  "exported_at": ') and b"Title by ada" in raw
    assert raw.endswith(export.FAILED_MARK)
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    with pytest.raises(json.JSONDecodeError):  # nor is what came before the mark JSON
        json.loads(raw.removesuffix(export.FAILED_MARK))
    (line,) = [r for r in caplog.records if r.getMessage() == "account export failed while streaming"]
    assert line.levelno == logging.ERROR and line.exc_info and line.user_id == made["user"].id  # type: ignore[attr-defined]
    assert _checked_out() == before  # the snapshot's connection went back to the pool
    assert len(_events("account.exported")) == 1  # audited before the first byte


def test_a_client_that_leaves_early_releases_the_snapshot(app: Flask) -> None:
    """Gone after the first part, or before any: the connection goes back to the pool and
    the audit event (written before the first byte) stays."""
    user = _author_with_everything("ada")["user"]
    ArticleFactory(author=user, body_md=BIG_BODY)
    client = client_for(app, user)
    before = _checked_out()

    resp = _stream(client)
    next(iter(resp.response))
    assert _checked_out() == before + 1  # reading from its snapshot
    resp.close()
    assert _checked_out() == before

    # Not one byte read: a server that closes the body before iterating it (the test
    # client always reads the first part, so the app is called as a server calls it).
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    environ = EnvironBuilder(path=URL, base_url="https://localhost", headers={
        **NAVIGATE, "Cookie": f"{cookie.key}={cookie.value}"}).get_environ()
    statuses: list[str] = []
    body = app(environ, lambda status, _headers, _exc=None: statuses.append(status))
    assert statuses == ["200 OK"] and _checked_out() == before + 1
    body.close()  # type: ignore[attr-defined]
    assert _checked_out() == before  # and the body still referenced: not left to the collector
    assert len(_events("account.exported")) == 2


def test_the_statements_do_not_grow_with_the_account(app: Flask) -> None:
    """Six in the snapshot (the account with its counts, then one per section) and the
    audit row, however many rows each section has: never one per article."""
    from tests.support.queries import statements

    small = UserFactory(role_name="editor")
    big = _author_with_everything("ada")["user"]
    for n in range(3 * export.ARTICLE_BATCH):
        CommentFactory(author=big, article=ArticleFactory(author=big), body=f"c{n}")
    counts = []
    for user in (small, big):
        db.session.refresh(user)
        with app.test_request_context(URL), statements() as seen:
            b"".join(export.open_export(user))
        counts.append(len(seen))
    assert counts[0] == counts[1] == 7, counts


# ---------------------------------------------------------------- PostgreSQL ---
@pytest.fixture
def pg_app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """A snapshot of one transaction is PostgreSQL's (SQLite is for development only)."""
    app = make_app(backend="postgresql")
    with app.app_context():
        yield app


def test_the_document_and_its_audited_counts_are_one_snapshot(pg_app: Flask) -> None:
    """What the user adds while the file downloads is not in it, in no section: the
    counts audited at the start stay what the document holds."""
    app = pg_app
    made = _author_with_everything("ada")
    user, article = made["user"], made["article"]
    for _ in range(3 * export.ARTICLE_BATCH):
        ArticleFactory(author=user, body_md=BIG_BODY)
    client = client_for(app, user)

    resp = _stream(client)
    chunks = iter(resp.response)
    got = [next(chunks)]  # the articles are being read
    with db.engine.begin() as other:  # meanwhile, in another tab
        other.execute(insert(Comment), [{"article_id": article.id, "author_id": user.id,
                                          "body": "written during the export"}])
        other.execute(text("UPDATE users SET display_name = 'Renamed' WHERE id = :id"),
                      {"id": user.id})
    got.extend(chunks)
    resp.close()
    doc = json.loads(b"".join(got))

    assert [c["body"] for c in doc["comments"]] == ["Comment by ada"]
    assert doc["account"]["display_name"] == "Ada D."
    (audited,) = _events("account.exported")
    assert audited.details == {key: len(doc[key]) for key in ("articles", "comments", "uploads")}


@pytest.mark.asvs("V16.5.2")
def test_a_database_lost_part_way_cuts_the_file_short_and_is_logged(
    pg_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """The real failure: the snapshot's server process ends while articles are sent."""
    app = pg_app
    user = UserFactory(role_name="editor")
    for _ in range(3 * export.ARTICLE_BATCH):
        ArticleFactory(author=user, body_md=BIG_BODY)
    client = client_for(app, user)
    pids: list[int] = []

    def note_pid(conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if "FROM articles" in statement:
            pids.append(conn.connection.dbapi_connection.info.backend_pid)

    event.listen(db.engine, "before_cursor_execute", note_pid)
    try:
        resp = _stream(client)
        chunks = iter(resp.response)
        got = [next(chunks)]
    finally:
        event.remove(db.engine, "before_cursor_execute", note_pid)
    with db.engine.begin() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
    with caplog.at_level(logging.ERROR, "bastion.account"), pytest.raises(Exception):  # noqa: B017 - the driver's own error
        got.extend(chunks)
    resp.close()
    raw = b"".join(got)

    assert raw.endswith(export.FAILED_MARK) and raw.count(b'"body": ') < 3 * export.ARTICLE_BATCH
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert "account export failed while streaming" in caplog.messages
    assert client.get(URL, headers=NAVIGATE).status_code == 200  # the next export works
