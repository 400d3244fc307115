"""A user's own data as one JSON document (``/account/export``), to keep before deleting.

Every section is an explicit list of fields, read as columns rather than whole rows, so a
new secret column (a hash, a key) can never ride along: what is not named here is not in
the document. No password hash, TOTP secret, recovery code, or session or token hash.
Six statements, whatever the account holds; the models serialise like the API's
(``bastion.api.schemas.Output``, pydantic's JSON).
"""

from __future__ import annotations

from datetime import datetime

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import load_only

from bastion.api.pat_routes import pat_out
from bastion.api.schemas import Output, PatOut
from bastion.extensions import db
from bastion.models import ApiToken, Article, Comment, Upload, User, UserSession, utcnow
from bastion.security import audit

PAT_COLUMNS = (ApiToken.id, ApiToken.name, ApiToken.hint, ApiToken.scopes, ApiToken.created_at,
               ApiToken.expires_at, ApiToken.last_used_at, ApiToken.revoked_at)


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
    exported_at: datetime
    account: AccountData
    articles: list[ArticleData]
    comments: list[CommentData]
    uploads: list[UploadData]
    sessions: list[SessionData]
    personal_access_tokens: list[PatOut]


def _articles(user_id: int) -> list[ArticleData]:
    rows = db.session.execute(
        select(Article.id, Article.title, Article.body_md, Article.status, Article.created_at,
               Article.updated_at, Article.published_at)
        .where(Article.author_id == user_id).order_by(Article.id)
    )
    return [ArticleData(id=r.id, title=r.title, body=r.body_md, status=r.status,
                        created_at=r.created_at, updated_at=r.updated_at,
                        published_at=r.published_at,
                        url=url_for("content.show_article", article_id=r.id, _external=True))
            for r in rows]


def _comments(user_id: int) -> list[CommentData]:
    rows = db.session.execute(
        select(Comment.id, Comment.article_id, Comment.body, Comment.created_at, Comment.edited_at)
        .where(Comment.author_id == user_id).order_by(Comment.id)
    )
    return [CommentData.model_validate(r) for r in rows]


def _uploads(user_id: int) -> list[UploadData]:
    rows = db.session.execute(
        select(Upload.id, Upload.kind, Upload.content_type, Upload.size, Upload.article_id,
               Upload.created_at)
        .where(Upload.owner_id == user_id).order_by(Upload.created_at, Upload.id)
    )
    return [UploadData(**r._asdict(),
                       url=url_for("uploads.serve_upload", upload_id=r.id, _external=True))
            for r in rows]


def _sessions(user_id: int) -> list[SessionData]:
    rows = db.session.execute(
        select(UserSession.created_at, UserSession.last_seen_at, UserSession.expires_at,
               UserSession.revoked_at, UserSession.ip, UserSession.user_agent)
        .where(UserSession.user_id == user_id).order_by(UserSession.id)
    )
    return [SessionData.model_validate(r) for r in rows]


def _tokens(user_id: int) -> list[PatOut]:
    # Rows for ``pat_out`` (the API's own view of a token), without the hash.
    records = db.session.scalars(
        select(ApiToken).options(load_only(*PAT_COLUMNS))
        .where(ApiToken.user_id == user_id).order_by(ApiToken.id)
    )
    return [pat_out(r) for r in records]


def build(user: User) -> AccountExport:
    """Everything the site keeps about ``user`` that is theirs to take away."""
    account = AccountData(
        username=user.username, email=user.email, display_name=user.display_name,
        bio=user.bio, role=user.role.name, created_at=user.created_at,
        email_confirmed_at=user.email_confirmed_at, last_sign_in_at=user.last_login_at,
        two_factor=user.has_2fa,
    )
    return AccountExport(
        exported_at=utcnow(), account=account, articles=_articles(user.id),
        comments=_comments(user.id), uploads=_uploads(user.id), sessions=_sessions(user.id),
        personal_access_tokens=_tokens(user.id),
    )


def export_json(user: User) -> bytes:
    """The document's bytes, audited as a bulk read of personal data (``account.exported``)."""
    document = build(user)
    audit.record("account.exported", actor_id=user.id, target_user_id=user.id, details={
        "articles": len(document.articles), "comments": len(document.comments),
        "uploads": len(document.uploads),
    })
    return document.model_dump_json(indent=2).encode()
