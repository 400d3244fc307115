"""``flask --app bastion content refresh-search``: store every article's search words again.

Why: each save stores the article's words for search (``Article.search_words``), through
an ORM listener. A row written without it has words search cannot find: the previous
release, still running during a rolling deploy past migration 0017, inserts articles with
the column's default '' and edits others without touching their old words; so do raw SQL
and bulk UPDATEs. The only honest test of out-of-date words is to work them out again, so
every article is read (in batches, one short transaction each) and only those that differ
are written.
"""

from __future__ import annotations

import click

from bastion.cli import DatabaseGroup
from bastion.content.stored_html import SEARCH_BATCH, refresh_search_words_after
from bastion.extensions import db

content = DatabaseGroup("content", help="Maintain what is stored with each article.")

REFRESH_UNSETTLED = 1  # an article was saved again at every try: not all done


@content.command("refresh-search")
@click.option("--batch-size", type=click.IntRange(min=1, max=10_000), default=SEARCH_BATCH,
              show_default=True, help="Articles read and written per transaction.")
def refresh_search(batch_size: int) -> None:
    """Store each article's search words as a save would now; safe to run again.

    Run it once the previous release has stopped after a deploy past migration 0017, and
    after writing articles with SQL. Only search words are written: not updated_at, not
    the rendered HTML, and no audit event.
    """
    after, checked, changed = 0, 0, 0
    unsettled: list[int] = []
    while True:
        done = refresh_search_words_after(
            db.session.connection(), after, batch_size)
        db.session.commit()  # each batch stays done if a later one fails
        if done.last_id is None:
            break
        after = done.last_id
        checked += done.checked
        changed += done.changed
        unsettled += done.unsettled
    current = checked - changed - len(unsettled)
    click.echo(f"{changed} article(s) changed, {current} already up to date.")
    if unsettled:
        ids = ", ".join(str(article_id) for article_id in unsettled)
        click.echo(f"{len(unsettled)} article(s) were saved again each time before their "
                   f"words could be written, and were left alone (ids: {ids}): run this "
                   "again.", err=True)
        raise SystemExit(REFRESH_UNSETTLED)
