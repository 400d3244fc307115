"""Article search: a full-text index on PostgreSQL, substring matching on SQLite.

Why not ``ILIKE '%q%'`` everywhere: it reads every published body (up to 100,000
characters each) on every search, and a pattern's worst case costs the length of the text
times the length of the pattern. With a few hundred long articles one anonymous search
took 16 s of database CPU. On PostgreSQL, which production requires, a search is a lookup
in a GIN index over each article's search words (``ix_articles_search_words``), whatever
the text or the query (``through_index``). Each word of the query must start a word of the
article (``flask`` finds "Flask-Login", ``sec`` finds "security"); a single character is a
whole word. The query is split into words by the parser and dictionary that index the
article (``query_words``), so both sides agree on what a word is; the words reach the query
as quoted lexemes, and nothing the visitor types acts as an operator. SQLite (development
and tests) splits the query at white space and matches each word as a substring, which is
fine at its scale and has no such index. The two differ where the matching does, never in
folding: SQLite finds "14" inside "3.14", "テキスト" inside "日本語のテキスト" and "❤" at all;
PostgreSQL reads "e-mail", "foo_bar" and "don't" in parts too, "c++" as "c", and no word
inside a "<...>" span it takes for an HTML tag (tests/content/test_search_backends.py lists
them). On both, the first ``MAX_TERMS`` different words are searched, and the results page
says when there were more.

The query and the article are compared folded (``bastion.models.content.fold``: NFKC, then
full case folding), the article through its stored ``search_words``: "STRASSE" finds
"Straße" and the other way round, "flask" typed in full-width letters (U+FF46..., as East
Asian input methods type it) finds "Flask" and "flask" finds an article written in them,
"ﬁle" copied from a PDF finds "file", "µs" (the micro sign) finds "μs" (the Greek letter).
A compatibility character the article writes itself is folded alike, so "№ 5" (a key on
Russian keyboards) still finds "Приказ № 5", both read as "no 5". The rules are Unicode's
default ones for every language: "I" folds to "i", never to the Turkish dotless i.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    cast,
    false,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import TSQUERY

from bastion.extensions import db
from bastion.models import Article
from bastion.models.content import SEARCH_DOCUMENT_SQL, fold

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


@dataclass(frozen=True)
class Words:
    """The words of a query that are searched, and whether it had more (``left_out``)."""

    searched: tuple[str, ...]
    left_out: bool = False


@dataclass(frozen=True)
class Search:
    """Which articles match a query, and what the results page says about it."""

    condition: ColumnElement[bool]
    words_searched: int  # different words of the folded query
    words_left_out: bool  # it had more than MAX_TERMS: the rest were not searched
    indexed: bool  # PostgreSQL: run it inside ``through_index``


def query_words(query: str) -> Words:
    """PostgreSQL: the query's words as the index reads the article (``terms``)."""
    rows = db.session.scalars(_QUERY_WORDS, {"q": query, "kinds": list(INDEXED_PARTS)})
    return terms(word for word in rows if word)


def typed_words(query: str) -> Words:
    """SQLite: the query's words, as separated by white space (``terms``)."""
    return terms(query.split())


def terms(words: Iterable[str]) -> Words:
    """The first ``MAX_TERMS`` different words, each cut to ``MAX_TERM_CHARS``."""
    seen: dict[str, None] = {}
    for word in words:
        seen.setdefault(word[:MAX_TERM_CHARS], None)
    found = tuple(seen)
    return Words(found[:MAX_TERMS], left_out=len(found) > MAX_TERMS)


def articles_matching(query: str, dialect: str) -> Search:
    """Articles with every word of the folded query (up to ``MAX_TERMS`` words); none
    when it has no word."""
    split = query_words if dialect == "postgresql" else typed_words
    words = split(fold(query))
    if not words.searched:
        return Search(false(), words_searched=0, words_left_out=False, indexed=False)
    condition: ColumnElement[bool]
    if dialect == "postgresql":
        condition = Article.id.in_(matching_ids(words))
    else:
        condition = substring_condition(words.searched)
    return Search(
        condition,
        words_searched=len(words.searched),
        words_left_out=words.left_out,
        indexed=dialect == "postgresql",
    )


def _quoted(word: str) -> str:
    """A lexeme as ``tsquery`` input reads it whole: a quote or backslash in it (a URL's
    path may hold either) is doubled."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def to_tsquery_text(words: Iterable[str]) -> str:
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
    its text (then its body, up to 100,000 characters), row by row: it prices that as one
    cheap function call. One search for "a" over 3,000 long articles took 13 s that way,
    30 ms through the index. Sequential scans are off for this transaction until the block ends (after an
    error, until the rollback that follows it).
    """
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    yield
    db.session.execute(text("SET LOCAL enable_seqscan = DEFAULT"))


def matching_ids(words: Words) -> Select[tuple[int]]:
    """PostgreSQL: the ids of articles with every word, found through the index.

    A materialised CTE, so the planner cannot turn the search into a walk down the
    newest-first index that recomputes each article's words on the way.
    """
    document: ColumnElement[object] = literal_column(SEARCH_DOCUMENT_SQL)
    tsquery = cast(literal(to_tsquery_text(words.searched)), TSQUERY)
    found = (
        select(Article.id)
        .where(document.op("@@")(tsquery))
        .cte("search_hits")
        .prefix_with("MATERIALIZED")
    )
    return select(found.c.id)


def substring_condition(words: Iterable[str]) -> ColumnElement[bool]:
    """SQLite: the article's search words contain each (folded) word; ``%``, ``_`` and
    the escape character in it are literal. The sides are folded already, and ``LIKE``
    ignores only ASCII case anyway."""
    return and_(*(Article.search_words.contains(word, autoescape=True) for word in words))
