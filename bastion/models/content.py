"""Published content: articles and their comments."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, Text, event, inspect, text
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from bastion.models.base import Base, TimestampMixin

if TYPE_CHECKING:
    from bastion.models.user import User

ARTICLE_STATUSES = ("draft", "published")


# The words of an article for search (bastion.content.search), read from ``search_words``.
# PostgreSQL uses the index only for queries that repeat this expression exactly, so it is
# written once, here, as PostgreSQL itself writes it back (what Alembic compares it with).
SEARCH_DOCUMENT_SQL = "to_tsvector('simple'::regconfig, search_words)"
# What the previous release searched (title and body as written), for its index below.
PREVIOUS_SEARCH_DOCUMENT_SQL = (
    "to_tsvector('simple'::regconfig, (title::text || ' '::text) || body_md)"
)
# At most what a title and body could ever hold in UTF-8 (four bytes a character). NFKC
# makes up to 18 characters of one ("ﷺ"), so a hostile body of squared Katakana ("㌀" is
# "アパート"), in words all different, folds to over a megabyte, four times the body and
# near the megabyte PostgreSQL takes in one tsvector. Words past it are not searchable.
SEARCH_WORDS_MAX_BYTES = 400_000


def fold(value: str) -> str:
    """``value`` as search compares it: compatibility forms (NFKC: full-width letters,
    ligatures, the micro sign) and case (full case folding: "ß" is "ss", a final sigma is
    a sigma) made alike, then normalised again, as folding can leave a sequence that
    composes."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def search_words(title: str, body: str) -> str:
    """What search reads of an article: each different word of its title and Markdown
    body once, folded, in order of first use, cut at ``SEARCH_WORDS_MAX_BYTES``.

    Why a stored column: neither database can fold on the fly. SQLite has no NFKC and
    lowers ASCII only; PostgreSQL 15 has NFKC (``normalize``) but only ``lower()``, which
    keeps "ß" (so "STRASSE" never meets "Straße") and follows the database's locale (under
    ``C`` it lowers ASCII only). ``casefold()`` arrives in PostgreSQL 18.

    Why its words only, once each: search asks only whether words occur (no phrases, no
    positions, no excerpts; pages show the title and summary as written). A query word
    holds no white space, so it occurs in the text exactly when it occurs inside one of
    its words (SQLite's ``LIKE``), and PostgreSQL's parser starts afresh at white space,
    so it finds the same words in them. Its one reading across white space stays: a
    "<...>" span ("if x<y then y>z") is an HTML tag to it, whose words it skips, unless a
    repeated word left out here cuts the span short.
    For 100,000 characters of this project's documentation that is 44,000 characters
    (26 kB stored compressed) instead of a second full copy (51 kB).
    """
    kept: dict[str, None] = {}
    size = 0
    for word in fold(f"{title}\n{body}").split():
        if word not in kept:
            size += len(word.encode()) + 1
            if size > SEARCH_WORDS_MAX_BYTES + 1:
                break
            kept[word] = None
    return " ".join(kept)


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
            "ix_articles_search_words", text(SEARCH_DOCUMENT_SQL), postgresql_using="gin"
        ).ddl_if(dialect="postgresql"),
        # The previous release's search index, kept only for that release's searches while
        # it still serves during a rolling deploy (without it each one reads every body).
        # Nothing here reads it; the next release's migration drops it, and this with it.
        Index(
            "ix_articles_search", text(PREVIOUS_SEARCH_DOCUMENT_SQL), postgresql_using="gin"
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
    # ``search_words(title, body_md)``, written with them by every flush (below). Deferred:
    # only search reads it, in the database; lists read what they did (4,000 articles: a
    # page and its count took the same time with it, about 0.25 ms each). No default in
    # Python, so a row written for an older schema (tests of migrations) leaves it out,
    # and the previous release's rows, while it still runs, get ''.
    search_words: Mapped[str] = mapped_column(Text, server_default="", deferred=True)

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


@event.listens_for(Session, "before_flush")
def _fold_for_search(session: Session, _ctx: object, _instances: object) -> None:
    """A new article, or one whose title or body changed, gets its search words in the
    same flush, whichever code wrote it: services, admin tools and factories alike."""
    for obj in (*session.new, *session.dirty):
        if not isinstance(obj, Article):
            continue
        state = inspect(obj)
        if state.pending or any(
            state.attrs[name].history.has_changes() for name in ("title", "body_md")
        ):
            with session.no_autoflush:  # a title-only edit may load the body first
                obj.search_words = search_words(obj.title or "", obj.body_md or "")
