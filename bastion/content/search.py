"""Article search: a full-text index on PostgreSQL, substring matching on SQLite.

Why not ``ILIKE '%q%'`` everywhere: it reads every published body (up to 100,000
characters each) on every search, and a pattern's worst case costs the length of the text
times the length of the pattern. With a few hundred long articles one anonymous search
took 16 s of database CPU. On PostgreSQL, which production requires, a search is a lookup
in a GIN index over the title and body (``ix_articles_search``), whatever the text or the
query (``through_index``). Each word of the query must start a word of the article
(``flask`` finds "Flask-Login", ``sec`` finds "security"); a single character is a whole
word. Punctuation separates words and never acts as an operator. SQLite (development and
tests) keeps the substring match, which is fine at its scale and has no such index.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import ColumnElement, Select, func, literal_column, or_, select, text

from bastion.extensions import db
from bastion.models import Article
from bastion.models.content import SEARCH_DOCUMENT_SQL

# ``simple`` (in the indexed expression): no stemming or stop words, so every language is
# searched alike and a query word is never dropped.
# More words narrow a search further; beyond a few they only add index lookups.
MAX_TERMS = 8
MAX_TERM_CHARS = 64
# A one-character prefix stands for a large share of every article's words: the index
# merges the entries of all of them (about ten times the work of a two-character one,
# for each such word of the query), and finds almost every article anyway.
MIN_PREFIX_CHARS = 2
_WORD = re.compile(r"[^\W_]+")


def terms(query: str) -> list[str]:
    """The query's words, lower case, in order, without repeats."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        seen.setdefault(word[:MAX_TERM_CHARS], None)
    return list(seen)[:MAX_TERMS]


def to_tsquery_text(words: list[str]) -> str:
    """Every word quoted, as a prefix from ``MIN_PREFIX_CHARS`` on (``'flask':* & 'c'``).
    Words hold only letters and digits, so nothing in them can be read as tsquery syntax."""
    return " & ".join(
        f"'{word}':*" if len(word) >= MIN_PREFIX_CHARS else f"'{word}'" for word in words
    )


@contextmanager
def through_index() -> Iterator[None]:
    """PostgreSQL: the statements run inside find their matches through the index.

    For a word in most articles ("the", a common prefix) the planner expects the index to
    save little and reads the table instead, working out every article's words again from
    its body (up to 100,000 characters), row by row: it prices that as one cheap function
    call. One search for "a" over 3,000 long articles took 13 s that way, 30 ms through the
    index. Sequential scans are off for this transaction until the block ends (after an
    error, until the rollback that follows it).
    """
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    yield
    db.session.execute(text("SET LOCAL enable_seqscan = DEFAULT"))


def matching_ids(query: str) -> Select[tuple[int]] | None:
    """PostgreSQL: the ids of articles matching every word, found through the index; None
    when the query has no words (it then matches nothing).

    A materialised CTE, so the planner cannot turn the search into a walk down the
    newest-first index that recomputes each body's words on the way.
    """
    words = terms(query)
    if not words:
        return None
    document: ColumnElement[object] = literal_column(SEARCH_DOCUMENT_SQL)
    tsquery = func.to_tsquery(literal_column("'simple'::regconfig"), to_tsquery_text(words))
    found = (
        select(Article.id)
        .where(document.op("@@")(tsquery))
        .cte("search_hits")
        .prefix_with("MATERIALIZED")
    )
    return select(found.c.id)


def substring_condition(escaped: str) -> ColumnElement[bool]:
    """SQLite: title or body contains the query (its wildcards already escaped)."""
    pattern = f"%{escaped}%"
    return or_(
        Article.title.ilike(pattern, escape="\\"),
        Article.body_md.ilike(pattern, escape="\\"),
    )
