"""Article search: a full-text index on PostgreSQL, substring matching on SQLite.

Why not ``ILIKE '%q%'`` everywhere: it reads every published body (up to 100,000
characters each) on every search, and a pattern's worst case costs the length of the text
times the length of the pattern. With a few hundred long articles one anonymous search
took 16 s of database CPU. On PostgreSQL, which production requires, a search is a lookup
in a GIN index over the title and body (``ix_articles_search``), whatever the text or the
query (``through_index``). Each word of the query must start a word of the article
(``flask`` finds "Flask-Login", ``sec`` finds "security"); a single character is a whole
word. The query is split into words by the parser and dictionary that index the article
(``query_words``), so both sides agree on what a word is and on its lower case; the words
reach the query as quoted lexemes, and nothing the visitor types acts as an operator.
SQLite (development and tests) keeps the substring match, which is fine at its scale and
has no such index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import ColumnElement, Select, cast, literal, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import TSQUERY

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
# The kinds of token the ``simple`` configuration indexes, less those read both whole and
# in parts ("server-side", a URL): their parts are indexed too, and alone they also find
# the article that writes "server side". Tags and entities are not indexed at all.
INDEXED_PARTS = (
    "asciiword", "word", "numword", "hword_asciipart", "hword_part", "hword_numpart",
    "email", "host", "url_path", "file", "version", "int", "uint", "float", "sfloat",
)
# The query's tokens in order, each as the index's dictionary stores it. Splitting in
# Python disagreed with the index: it cut "हिन्दी", "שָׁלוֹם" or "مَرْحَبًا" at every vowel sign,
# lowered "İstanbul" to "i" and "stanbul", and made two words of "example.com" or "3.14",
# so none of them ever found the article that contains them.
_QUERY_WORDS = text(
    "SELECT (ts_lexize('simple'::regdictionary, p.token))[1]"
    " FROM ts_parse('default', :q) WITH ORDINALITY AS p(tokid, token, n)"
    " JOIN ts_token_type('default') AS t ON t.tokid = p.tokid"
    " WHERE t.alias = ANY(:kinds) ORDER BY p.n"
)


def query_words(query: str) -> list[str]:
    """PostgreSQL: the query's words as the index reads the article (``terms``)."""
    rows = db.session.scalars(_QUERY_WORDS, {"q": query, "kinds": list(INDEXED_PARTS)})
    return terms(word for word in rows if word)


def terms(words: Iterable[str]) -> list[str]:
    """The first ``MAX_TERMS`` different words, each cut to ``MAX_TERM_CHARS``."""
    seen: dict[str, None] = {}
    for word in words:
        seen.setdefault(word[:MAX_TERM_CHARS], None)
    return list(seen)[:MAX_TERMS]


def _quoted(word: str) -> str:
    """A lexeme as ``tsquery`` input reads it whole: a quote or backslash in it (a URL's
    path may hold either) is doubled."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def to_tsquery_text(words: list[str]) -> str:
    """Every word quoted, as a prefix from ``MIN_PREFIX_CHARS`` on (``'flask':* & 'c'``).
    Read by the ``tsquery`` type itself, not ``to_tsquery``: the words are lexemes already,
    and parsed again one holding punctuation (a URL, "it's") would become a phrase, which
    the index cannot answer without reading every candidate's body."""
    return " & ".join(
        f"{_quoted(word)}:*" if len(word) >= MIN_PREFIX_CHARS else _quoted(word)
        for word in words
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
    words = query_words(query)
    if not words:
        return None
    document: ColumnElement[object] = literal_column(SEARCH_DOCUMENT_SQL)
    tsquery = cast(literal(to_tsquery_text(words)), TSQUERY)
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
