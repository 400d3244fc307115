"""Search: an index lookup on PostgreSQL whatever the query, and never a 500."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy import text

from bastion.content import search
from bastion.content.services import QUERY_MAX, list_articles
from bastion.extensions import db
from bastion.models.content import fold
from tests.factories import ArticleFactory
from tests.support.roles import client_for


def _titles(query: str) -> set[str]:
    return {a.title for a in list_articles(None, query=query).items}


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_search_on_postgresql_is_served_by_the_full_text_index(make_app: Any) -> None:
    # ILIKE '%q%' read every body in full on every search: 16 s of database CPU for one
    # anonymous request with a few hundred long articles and a hostile pattern.
    app = make_app(backend="postgresql", migrate=True)
    with app.app_context():
        ArticleFactory(title="Flask security", body_md="argon2 " + "a" * 99_000)
        statements: list[str] = []

        def capture(_conn: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
            if "search_hits" in statement:
                statements.append(statement % params if isinstance(params, tuple) else statement)

        from sqlalchemy import event

        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            assert _titles("flask SEC") == {"Flask security"}
            assert _titles("\uff26\uff4c\uff41\uff53\uff4b SEC") == {"Flask security"}
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)
        assert statements and all("AS MATERIALIZED" in s for s in statements)
        # The planner prefers a scan for a table this small; with it off, the plan shows
        # that the query repeats the indexed expression, which is what the index needs.
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        # A query in full-width capitals: searched folded ("flask sec").
        typed = "\uff26\uff2c\uff21\uff33\uff2b sec"
        words = search.to_tsquery_text(search.query_words(fold(typed)).searched)
        assert words == "'flask':* & 'sec':*"
        plan = "\n".join(
            db.session.scalars(
                text(  # the constant expression of the index; the words are a parameter
                    f"EXPLAIN SELECT id FROM articles WHERE {search.SEARCH_DOCUMENT_SQL} "  # noqa: S608
                    "@@ CAST(:q AS tsquery)"
                ),
                {"q": words},
            )
        )
        db.session.rollback()
        assert "ix_articles_search_words" in plan, plan


@pytest.mark.asvs("V1.2.4", "V2.2.1")
@pytest.mark.parametrize(
    "query",
    [
        "a & b | !c <-> d",  # tsquery operators are punctuation here
        "'quoted' \\'escaped\\' :* :A",
        "flask:*",
        "()[]{}<>!&|*:'\"\\",
        "\u0645\u0631\u062d\u0628\u0627 \u4f60\u597d \u00fcber",  # words of other scripts
        "x" * 5000,  # longer than any limit
        " ".join(f"w{n}" for n in range(100)),  # more words than are searched
        "\ud800 lone surrogate",
        "a\x00b",
        "\uff07\uff06\uff5c\uff01\uff1a\uff0a x\uff07",  # full width: NFKC makes "'&|!:*"
        "\ufdfa" * QUERY_MAX,  # each 18 characters in NFKC
    ],
)
def test_odd_search_text_answers_normally(app: Flask, query: str) -> None:
    ArticleFactory(title="Flask security", body_md="argon2 and sessions")
    client = client_for(app)
    for url in ("/articles", "/api/v1/articles"):
        # Percent-encoded by hand: a lone surrogate arrives as the bytes ED A0 80.
        encoded = quote(query, safe="", errors="surrogatepass")
        resp = client.get(url, query_string=f"q={encoded}")
        assert resp.status_code in (200, 401), (url, resp.status_code)


def test_every_word_must_start_a_word_of_the_article(app: Flask) -> None:
    ArticleFactory(title="Flask security", body_md="Argon2id and server-side sessions")
    ArticleFactory(title="Redis notes", body_md="Nothing about the other one")
    assert _titles("flask") == {"Flask security"}
    assert _titles("ARGON") == {"Flask security"}
    assert _titles("flask redis") == set()
    # Words, in any order (SQLite read the query as one phrase, and found neither).
    assert _titles("sessions ARGON") == {"Flask security"}
    assert _titles("server side") == {"Flask security"}
    if db.engine.dialect.name == "postgresql":  # the start of a word, not a substring
        assert _titles("ecurity") == set()


NINE_WORDS = "alpha beta gamma delta epsilon zeta eta theta iota"
LIMIT_HINT = f'<p class="hint">Only the first {search.MAX_TERMS} words were searched.</p>'


def test_the_results_page_says_when_words_were_left_out(app: Flask) -> None:
    """Words past the eighth were ignored without a word on the page, and SQLite, reading
    the query as one phrase, had no such limit at all."""
    ArticleFactory(title=" ".join(NINE_WORDS.split()[:8]))  # not "iota"
    client = client_for(app)
    page = list_articles(None, query=NINE_WORDS)
    assert page.total == 1 and page.words_left_out and page.words_searched == 8
    html = client.get("/articles", query_string={"q": NINE_WORDS}).get_data(as_text=True)
    assert f"1 result for “<bdi>{NINE_WORDS}</bdi>”.</p>\n  {LIMIT_HINT}" in html
    # Eight different words, however often repeated, are all searched: no hint.
    for query in (" ".join(NINE_WORDS.split()[:8]), "alpha " * 9):
        assert not list_articles(None, query=query).words_left_out
        html = client.get("/articles", query_string={"q": query}).get_data(as_text=True)
        assert "1 result for" in html and LIMIT_HINT not in html


def test_query_words_are_bounded() -> None:
    words = search.terms([*(f"word{n}" for n in range(50)), "word0", "y" * 500])
    assert len(words.searched) == search.MAX_TERMS and words.searched[0] == "word0"
    assert words.left_out
    assert search.terms(["a", "b", "a"]) == search.Words(("a", "b"), left_out=False)
    long_word = search.terms(["z" * QUERY_MAX]).searched
    assert long_word == ("z" * search.MAX_TERM_CHARS,)
    assert search.to_tsquery_text(["ab", "b"]) == "'ab':* & 'b'"
    # Lexemes are quoted for the tsquery type: a URL path's quote or backslash stays text.
    assert search.to_tsquery_text(["/a'b", "x\\"]) == "'/a''b':* & 'x\\\\':*"


# Titles as people write them, each holding words the index keeps whole: vowel signs and
# points (Devanagari, Hebrew, Arabic), a capital that lowers to two characters in Python
# ("İ"), final sigma, host names, numbers and paths.
OWN_WORDS = [
    "हिन्दी भाषा",
    "שָׁלוֹם עולם",
    "مَرْحَبًا بالعالم",
    "İSTANBUL guide",
    "ΟΔΟΣ map",
    "Deploying on example.com",
    "Pi is 3.14",
    "Version 1.2.3 notes",
    "Mail ops@example.org",
    "Edit /etc/hosts safely",
    "See https://example.net/a'b?c=1",
    "Server-side sessions",
    "C++ and a_b",
]


@pytest.mark.parametrize("title", OWN_WORDS)
def test_an_article_is_found_by_its_own_title(app: Flask, title: str) -> None:
    """Query words were split in Python, not by the parser that indexes the article: on
    PostgreSQL a search for a title in Hindi, Hebrew or Arabic with vowel marks, for
    "İstanbul", "example.com" or "3.14" found nothing, not even that article."""
    ArticleFactory(title=title, body_md="Body.")
    ArticleFactory(title="Unrelated", body_md="Nothing here.")
    assert _titles(title) == {title}
    html = client_for(app).get("/articles", query_string={"q": title}).get_data(as_text=True)
    assert "1 result for" in html
