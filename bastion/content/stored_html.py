"""Stored article HTML, summaries and search words computed again with today's code.

Why: they are worked out once, when an article is saved, so a change to the renderer, the
sanitiser or search's folding reaches older articles only through a data migration. Each
such migration calls one of these functions, which make the stored columns what a save
would produce now.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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


def refresh_search_words(bind: Connection, batch: int = 200) -> int:
    """Work out every article's search words again, in id order and in batches (bounded
    memory: a batch reads up to 200 bodies); only rows whose words differ are written.
    Returns how many were."""
    changed, last = 0, 0
    table = _SEARCHED
    while True:
        rows = bind.execute(
            sa.select(table.c.id, table.c.title, table.c.body_md, table.c.search_words)
            .where(table.c.id > last).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            return changed
        for article_id, title, body_md, stored in rows:
            fresh = search_words(title or "", body_md or "")
            if fresh != stored:
                bind.execute(
                    table.update().where(table.c.id == article_id).values(search_words=fresh)
                )
                changed += 1
        last = rows[-1][0]
