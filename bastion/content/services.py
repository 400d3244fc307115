"""Articles and comments: the business rules, shared by pages and the API.

Every function takes the acting user and checks authorization itself (``authz``), so a
caller cannot forget. Services own the transaction: they commit, views never do.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from flask import abort
from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.orm import defer, joinedload, lazyload, load_only
from sqlalchemy.orm.interfaces import LoaderOption

from bastion import pagecache
from bastion.content import search
from bastion.content.image_sizes import sizes_reader
from bastion.content.marks import (
    MAX_MARKS_IN_LINE,
    MAX_MARKS_IN_PROSE,
    longest_mark_run,
    too_many_marks,
)
from bastion.content.rendering import render_markdown, summarise_html
from bastion.extensions import db
from bastion.models import Article, Comment, User, utcnow
from bastion.models.base import ID_MAX, affected_rows
from bastion.models.locks import lock_user
from bastion.security import audit, authz

TITLE_MAX, BODY_MAX, COMMENT_MAX, QUERY_MAX = 200, 100_000, 5_000, 200
PAGE_SIZE_MAX = 100
# Beyond this a page number is nonsense; bounding it keeps OFFSET inside a 64-bit integer.
PAGE_MAX = 10_000
# Comments shown per page under an article: a busy discussion stays a page, not a megabyte.
COMMENTS_PER_PAGE = 50
# An editor's drafts per page of the article list, above the published ones.
DRAFTS_PER_PAGE = 20
# The same words from the same author (on the same article) this soon are a double submit.
DUPLICATE_SECONDS = 60
# What a change to an article or comment deleted meanwhile answers (as if it never existed).
ARTICLE_GONE = "There is no article with that number, or it is not published."
COMMENT_GONE = "There is no comment with that number."
# What an edit based on an older version of the article answers (EditConflictError).
EDIT_CONFLICT = (
    "Someone else saved this article after you opened it. Your version is below, not saved: "
    "compare it with the saved one, then save again to replace it with yours."
)
COMMENT_EDIT_CONFLICT = (
    "Someone else changed this comment after you opened it. Your version is below, not saved: "
    "compare it with the saved one, then save again to replace it with yours."
)
# What an action allowed by the actor's role answers when, judged again under their lock,
# the role (or the account) no longer allows it: demoted or disabled meanwhile.
NO_LONGER_ALLOWED = (
    "Your account can no longer do this: its role or status changed while the request was "
    "on its way, so nothing was changed."
)
SIGNED_OUT_MEANWHILE = "You were signed out meanwhile, so nothing was changed. Sign in again."
# What the actor's standing is made of (``authz``): read again under their lock.
_STANDING = ["role_id", "role", "disabled_at", "totp_enabled_at"]


class ContentError(ValueError):
    """Invalid content; the message is safe to show."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ContentNotFoundError(LookupError):
    """The article or comment acted on was deleted meanwhile; the message is safe to show.

    Not a ContentError: nothing sent was wrong. Pages and the API answer it with the 404
    they give for one that never existed (HTML, or problem+json).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActorGoneError(LookupError):
    """The acting account was deleted while its request ran: not answered here, but by
    ``bastion.errors`` as any request of a deleted account is (a 401 that ends the sign-in)."""


class EditConflictError(ContentError):
    """The article changed since the editor loaded it: saving would silently undo the other
    change (two editors, or an author and an admin, on one article). Nothing is saved."""


@dataclass(frozen=True)
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class ArticlePage(Page):
    """A page of articles and, for a search, how many words were searched; the query's
    words past ``search.MAX_TERMS`` are not (``words_left_out``), and the page says so."""

    words_searched: int = 0
    words_left_out: bool = False


def slugify(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return slug[:200] or "article"


# A title is one line read in one direction: no control characters (a line break, an
# escape sequence), no bidi embedding, override or isolate controls (U+202A-U+202E,
# U+2066-U+2069) that make "gpj.exe" read as "exe.jpg" in every list and admin page.
# Joiners (U+200C/U+200D) stay: scripts and emoji need them. Bodies are free text but
# hold no control characters besides line breaks and tabs. bastion.api.schemas spells out
# the same rules as patterns, for the API document.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_TEXT_CONTROLS = frozenset("\n\t")
# What draws nothing: white space, control characters, Unicode's Default_Ignorable_Code_Point
# set (DerivedCoreProperties.txt: zero-width spaces and joiners, Hangul fillers, variation
# selectors, tags...) and the braille blank. Required text needs one character outside
# it, or a lone U+200B makes a title that looks empty in every list. A regex class in a
# syntax JSON Schema shares (astral characters written literally), so the API's patterns
# are built from it.
INVISIBLE = (
    r"\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    r"\u200b-\u200f\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0"
    r"\ufff0-\ufff8" "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_VISIBLE_CHAR = f"[^{INVISIBLE}]"  # a constant of this module, never user text
_VISIBLE = re.compile(_VISIBLE_CHAR)


def _clean_text(value: str, field: str, limit: int, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise ContentError("Must be text.", field)
    value = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n")
    if field == "title":  # one line: a pasted line break or tab is a space
        value = re.sub(r"[\t\n]+", " ", value)
    if "\x00" in value:
        raise ContentError("Must not contain NUL characters.", field)
    if required and not value.strip():
        raise ContentError("This field is required.", field)
    if required and not _VISIBLE.search(value):
        raise ContentError("Write something visible: this holds only spaces or invisible "
                           "characters.", field)
    if len(value) > limit:
        raise ContentError(f"Use at most {limit} characters.", field)
    marks = MAX_MARKS_IN_LINE if field == "title" else MAX_MARKS_IN_PROSE
    if longest_mark_run(value) > marks:
        raise ContentError(too_many_marks(marks), field)
    allowed = frozenset() if field == "title" else _TEXT_CONTROLS
    for char in value:
        if (unicodedata.category(char) == "Cc" and char not in allowed) or (
            field == "title" and char in BIDI_CONTROLS
        ):
            raise ContentError(
                f"Must not contain control characters (U+{ord(char):04X}).", field
            )
    return value


def escape_like(term: str) -> str:
    """Make %, _ and the escape character literal inside a LIKE pattern."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _visible_articles(actor: object) -> Select[Article]:
    stmt = select(Article)
    if isinstance(actor, User) and actor.is_active and actor.has_role("admin"):
        return stmt
    published = Article.status == "published"
    if isinstance(actor, User) and actor.is_active:
        return stmt.where(or_(published, Article.author_id == actor.id))
    return stmt.where(published)


# What article lists show (title, summary, date, byline). The Markdown source and the
# rendered body, up to 100,000 characters each, stay in the database: read for a page of
# 20 (or 100 drafts) they would be megabytes per view for a few lines of text.
_LISTED_COLUMNS = load_only(
    Article.id, Article.author_id, Article.title, Article.summary, Article.status,
    Article.published_at,
)


# What a byline shows of an author (bastion/templates/_byline.html): the name, the
# @username and whether the profile can be linked. Joined to every listed article and every
# comment, the whole row would bring each author's password hash, TOTP secret and bio (up
# to 2,000 characters) along, and their role, which no byline shows. An author already in
# the session (the reader's own account) keeps everything it had.
BYLINE = joinedload(Article.author, innerjoin=True).options(
    load_only(User.id, User.username, User.display_name, User.disabled_at,
              User.email_confirmed_at),
    lazyload(User.role),
)
_COMMENT_BYLINE = joinedload(Comment.author, innerjoin=True).options(
    load_only(User.id, User.username, User.display_name, User.disabled_at,
              User.email_confirmed_at),
    lazyload(User.role),
)
# What the article page and the editor each read: the page shows the rendered body, the
# editor the Markdown source; neither needs the other (up to 100,000 characters each).
_READ_FOR: dict[str, tuple[LoaderOption, ...]] = {
    "page": (defer(Article.body_md), BYLINE),
    "editor": (defer(Article.body_html), lazyload(Article.author)),
}


# NUL, and the bidi embeddings, overrides, isolates and marks (Unicode's Bidi_Control).
_NOT_SEARCHED = dict.fromkeys(
    [0, 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def clean_query(query: str) -> str:
    """The search text as searched, and as the results page repeats it.

    Composed (NFC) like every stored title and body, or an "é" typed or pasted as "e" plus
    a combining accent (macOS, some keyboards) finds nothing. PostgreSQL refuses NUL
    inside text, so it is dropped (a search for only that is no search), and so are bidi
    controls: no word holds them, and echoed into the page's title (where no ``<bdi>``
    isolates them) an override reversed "Search:" and the rest of the tab's text. Cut to
    ``QUERY_MAX``, it loses the spaces the cut may leave at its end.
    """
    query = unicodedata.normalize("NFC", query or "").translate(_NOT_SEARCHED)
    return query.strip()[:QUERY_MAX].rstrip()


def list_articles(
    actor: object,
    *,
    query: str = "",
    page: int = 1,
    per_page: int = 20,
    author_id: int | None = None,
    published_only: bool = True,
    with_bodies: bool = False,
) -> ArticlePage:
    """A page of articles, newest first; ``with_bodies`` for callers that show the bodies
    (the API), else only the columns a list shows are read."""
    page = min(max(1, int(page)), PAGE_MAX)
    per_page = min(max(1, int(per_page)), PAGE_SIZE_MAX)
    stmt = (
        select(Article).where(Article.status == "published")
        if published_only
        else _visible_articles(actor)
    )
    if author_id is not None:
        stmt = stmt.where(Article.author_id == author_id)
    query = clean_query(query)
    scan: AbstractContextManager[None] = nullcontext()
    found = None
    if query:
        found = search.articles_matching(query, db.session.get_bind().dialect.name)
        stmt = stmt.where(found.condition)
        if found.indexed:
            scan = search.through_index()
    # Published articles always have published_at, so the published list can follow the
    # (status, published_at, id) index backwards; lists with drafts put undated ones last.
    newest = Article.published_at.desc()
    with scan:
        total = db.session.scalar(stmt.with_only_columns(func.count(Article.id))) or 0
        if not with_bodies:
            # A list of one author's articles (a profile) shows no byline; the author, if
            # ever asked for, is the one row already in the session (no join, no query).
            stmt = stmt.options(
                _LISTED_COLUMNS, BYLINE if author_id is None else lazyload(Article.author)
            )
        items = db.session.scalars(
            stmt.order_by(newest if published_only else newest.nulls_last(), Article.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
    return ArticlePage(
        items=list(items), page=page, per_page=per_page, total=total,
        words_searched=found.words_searched if found else 0,
        words_left_out=found.words_left_out if found else False,
    )


def list_drafts(actor: object, page: int = 1, per_page: int = DRAFTS_PER_PAGE) -> Page:
    """A page of the actor's own unpublished articles, last changed first (nobody else's,
    even for admins). A page past the end is the last one: drafts get published or deleted
    between two clicks, and an empty page would hide the list and its pager."""
    if not isinstance(actor, User) or not actor.is_active:
        return Page(items=[], page=1, per_page=per_page, total=0)
    per_page = min(max(1, int(per_page)), PAGE_SIZE_MAX)
    stmt = select(Article).where(Article.author_id == actor.id, Article.status == "draft")
    total = db.session.scalar(stmt.with_only_columns(func.count(Article.id))) or 0
    page = min(max(1, int(page)), PAGE_MAX, max(1, -(-total // per_page)))
    items = db.session.scalars(
        stmt.options(_LISTED_COLUMNS, lazyload(Article.author))  # the actor: no byline
        .order_by(Article.updated_at.desc(), Article.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return Page(items=list(items), page=page, per_page=per_page, total=total)


def get_article(
    actor: object,
    article_id: int,
    *,
    attempt: str = "",
    read_for: Literal["page", "editor"] | None = None,
) -> Article | None:
    """The article if it exists and the actor may read it; drafts of others look absent.

    ``attempt`` names a change the actor is trying (``"edit"``): refused on a hidden draft,
    it is audited like a refusal on a visible article, though both answer "not found".
    ``read_for`` reads only what that page shows: ``"page"`` the rendered body and a byline,
    ``"editor"`` the Markdown source; anything else is still loaded when first used.
    """
    if not 0 < article_id <= ID_MAX:
        return None
    article = db.session.get(Article, article_id, options=_READ_FOR.get(read_for or "", ()))
    if article is None:
        return None
    if not authz.can_read_article(actor, article):
        if attempt:
            authz.record_denial(hide=True, what=f"{attempt} article {article_id}")
        return None
    return article


def create_article(actor: User, *, title: str, body: str, publish: bool = False,
                   still_signed_in: Callable[[], bool] | None = None) -> Article:
    """Write an article (editors and admins); ``still_signed_in`` as for ``judge_again``."""
    authz.require(authz.can_create_article(actor), what="create article")
    title = _clean_text(title, "title", TITLE_MAX).strip()
    body = _clean_text(body, "body", BODY_MAX)
    body_html = render_markdown(body, sizes_reader(db.session))
    article = Article(
        author_id=actor.id,
        title=title,
        slug=slugify(title),
        body_md=body,
        body_html=body_html,
        summary=summarise_html(body_html),
        status="published" if publish else "draft",
        published_at=utcnow() if publish else None,
    )
    lock_user(actor.id)  # two copies of one submission wait for each other here
    # Under that lock, which role changes take too: an editor demoted meanwhile writes none.
    judge_again(actor, lambda: authz.can_create_article(actor), what="create article",
                 still_signed_in=still_signed_in)
    same = _recent_duplicate_article(actor.id, article)
    if same is not None:
        db.session.rollback()  # releases the lock; nothing was written
        return same
    db.session.add(article)
    db.session.commit()
    return article


def judge_again(actor: User, allowed: Callable[[], bool], *, what: str,
                 still_signed_in: Callable[[], bool] | None = None) -> None:
    """Judge an action again on the actor's account as committed now; the caller holds the
    actor's lock (``lock_user``). Refused, it rolls back (the lock goes) and answers 403.

    The request was judged on the copy of the account it loaded at its start. Role changes,
    disabling, "sign out everywhere", password changes and account deletion commit under
    the same lock (after the admins' lock, which no content service takes, so the order is
    the admin area's), so each is either seen here or waits for this commit: an admin
    demoted or disabled meanwhile deletes or rewrites nothing of anyone's, an author nothing
    of their own (audited as ``authz.denied``, like the admin area's refusals of a former
    admin), and neither does one whose sign-in ended (``still_signed_in``: the page's
    session record or the API token, read again).
    """
    actor_id = actor.id  # the rollback expires the instance, whose row is gone
    if db.session.scalar(select(User.id).where(User.id == actor_id)) is None:
        db.session.rollback()
        raise ActorGoneError(f"user {actor_id} was deleted meanwhile")
    if still_signed_in is not None and not still_signed_in():
        db.session.rollback()
        abort(403, description=SIGNED_OUT_MEANWHILE)
    db.session.refresh(actor, attribute_names=_STANDING)
    if not allowed():
        db.session.rollback()
        authz.record_denial(hide=False, what=what)
        abort(403, description=NO_LONGER_ALLOWED)


def _judge_again_locked(actor: User, allowed: Callable[[], bool], *, what: str,
                        still_signed_in: Callable[[], bool] | None) -> None:
    """Take the actor's lock, held until commit, and ``judge_again``: for every change to
    an article or comment, the author's own as much as an admin's to someone else's (an
    author disabled, demoted or signed out everywhere meanwhile changes nothing either).

    Taken before the content's row lock, as account deletion takes the user's lock before
    deleting their content. Only writes come here: reading a page takes no lock.
    """
    lock_user(actor.id)
    judge_again(actor, allowed, what=what, still_signed_in=still_signed_in)


def _recent_duplicate_article(author_id: int, new: Article) -> Article | None:
    """The author's latest article when it is this one again, saved moments ago.

    A double click or a retried API call is one article: the caller gets the first back.
    """
    latest = db.session.scalar(
        select(Article).where(Article.author_id == author_id).order_by(Article.id.desc()).limit(1)
    )
    if latest is None or (latest.title, latest.body_md, latest.status) != (
        new.title, new.body_md, new.status
    ):
        return None
    return latest if _just_saved(latest.created_at) else None


def _just_saved(created_at: datetime) -> bool:
    """Whether a row saved at ``created_at`` is recent enough to be a double submit's twin."""
    return created_at > utcnow() - timedelta(seconds=DUPLICATE_SECONDS)


def revision(article: Article) -> str:
    """A fingerprint of what an editor sees and can change, sent back with the edit form
    (``update_article(expected_revision=...)``) to detect an edit made meanwhile."""
    return _fingerprint(article.status, article.title, article.body_md)


def _fingerprint(status: str, title: str, body: str) -> str:
    # NUL never occurs in a stored title or body (_clean_text refuses it): a safe separator.
    return hashlib.sha256(f"{status}\0{title}\0{body}".encode()).hexdigest()[:32]


def update_article(
    actor: User,
    article: Article,
    *,
    title: str | None = None,
    body: str | None = None,
    publish: bool | None = None,
    expected_revision: str | None = None,
    check_locked: Callable[[Article], None] | None = None,
    still_signed_in: Callable[[], bool] | None = None,
) -> Article:
    """Change what is given; with ``expected_revision`` (``revision()`` of the version the
    editor started from), refuse with EditConflictError when someone saved another version
    since, rather than overwrite it unseen (a lost update).

    ``check_locked`` is called with the article as committed, under its row lock and after
    the slow rendering, to refuse by raising (the API's If-Match); it must roll back first.
    The edit is judged again under the actor's lock, the author's as an admin's
    (``_judge_again_locked``; ``still_signed_in``, the caller's sign-in, read again).
    """
    what = f"edit article {article.id}"
    authz.require(
        authz.can_edit_article(actor, article),
        hide=not authz.can_read_article(actor, article),
        what=what,
    )
    # Check every field before changing any: a refused edit must leave nothing pending in
    # the session for a later flush (the edit page queries again while re-rendering).
    clean_title = _clean_text(title, "title", TITLE_MAX).strip() if title is not None else None
    clean_body = _clean_text(body, "body", BODY_MAX) if body is not None else None
    # Rendered before the row is locked: a long body takes seconds, and SQLite's write lock
    # would stop every other writer meanwhile.
    body_html = (
        render_markdown(clean_body, sizes_reader(db.session)) if clean_body is not None else None
    )
    _judge_again_locked(actor, lambda: authz.can_edit_article(actor, article),
                        what=what, still_signed_in=still_signed_in)
    _lock_or_not_found(Article, article.id, ARTICLE_GONE)
    # The row as committed now, not as this request loaded it: set to a value it held then,
    # a field another save changed meanwhile would be no change to the ORM (never written,
    # yet answered as saved), and "publish" would be judged on a status no longer true.
    db.session.refresh(article)
    if expected_revision:
        _refuse_a_lost_update(article, expected_revision, clean_title, clean_body, publish)
    if check_locked is not None:
        check_locked(article)
    changed = [
        name
        for name, new, old in (
            ("title", clean_title, article.title),
            ("body", clean_body, article.body_md),
            ("published", publish, article.is_published),
        )
        if new is not None and new != old
    ]
    _audit_for_author(actor, article.author_id, "article.edited_by_admin",
                      {"article_id": article.id, "fields": changed})
    if clean_title is not None:
        article.title = clean_title
        article.slug = slugify(article.title)
    if clean_body is not None and body_html is not None:
        article.body_md = clean_body
        article.body_html = body_html
        article.summary = summarise_html(body_html)
    if publish is not None:
        if publish and article.status != "published":
            article.status, article.published_at = "published", utcnow()
        elif not publish:
            # A draft has no publication date (lists, the API and the page would show the
            # old one); publishing again dates it anew.
            article.status, article.published_at = "draft", None
    db.session.commit()
    if changed:
        # Anonymous readers get pages rendered up to a few seconds ago; an unpublished
        # article must not stay readable from this worker's copy for that long.
        pagecache.clear()
    return article


def _refuse_a_lost_update(
    article: Article, expected: str, title: str | None, body: str | None, publish: bool | None
) -> None:
    """Under the row lock, with the row read again: raise EditConflictError unless the
    saved article is still the ``expected`` version, or already what this edit would make
    it (a double submit)."""
    current = revision(article)
    if current == expected:
        return
    status = article.status if publish is None else ("published" if publish else "draft")
    wanted = _fingerprint(status, article.title if title is None else title,
                          article.body_md if body is None else body)
    if current != wanted:
        db.session.rollback()
        raise EditConflictError(EDIT_CONFLICT)


def _audit_for_author(actor: User, author_id: int, event: str, details: dict[str, Any]) -> None:
    """An admin acting on someone else's content: recorded with the author as the target,
    in the same commit as the change."""
    if author_id != actor.id:
        audit.record(event, actor_id=actor.id, target_user_id=author_id, details=details,
                     commit=False)


def delete_article(
    actor: User,
    article: Article,
    *,
    check_locked: Callable[[Article], None] | None = None,
    still_signed_in: Callable[[], bool] | None = None,
) -> None:
    """Delete the article and its comments. ``check_locked`` and ``still_signed_in`` as for
    ``update_article``: the If-Match check runs on the row as committed, under its lock,
    which is taken after the actor's (never the other way round)."""
    what = f"delete article {article.id}"
    authz.require(
        authz.can_delete_article(actor, article),
        hide=not authz.can_read_article(actor, article),
        what=what,
    )
    _judge_again_locked(actor, lambda: authz.can_delete_article(actor, article),
                        what=what, still_signed_in=still_signed_in)
    _lock_for_deletion(article.id)
    if check_locked is not None:
        db.session.refresh(article)
        check_locked(article)
    _audit_for_author(actor, article.author_id, "article.deleted_by_admin",
                      {"article_id": article.id})
    # The database takes the comments along (ON DELETE CASCADE, SQLite included).
    db.session.delete(article)
    db.session.commit()
    pagecache.clear()


def _lock_for_deletion(article_id: int) -> None:
    """Lock the article as its deletion will (``FOR UPDATE``), or raise
    ContentNotFoundError when it is gone already.

    ``_lock_row``'s lock lets an image being stored into the article go on (it holds the
    article ``FOR KEY SHARE``, ``bastion.uploads.services._article_still_there``): the
    deletion read the article's images before that one committed, and the foreign key's
    cascade then took its row but left its files on disk for good. This one waits for the
    image, which then goes with the article, files included; one stored later finds the
    article gone. The order stays the actor's lock, then the article's, then its images.
    On SQLite, ignored: the actor's lock already holds the database's write lock.
    """
    found = db.session.scalar(
        select(Article.id).where(Article.id == article_id).with_for_update()
    )
    if found is None:
        db.session.rollback()
        raise ContentNotFoundError(ARTICLE_GONE)


def _lock_row(model: type[Article] | type[Comment], pk: int,
              *conditions: ColumnElement[bool]) -> bool:
    """Whether the row still exists (and meets ``conditions``), and stays so until commit.

    The no-op write locks the row on PostgreSQL (waiting for a change in flight, then
    looking at the new row) and takes the write lock on SQLite; both are held until the
    transaction ends. Call it before changing any attribute, or autoflush writes first.
    """
    return affected_rows(db.session.execute(
        update(model)
        .where(model.id == pk, *conditions)
        .values(updated_at=model.updated_at)
        .execution_options(synchronize_session=False)
    )) == 1


def _lock_or_not_found(model: type[Article] | type[Comment], pk: int, message: str) -> None:
    """Raise ContentNotFoundError when the row was deleted since it was loaded: the ORM
    would otherwise find its UPDATE or DELETE matching nothing at commit (a 500, or a
    warning and a false audit record and "deleted" message)."""
    if not _lock_row(model, pk):
        db.session.rollback()
        raise ContentNotFoundError(message)


def _still_published(article_id: int) -> bool:
    """Whether the article is still published, and stays so until commit.

    It may have been unpublished or deleted since the check: a comment would then land on
    a draft, or be refused by the foreign key (a 500 instead of the 404).
    """
    return _lock_row(Article, article_id, Article.status == "published")


def add_comment(actor: User, article: Article, body: str, *,
                still_signed_in: Callable[[], bool] | None = None) -> Comment:
    """Post a comment; judged again under the author's lock, as every change is."""
    what = f"comment on article {article.id}"
    authz.require(
        authz.can_comment(actor, article),
        hide=not authz.can_read_article(actor, article),
        what=what,
    )
    comment = Comment(
        article_id=article.id,
        author_id=actor.id,
        body=_clean_text(body, "body", COMMENT_MAX).strip(),
    )
    article_id = article.id
    # The author's lock before the article's: deleting the account takes the user's lock,
    # then (its cascade) the articles'. Taken the other way round (the comment's foreign
    # key locks the author's row at insert), a comment on one's own article and the
    # account's deletion waited for each other until PostgreSQL aborted one.
    _judge_again_locked(actor, lambda: authz.can_comment(actor, article), what=what,
                        still_signed_in=still_signed_in)
    if not _still_published(article_id):
        db.session.rollback()
        authz.require(False, hide=True, what=f"comment on article {article_id}")
    # Under the article's row lock, so two copies of one submission cannot both pass.
    same = _recent_duplicate(actor.id, article_id, comment.body)
    if same is not None:
        db.session.rollback()  # releases the lock; nothing was written
        return same
    db.session.add(comment)
    db.session.commit()
    return comment


def _recent_duplicate(author_id: int, article_id: int, body: str) -> Comment | None:
    """The author's latest comment on the article when it says the same and is recent.

    A double click, a resent form or a retried API call is one comment, not two: the
    caller gets the first one back, as if this request had made it.
    """
    latest = db.session.scalar(
        select(Comment)
        .where(Comment.article_id == article_id, Comment.author_id == author_id)
        .order_by(Comment.id.desc())
        .limit(1)
    )
    if latest is None or latest.body != body:
        return None
    return latest if _just_saved(latest.created_at) else None


def comment_revision(comment: Comment) -> str:
    """A fingerprint of a comment's text, sent back with its edit form (``revision()``)."""
    return _fingerprint("comment", "", comment.body)


def update_comment(
    actor: User, comment: Comment, body: str, *, expected_revision: str | None = None,
    still_signed_in: Callable[[], bool] | None = None,
) -> Comment:
    """Replace the text; with ``expected_revision``, refuse (EditConflictError) when someone
    else changed it since the editor loaded it, unless it already is this text. Judged
    again under the actor's lock (``_judge_again_locked``), its author's or an admin's."""
    what = f"edit comment {comment.id}"
    authz.require(authz.can_edit_comment(actor, comment), what=what)
    clean_body = _clean_text(body, "body", COMMENT_MAX).strip()
    _judge_again_locked(actor, lambda: authz.can_edit_comment(actor, comment),
                        what=what, still_signed_in=still_signed_in)
    _lock_or_not_found(Comment, comment.id, COMMENT_GONE)
    # As committed now, under the lock: a text another save changed meanwhile, sent back as
    # loaded, would otherwise look unchanged and never be written (see ``update_article``).
    db.session.refresh(comment)
    stale = expected_revision and expected_revision != comment_revision(comment)
    if stale and comment.body != clean_body:
        db.session.rollback()
        raise EditConflictError(COMMENT_EDIT_CONFLICT)
    _audit_for_author(actor, comment.author_id, "comment.edited_by_admin",
                      {"comment_id": comment.id, "article_id": comment.article_id})
    if clean_body != comment.body:  # saving the same text is not an edit
        comment.body = clean_body
        comment.edited_at = utcnow()
    db.session.commit()
    pagecache.clear()  # a moderated comment must not stay in anonymous readers' copies
    return comment


def delete_comment(actor: User, comment: Comment, *,
                   still_signed_in: Callable[[], bool] | None = None) -> None:
    """Delete the comment: its author, or an admin (either judged again under their lock)."""
    what = f"delete comment {comment.id}"
    authz.require(authz.can_delete_comment(actor, comment), what=what)
    _judge_again_locked(actor, lambda: authz.can_delete_comment(actor, comment),
                        what=what, still_signed_in=still_signed_in)
    _lock_or_not_found(Comment, comment.id, COMMENT_GONE)
    _audit_for_author(actor, comment.author_id, "comment.moderated", {"comment_id": comment.id})
    db.session.delete(comment)
    db.session.commit()
    pagecache.clear()


def page_of_comments(article: Article, page: int, per_page: int = COMMENTS_PER_PAGE) -> Page:
    """Comments of an article the caller may read (checked before), oldest first."""
    page = min(max(1, page), PAGE_MAX)
    base = select(Comment).where(Comment.article_id == article.id)
    total = db.session.scalar(base.with_only_columns(func.count(Comment.id))) or 0
    items = db.session.scalars(
        base.options(_COMMENT_BYLINE)
        .order_by(Comment.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Page(items=list(items), page=page, per_page=per_page, total=total)


def comment_page_number(comment: Comment, per_page: int = COMMENTS_PER_PAGE) -> int:
    """The page of its article's comments that shows ``comment`` (oldest first)."""
    before = db.session.scalar(
        select(func.count(Comment.id)).where(
            Comment.article_id == comment.article_id, Comment.id < comment.id
        )
    ) or 0
    return before // per_page + 1


def last_comment_page(article_id: int, per_page: int = COMMENTS_PER_PAGE) -> int:
    """The number of the last page of an article's comments (1 when it has none)."""
    total = db.session.scalar(
        select(func.count(Comment.id)).where(Comment.article_id == article_id)
    ) or 0
    return max(1, -(-total // per_page))


def get_comment(comment_id: int) -> Comment | None:
    """The comment by id (callers check the article is readable); None when out of range."""
    if not 0 < comment_id <= ID_MAX:
        return None
    return db.session.get(Comment, comment_id)
