"""Stored article HTML, summaries and search words computed again with today's code.

Why: they are worked out once, when an article is saved, so a change to the renderer, the
sanitiser or search's folding reaches older articles only through a data migration. Each
such migration calls one of these functions, which make the stored columns what a save
would produce now.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from bastion.content.image_sizes import sizes_reader
from bastion.content.rendering import render_markdown, summarise_html
from bastion.models.content import search_words

_ARTICLES = sa.table(
    "articles",
    sa.column("id", sa.Integer),
    sa.column("body_md", sa.Text),
    sa.column("body_html", sa.Text),
    sa.column("summary", sa.Text),
)
_SEARCHED = sa.table(
    "articles",
    sa.column("id", sa.Integer),
    sa.column("title", sa.Text),
    sa.column("body_md", sa.Text),
    sa.column("search_words", sa.Text),
)


def refresh_rendered(bind: Connection, batch: int = 500) -> int:
    """Render every article again, in id order and in batches (bounded memory on a large
    table); only rows whose HTML or summary differ are written. Returns how many were."""
    changed, last = 0, 0
    while True:
        rows = bind.execute(
            sa.select(_ARTICLES.c.id, _ARTICLES.c.body_md, _ARTICLES.c.body_html,
                      _ARTICLES.c.summary)
            .where(_ARTICLES.c.id > last).order_by(_ARTICLES.c.id).limit(batch)
        ).all()
        if not rows:
            return changed
        for article_id, body_md, body_html, summary in rows:
            html = render_markdown(body_md or "", sizes_reader(bind))
            fresh = {"body_html": html, "summary": summarise_html(html)}
            if fresh != {"body_html": body_html, "summary": summary}:
                bind.execute(
                    _ARTICLES.update().where(_ARTICLES.c.id == article_id).values(**fresh)
                )
                changed += 1
        last = rows[-1][0]


SEARCH_BATCH = 200
"""Articles read per batch of search words: up to 200 bodies in memory at a time."""
SEARCH_TRIES = 3
"""How often an article saved again between its read and its write is read once more."""


def refresh_search_words(bind: Connection, batch: int = SEARCH_BATCH) -> int:
    """Work out every article's search words again, in id order and in batches (bounded
    memory); only rows whose words differ are written. Returns how many were."""
    changed, last = 0, 0
    while (done := refresh_search_words_after(bind, last, batch)).last_id is not None:
        changed += done.changed
        last = done.last_id
    return changed


@dataclass(frozen=True)
class SearchWordsBatch:
    """What ``refresh_search_words_after`` did with one batch of articles."""

    last_id: int | None  # where the next batch starts; None: no article after the given id
    checked: int = 0
    changed: int = 0  # written, with words other than those stored
    unsettled: tuple[int, ...] = ()  # saved again at each of SEARCH_TRIES tries: not written


def refresh_search_words_after(
    bind: Connection, after: int, batch: int = SEARCH_BATCH
) -> SearchWordsBatch:
    """The search words of the first ``batch`` articles with an id above ``after``, worked
    out again and written where they differ.

    Only ``search_words`` is written, through a bare table: no ``updated_at``, no ORM
    listener, no audit event. The rows are not locked while the words are worked out:
    each is written only if its title and body are still those read, so a save meanwhile
    (whose words are its own) is never overwritten with words of the text it replaced;
    such an article is read again, up to ``SEARCH_TRIES`` times in all.
    """
    rows = _searched(bind, _SEARCHED.c.id > after, batch)
    if not rows:
        return SearchWordsBatch(last_id=None)
    last, checked, changed = rows[-1].id, len(rows), 0
    for _ in range(SEARCH_TRIES):
        moved = []
        for row in rows:
            fresh = _words(row)
            if fresh == row.search_words:
                continue
            if not write_search_words(bind, row, fresh):
                moved.append(row.id)
            else:
                changed += 1
        rows = _searched(bind, _SEARCHED.c.id.in_(moved), len(moved)) if moved else []
        if not rows:  # none moved, or those that did are gone
            break
    # Saved again at every try: settled still if that last save stored its own words.
    unsettled = tuple(row.id for row in rows if _words(row) != row.search_words)
    return SearchWordsBatch(last_id=last, checked=checked, changed=changed,
                            unsettled=unsettled)


def write_search_words(bind: Connection, row: Row[int, str, str, str], fresh: str) -> bool:
    """Store ``fresh`` as the words of the article ``row`` was read from, unless its title
    or body changed since. Whether it was written."""
    table = _SEARCHED
    written = bind.execute(
        table.update()
        .where(table.c.id == row.id, table.c.title == row.title, table.c.body_md == row.body_md)
        .values(search_words=fresh)
    )
    return bool(written.rowcount)


def _searched(
    bind: Connection, which: sa.ColumnElement[bool], limit: int
) -> list[Row[int, str, str, str]]:
    table = _SEARCHED
    return list(bind.execute(
        sa.select(table.c.id, table.c.title, table.c.body_md, table.c.search_words)
        .where(which).order_by(table.c.id).limit(limit)
    ).all())


def _words(row: Row[int, str, str, str]) -> str:
    return search_words(row.title or "", row.body_md or "")
