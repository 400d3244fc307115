"""Published content: articles and their comments."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bastion.models.base import Base, TimestampMixin

if TYPE_CHECKING:
    from bastion.models.user import User

ARTICLE_STATUSES = ("draft", "published")


# The words of an article for search (bastion.content.search). PostgreSQL uses the index
# only for queries that repeat this expression exactly, so it is written once, here, as
# PostgreSQL itself writes it back (which is what Alembic compares the models with).
SEARCH_DOCUMENT_SQL = "to_tsvector('simple'::regconfig, (title::text || ' '::text) || body_md)"


class Article(TimestampMixin, Base):
    __tablename__ = "articles"
    __table_args__ = (
        # Lists walk this index backwards: published_at DESC, id DESC, one page at a time.
        Index("ix_articles_status_published_at_id", "status", "published_at", "id"),
        # The same for one author (a profile), whose count it answers too; it also serves
        # every lookup by author alone (drafts, deletions, the foreign key).
        Index("ix_articles_author_id_status_published_at_id",
              "author_id", "status", "published_at", "id"),
        # Search, PostgreSQL only (SQLite has no tsvector; it matches substrings instead).
        Index(
            "ix_articles_search", text(SEARCH_DOCUMENT_SQL), postgresql_using="gin"
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(220), index=True)
    body_md: Mapped[str] = mapped_column(Text, default="")
    # Sanitised HTML rendered once on save, so reads never run the Markdown renderer.
    body_html: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str] = mapped_column(String(400), default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    published_at: Mapped[datetime | None] = mapped_column(default=None)

    author: Mapped[User] = relationship(lazy="joined", innerjoin=True)
    comments: Mapped[list[Comment]] = relationship(
        back_populates="article",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Comment.id",
    )

    @property
    def is_published(self) -> bool:
        return self.status == "published"


class Comment(TimestampMixin, Base):
    __tablename__ = "comments"
    __table_args__ = (
        # An article's comments are paged oldest first: a page reads its 50 entries in this
        # order (and the count the index alone), however long the discussion. It also serves
        # every lookup by article alone (the foreign key's cascade).
        Index("ix_comments_article_id_id", "article_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(Text)
    # When the author or a moderator last changed the text (``updated_at`` moves with any
    # write); shown to readers as "edited".
    edited_at: Mapped[datetime | None] = mapped_column(default=None)

    article: Mapped[Article] = relationship(back_populates="comments")
    author: Mapped[User] = relationship(lazy="joined", innerjoin=True)
