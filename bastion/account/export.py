"""A user's own data as one JSON document (``/account/export``), to keep before deleting.

Every section is an explicit list of fields, read as columns rather than whole rows, so a
new secret column (a hash, a key) can never ride along: what is not named here is not in
the document. No password hash, TOTP secret, recovery code, or session or token hash.
The document has the shape of ``AccountExport``; its items serialise like the API's
(``bastion.api.schemas.Output``, pydantic's JSON with ``indent=2``).

It is streamed, never held whole: an author may have thousands of articles of up to
``BODY_MAX`` characters, gigabytes after a few years. Rows are read a batch at a time
(``ARTICLE_BATCH``, ``ROW_BATCH``; a server-side cursor on PostgreSQL) and written an item
at a time, so a worker holds a batch, not the account. Six statements, whatever the
account holds, all in one read-only snapshot (``open_export``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from flask import abort, url_for
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, load_only
from sqlalchemy.sql.selectable import ScalarSelect

from bastion.api.pat_routes import pat_out
from bastion.api.schemas import Output, PatOut
from bastion.extensions import db
from bastion.models import ApiToken, Article, Comment, Role, Upload, User, UserSession, utcnow
from bastion.security import audit

log = logging.getLogger("bastion.account")

PAT_COLUMNS = (ApiToken.id, ApiToken.name, ApiToken.hint, ApiToken.scopes, ApiToken.created_at,
               ApiToken.expires_at, ApiToken.last_used_at, ApiToken.revoked_at)
# Rows fetched at a time: articles of up to BODY_MAX (100,000) characters, about 1 MB a
# batch; the other rows are small (a comment is at most 5,000 characters).
ARTICLE_BATCH = 10
ROW_BATCH = 200
# Small items are gathered into writes of about this size rather than sent one by one.
CHUNK_BYTES = 64 * 1024
INDENT = 2
# Sent after the bytes already out when the export fails part way: the file is then not
# JSON for any reader, lenient ones too, and says so to a person who opens it.
FAILED_MARK = b"\n\nEXPORT FAILED: this file is incomplete. Download your data again.\n"
STAMP = TypeAdapter(datetime)


class AccountData(Output):
    username: str
    email: str
    display_name: str
    bio: str
    role: str
    created_at: datetime
    email_confirmed_at: datetime | None
    last_sign_in_at: datetime | None
    two_factor: bool


class ArticleData(Output):
    id: int
    title: str
    body: str  # Markdown source, as written
    status: str
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    url: str


class CommentData(Output):
    id: int
    article_id: int
    body: str
    created_at: datetime
    edited_at: datetime | None


class UploadData(Output):
    id: str
    kind: str
    content_type: str
    size: int
    article_id: int | None
    created_at: datetime
    url: str


class SessionData(Output):
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    ip: str
    user_agent: str


class AccountExport(Output):
    """The document's shape; written section by section (``Document``), in this order."""

    exported_at: datetime
    account: AccountData
    articles: list[ArticleData]
    comments: list[CommentData]
    uploads: list[UploadData]
    sessions: list[SessionData]
    personal_access_tokens: list[PatOut]


def _articles(snap: Session, user_id: int) -> Iterator[ArticleData]:
    rows = snap.execute(
        select(Article.id, Article.title, Article.body_md, Article.status, Article.created_at,
               Article.updated_at, Article.published_at)
        .where(Article.author_id == user_id).order_by(Article.id)
        .execution_options(yield_per=ARTICLE_BATCH)
    )
    for r in rows:
        yield ArticleData(id=r.id, title=r.title, body=r.body_md, status=r.status,
                          created_at=r.created_at, updated_at=r.updated_at,
                          published_at=r.published_at,
                          url=url_for("content.show_article", article_id=r.id, _external=True))


def _comments(snap: Session, user_id: int) -> Iterator[CommentData]:
    rows = snap.execute(
        select(Comment.id, Comment.article_id, Comment.body, Comment.created_at, Comment.edited_at)
        .where(Comment.author_id == user_id).order_by(Comment.id)
        .execution_options(yield_per=ROW_BATCH)
    )
    return (CommentData.model_validate(r) for r in rows)


def _uploads(snap: Session, user_id: int) -> Iterator[UploadData]:
    rows = snap.execute(
        select(Upload.id, Upload.kind, Upload.content_type, Upload.size, Upload.article_id,
               Upload.created_at)
        .where(Upload.owner_id == user_id).order_by(Upload.created_at, Upload.id)
        .execution_options(yield_per=ROW_BATCH)
    )
    for r in rows:
        yield UploadData(**r._asdict(),
                         url=url_for("uploads.serve_upload", upload_id=r.id, _external=True))


def _sessions(snap: Session, user_id: int) -> Iterator[SessionData]:
    rows = snap.execute(
        select(UserSession.created_at, UserSession.last_seen_at, UserSession.expires_at,
               UserSession.revoked_at, UserSession.ip, UserSession.user_agent)
        .where(UserSession.user_id == user_id).order_by(UserSession.id)
        .execution_options(yield_per=ROW_BATCH)
    )
    return (SessionData.model_validate(r) for r in rows)


def _tokens(snap: Session, user_id: int) -> Iterator[PatOut]:
    # Rows for ``pat_out`` (the API's own view of a token), without the hash.
    records = snap.scalars(
        select(ApiToken).options(load_only(*PAT_COLUMNS))
        .where(ApiToken.user_id == user_id).order_by(ApiToken.id)
        .execution_options(yield_per=ROW_BATCH)
    )
    return (pat_out(r) for r in records)


Reader = Callable[[Session, int], Iterator[BaseModel]]
# The list sections of ``AccountExport``, in its order (a test holds the two together).
SECTIONS: dict[str, Reader] = {
    "articles": _articles, "comments": _comments, "uploads": _uploads,
    "sessions": _sessions, "personal_access_tokens": _tokens,
}


def _account(snap: Session, user_id: int) -> tuple[AccountData, dict[str, int]] | None:
    """The account's section and the counts the audit event records, in one statement."""
    def count(column: InstrumentedAttribute[Any], owner: InstrumentedAttribute[int]
              ) -> ScalarSelect[int]:
        return select(func.count(column)).where(owner == User.id).scalar_subquery()

    row = snap.execute(
        select(User.username, User.email, User.display_name, User.bio,
               Role.name.label("role"), User.created_at, User.email_confirmed_at,
               User.last_login_at, User.totp_enabled_at,
               count(Article.id, Article.author_id).label("articles"),
               count(Comment.id, Comment.author_id).label("comments"),
               count(Upload.id, Upload.owner_id).label("uploads"))
        .join(User.role).where(User.id == user_id)
    ).one_or_none()
    if row is None:
        return None
    account = AccountData(
        username=row.username, email=row.email, display_name=row.display_name, bio=row.bio,
        role=row.role, created_at=row.created_at, email_confirmed_at=row.email_confirmed_at,
        last_sign_in_at=row.last_login_at, two_factor=row.totp_enabled_at is not None,
    )
    return account, {"articles": row.articles, "comments": row.comments, "uploads": row.uploads}


def _snapshot() -> Session:
    """A session of its own whose reads all see one moment of the database.

    PostgreSQL: one ``REPEATABLE READ``, read-only transaction, so that every section and
    the audited counts show the account as it was when the export began, however long the
    download takes and whatever the user changes meanwhile (under the default ``READ
    COMMITTED`` each statement would see a later state: a comment on an article missing
    from ``articles``, counts that do not match). ``SERIALIZABLE`` would add nothing to a
    transaction that only reads. SQLite (development only) reads each section as it is.
    Not ``db.session``: Flask tears the request's session down when the view returns,
    before the body is sent.
    """
    snap = db.session.session_factory()
    if snap.get_bind().dialect.name == "postgresql":
        snap.connection(execution_options={"isolation_level": "REPEATABLE READ",
                                           "postgresql_readonly": True})
    return snap


def _nested(item: BaseModel, depth: int) -> str:
    """``item`` as pydantic writes it with ``indent=2``, indented to sit ``depth`` levels in.
    A JSON string never holds a raw line break, so every one is between tokens."""
    return item.model_dump_json(indent=INDENT).replace("\n", "\n" + " " * INDENT * depth)


def _gathered(parts: Iterable[str]) -> Iterator[bytes]:
    """``parts`` encoded, in writes of at least ``CHUNK_BYTES`` (the last may be less)."""
    pending: list[bytes] = []
    size = 0
    for part in parts:
        data = part.encode()
        pending.append(data)
        size += len(data)
        if size >= CHUNK_BYTES:
            yield b"".join(pending)
            pending.clear()
            size = 0
    if pending:
        yield b"".join(pending)


class Document:
    """An export under way: iterate it for the document's bytes; ``close`` ends its snapshot
    (also when nothing was read, e.g. a client gone before the first byte)."""

    def __init__(self, snap: Session, user_id: int, account: AccountData) -> None:
        self._snap, self._user_id, self._account = snap, user_id, account

    def close(self) -> None:
        self._snap.close()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from _gathered(self._parts())
        except Exception:
            # Headers and part of the body are out: no error page can follow. The mark
            # makes the file invalid JSON, and raising again has the server cut the
            # connection without the chunked ending, so the client sees the download fail.
            log.error("account export failed while streaming", exc_info=True,
                      extra={"user_id": self._user_id})
            yield FAILED_MARK
            raise
        finally:
            self.close()

    def _parts(self) -> Iterator[str]:
        pad = " " * INDENT
        yield "{\n"
        yield f'{pad}"exported_at": {STAMP.dump_json(utcnow()).decode()},\n'
        yield f'{pad}"account": {_nested(self._account, 1)}'
        for name, read in SECTIONS.items():
            yield f',\n{pad}"{name}": ['
            empty = True
            for item in read(self._snap, self._user_id):
                yield ("\n" if empty else ",\n") + pad * 2 + _nested(item, 2)
                empty = False
            yield "]" if empty else f"\n{pad}]"
        yield "\n}"


def open_export(user: User) -> Document:
    """Everything the site keeps about ``user`` that is theirs to take away, audited as a
    bulk read of personal data (``account.exported``) before the first byte is sent.

    The event's counts come from the snapshot the document is read from, so they are what
    the document holds; should the download then fail, ``account export failed while
    streaming`` is logged. The audit row is written through the request's session, so it
    stays whether or not the client reads the file to its end.
    """
    snap = _snapshot()
    try:
        found = _account(snap, user.id)
        if found is None:  # deleted since this request signed it in
            abort(404, description="This account no longer exists.")
        account, counts = found
        audit.record("account.exported", actor_id=user.id, target_user_id=user.id,
                     details=counts)
    except BaseException:
        snap.close()
        raise
    return Document(snap, user.id, account)
