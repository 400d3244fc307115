"""Search folds case and compatibility forms on both sides: the query and the article."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.content import services as content
from bastion.extensions import db
from bastion.models import Article
from bastion.models.content import SEARCH_WORDS_MAX_BYTES, fold, search_words
from tests.content.test_search_text import full_width
from tests.factories import ArticleFactory, UserFactory
from tests.support.roles import client_for


def _titles(query: str, actor: object = None, *, published_only: bool = True) -> set[str]:
    page = content.list_articles(actor, query=query, published_only=published_only)
    return {a.title for a in page.items}


def _stored_words(article_id: int) -> str:
    return db.session.scalar(select(Article.search_words).where(Article.id == article_id)) or ""


# (title as written, queries that must find it). Each pair failed one way or both: lower()
# keeps "ß" (so "STRASSE" never met "Straße"), and a full-width or ligature title was
# searched only as written.
SPELLINGS = [
    ("Straße", ["STRASSE", "strasse", "Strasse", "straße", "STRAẞE"]),
    ("STRASSE", ["Straße", "straße", "strasse"]),
    (full_width("Bastion"), ["Bastion", "bastion", "BASTION", full_width("bastion")]),
    ("Bastion", [full_width("Bastion"), full_width("BASTION")]),
    ("The \ufb01le system", ["file", "FILE system", "\ufb01le"]),
    ("The file system", ["\ufb01le", "\ufb01LE"]),
    # Capital, final and medial sigma.
    ("\u039f\u0394\u039f\u03a3 map", ["\u03bf\u03b4\u03bf\u03c2", "\u03bf\u03b4\u03bf\u03c3"]),
    ("Latency in \u00b5s", ["\u03bcs", "\u039cS"]),  # the micro sign is the letter mu
]


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize(("title", "queries"), SPELLINGS)
def test_case_width_and_ligatures_are_folded_both_ways(
    app: Flask, title: str, queries: list[str]
) -> None:
    ArticleFactory(title=title, body_md="Body.")
    ArticleFactory(title="Unrelated", body_md="Nothing here.")
    client = client_for(app)
    for query in queries:
        assert _titles(query) == {title}, query
        html = client.get("/articles", query_string={"q": query}).get_data(as_text=True)
        # The page repeats the query as typed and shows the title as written.
        assert f"1 result for “<bdi>{query}</bdi>”." in html, query
        assert title in html


def test_words_in_the_body_are_folded_too(app: Flask) -> None:
    body = f"Walk down the *Hauptstraße*, then {full_width('TURN')} left."
    ArticleFactory(title="Notes", body_md=body)
    ArticleFactory(title="Other", body_md="Nothing here.")
    assert _titles("HAUPTSTRASSE turn") == {"Notes"}
    assert _titles("hauptstr") == {"Notes"}  # still the start of a word


@pytest.mark.parametrize(
    ("title", "query", "found"),
    [
        ("İstanbul guide", "İSTANBUL", True),
        ("İstanbul guide", "i\u0307stanbul", True),  # what "İ" folds to
        ("K\u0131l\u0131ç", "k\u0131l\u0131ç", True),
        # No Turkish rule: "I" folds to "i", never to the dotless i.
        ("K\u0131l\u0131ç", "KILIÇ", False),
        ("Isparta", "\u0131sparta", False),
        ("Isparta", "ISPARTA", True),
    ],
)
def test_turkish_dotted_and_dotless_i_fold_by_the_default_rules(
    app: Flask, title: str, query: str, found: bool
) -> None:
    ArticleFactory(title=title)
    ArticleFactory(title="Unrelated")
    assert _titles(query) == ({title} if found else set())
    for url in ("/articles", "/api/v1/articles"):
        assert client_for(app).get(url, query_string={"q": query}).status_code in (200, 401)


@pytest.mark.asvs("V1.2.4", "V2.2.1")
@pytest.mark.parametrize(
    ("query", "literal"),
    [
        ("%", "100% sure"),
        ("\uff05", "100% sure"),  # full-width "%": "%" once folded
        ("_", "snake_case"),
        ("\uff3f", "snake_case"),  # full-width "_"
        ("snake_case", "snake_case"),
        (full_width("SNAKE_CASE"), "snake_case"),
        ("\\", "back\\slash"),
    ],
)
def test_like_wildcards_in_a_folded_query_stay_literal(
    app: Flask, query: str, literal: str
) -> None:
    """Folding may turn a character into "%" or "_": still a character to find, never a
    wildcard (PostgreSQL reads neither as a word, and finds nothing for it alone)."""
    for title in ("100% sure", "100 sure", "snake_case", "snakeXcase", "back\\slash", "backslash"):
        ArticleFactory(title=title, body_md="Body.")
    found = _titles(query)
    assert found <= {literal}, found
    if db.engine.dialect.name == "sqlite" or any(c.isalpha() for c in query):
        assert found == {literal}


def test_an_edit_folds_the_new_text(app: Flask) -> None:
    editor = UserFactory(role_name="editor")
    body = f"Über {full_width('Bastion')}."
    article = content.create_article(editor, title="Straße", body=body, publish=True)
    assert _stored_words(article.id) == "strasse über bastion."
    assert _titles("STRASSE") == {"Straße"}
    content.update_article(editor, article, title="Gasse")
    assert _stored_words(article.id) == "gasse über bastion."
    assert _titles("STRASSE") == set()
    assert _titles("GASSE ÜBER") == {"Gasse"}
    content.update_article(editor, article, body="Nur " + full_width("TEXT"))
    assert _stored_words(article.id) == "gasse nur text"
    assert _titles("bastion") == set()
    assert _titles("gasse text") == {"Gasse"}


def test_drafts_stay_hidden_from_everyone_but_their_author(app: Flask) -> None:
    author = UserFactory(role_name="editor")
    other = UserFactory(role_name="editor")
    content.create_article(author, title="Straße draft", body="Text.")
    ArticleFactory(title="STRASSE published")
    for actor in (None, other, author):
        assert _titles("strasse", actor) == {"STRASSE published"}
    assert _titles("strasse", other, published_only=False) == {"STRASSE published"}
    assert _titles("strasse", author, published_only=False) == {
        "STRASSE published", "Straße draft"
    }
    html = client_for(app, other).get("/articles", query_string={"q": "STRASSE"}).get_data(
        as_text=True
    )
    assert "Straße draft" not in html and "STRASSE published" in html


def test_results_keep_their_order_and_pages(app: Flask) -> None:
    """Newest first, 20 to a page, whatever spelling each article uses."""
    spellings = ["Straße", "STRASSE", "strasse", full_width("Strasse"), "STRAẞE"] * 5
    for n, title in enumerate(spellings):
        ArticleFactory(title=f"{title} {n}")
    first = content.list_articles(None, query="strasse")
    second = content.list_articles(None, query="STRAẞE", page=2)
    assert first.total == second.total == 25
    titles = [a.title for a in first.items + second.items]
    assert titles == [f"{t} {n}" for n, t in reversed(list(enumerate(spellings)))]


def test_the_stored_words_are_the_folded_distinct_words() -> None:
    """One copy of each word, as search needs it; repeated words are not stored again."""
    assert fold(f"STRAẞE \ufb01le {full_width('Bastion')} İ") == "strasse file bastion i\u0307"
    assert search_words("Straße", "straße STRASSE\n\nstraße  *Über*") == "strasse *über*"
    assert search_words("Title", "") == "title"


def test_the_stored_words_are_bounded_however_much_the_text_expands(app: Flask) -> None:
    """A squared Katakana character is up to five letters in NFKC: a body of them, in
    words all different, would fold to over a megabyte, more than the body itself could
    ever hold (PostgreSQL refuses a tsvector of a megabyte)."""
    squared = [chr(c) for c in range(0x3300, 0x3358)]
    words = [a + b + c for a in squared for b in squared for c in squared]
    body = " ".join(words)[: content.BODY_MAX]
    editor = UserFactory(role_name="editor")
    article = content.create_article(editor, title="Units", body=body, publish=True)
    stored = _stored_words(article.id)
    assert len(stored.encode()) <= SEARCH_WORDS_MAX_BYTES
    assert len(fold(body).encode()) > SEARCH_WORDS_MAX_BYTES  # what it would have been
    assert stored.startswith("units アパート")
    assert _titles("units") == {"Units"}
