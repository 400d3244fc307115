"""Both backends fold alike, and differ only where their matching does: what each finds.

PostgreSQL (production) finds a query word at the start of a word as its full-text parser
reads the article (``bastion.content.search``); SQLite (development and tests) finds it
anywhere inside one white-space word of the article. Folding is the same code on both
sides (``bastion.models.content.fold``), so case, width, ligatures and compatibility forms
never make them differ; the cases in ``DIFFERENT`` are what prefix-of-a-parsed-word and
substring matching make of the same text, listed so that a change to either is seen.
"""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.content import services as content
from tests.factories import ArticleFactory

TITLES = (
    "e-mail address", "e mail", "email", "C++ rocks", "C rocks", "don't stop", "don\u2019t stop",
    "version 3.14 now", "3 14", "日本語のテキスト", "テキスト", "I ❤ emoji", "🎉party time",
    "foo_bar", "foo bar", "x@y.com", "l'été", "naïve café", "Ǆemal", "ﬀ ligature", "x²",
    "№ 5", "über-cool", "50% sale", "if x<y then y>z fails",
)

# (query, what both backends find)
SAME = [
    ("email", {"email"}),
    ("EMAIL", {"email"}),
    ("E-MAIL ADDRESS", {"e-mail address"}),
    ("rocks", {"C++ rocks", "C rocks"}),
    ("3.14", {"version 3.14 now"}),
    ("日本語", {"日本語のテキスト"}),
    ("\uff4c'ÉTÉ", {"l'été"}),
    ("x@y.com", {"x@y.com"}),
    ("naïve", {"naïve café"}),
    ("naive", set()),  # accents are not folded away, on either
    ("ǆemal", {"Ǆemal"}),  # the title-case digraph folds like the capital one
    ("FF", {"ﬀ ligature"}),
    ("x2", {"x²"}),
    ("№", {"№ 5", "version 3.14 now"}),  # "no" once folded, and "now" starts with it
    ("über", {"über-cool"}),
    ("cool", {"über-cool"}),
    ("50%", {"50% sale"}),
    ("party", {"🎉party time"}),
]

# (query, SQLite finds, PostgreSQL finds, why they differ)
DIFFERENT = [
    ("e-mail", {"e-mail address"}, {"e-mail address", "e mail"},
     "PostgreSQL reads a hyphenated word in parts too; SQLite looks for it whole"),
    ("mail", {"e-mail address", "e mail", "email"}, {"e-mail address", "e mail"},
     "SQLite finds a substring, PostgreSQL the start of a word"),
    ("c++", {"C++ rocks"}, {"C++ rocks", "C rocks"},
     "PostgreSQL reads no punctuation: the query is the one-letter word c"),
    ("don\u2019t", {"don\u2019t stop"}, {"don't stop", "don\u2019t stop"},
     "PostgreSQL reads either apostrophe as a break between two words"),
    ("14", {"3 14", "version 3.14 now"}, {"3 14"},
     "PostgreSQL reads 3.14 as one number; SQLite finds 14 inside it"),
    ("テキスト", {"テキスト", "日本語のテキスト"}, {"テキスト"},
     "text written without spaces is one word to PostgreSQL, found only by its start"),
    ("❤", {"I ❤ emoji"}, set(),
     "PostgreSQL reads no word in a symbol: a query of symbols only finds nothing"),
    ("🎉party", {"🎉party time"}, {"🎉party time"}, "the same, for a different reason"),
    ("foo_bar", {"foo_bar"}, {"foo_bar", "foo bar"},
     "PostgreSQL reads the underscore as a break between two words"),
    ("y.com", {"x@y.com"}, set(), "PostgreSQL reads an address whole"),
    ("then", {"if x<y then y>z fails"}, set(),
     "PostgreSQL reads '<y then y>' as an HTML tag and indexes no word inside it"),
]


@pytest.fixture
def titled(app: Flask) -> Flask:
    for title in TITLES:
        ArticleFactory(title=title, body_md="Body.")
    return app


def _found(query: str) -> set[str]:
    return {a.title for a in content.list_articles(None, query=query, per_page=100).items}


@pytest.mark.parametrize(("query", "expected"), SAME, ids=[q for q, _ in SAME])
def test_both_backends_find_the_same(titled: Flask, query: str, expected: set[str]) -> None:
    assert _found(query) == expected


@pytest.mark.parametrize(("query", "on_sqlite", "on_postgresql", "why"), DIFFERENT,
                         ids=[case[0] for case in DIFFERENT])
def test_where_the_backends_differ_and_why(
    titled: Flask, query: str, on_sqlite: set[str], on_postgresql: set[str], why: str
) -> None:
    expected = on_postgresql if titled.config["BACKEND"] == "postgresql" else on_sqlite
    assert _found(query) == expected, why
