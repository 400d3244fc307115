"""Search text as people type it: decomposed accents, and characters no search can hold."""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.content import services as content
from tests.factories import ArticleFactory
from tests.support.roles import client_for

# "café" as macOS input methods and many pasted texts spell it: "e" then U+0301.
DECOMPOSED = "cafe\u0301"


@pytest.mark.asvs("V1.1.1")
def test_a_decomposed_accent_finds_the_article(app: Flask) -> None:
    """Titles and bodies are stored composed (NFC); the query was not, so "café" typed
    with a combining accent found nothing on either database."""
    ArticleFactory(title="Café culture", body_md="About the café.")
    assert content.list_articles(None, query=DECOMPOSED).total == 1  # the API's path too
    html = client_for(app).get("/articles", query_string={"q": DECOMPOSED}).get_data(
        as_text=True
    )
    assert "1 result for “<bdi>café</bdi>”" in html
    assert "Café culture" in html


@pytest.mark.asvs("V1.1.1", "V2.2.1")
@pytest.mark.parametrize("query", ["\x00", " \x00 ", "\x00Café"])
def test_the_page_repeats_what_was_searched_without_a_nul(app: Flask, query: str) -> None:
    """A NUL was dropped from the search but echoed raw into the title, the count line and
    the search box: "1 result for “\\x00”" over a list of every article."""
    ArticleFactory(title="Café culture")
    resp = client_for(app).get("/articles", query_string={"q": query})
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "\x00" not in html
    searched = query.replace("\x00", "").strip()
    if searched:
        assert f"<title>Search: {searched} · Bastion</title>" in html
        assert f'value="{searched}"' in html
    else:  # nothing left to search for: the plain list, as for an empty box
        assert "<title>Articles · Bastion</title>" in html
        assert " result" not in html


@pytest.mark.asvs("V2.2.1")
def test_page_links_carry_the_query_as_searched(app: Flask) -> None:
    """The Older/Newer links copied the address's ``q`` as typed: padding, a NUL, or
    thousands of characters past the 200 searched, twice per page and into every page
    after it, for the same results. Cut to its limit, the query loses the padding the cut
    leaves at its end too."""
    ArticleFactory.create_batch(21, title="needle")  # 20 a page
    client = client_for(app)
    for raw in (" needle\x00 ", "needle" + " " * 3000 + "x" * 3000):
        html = client.get("/articles", query_string={"q": raw}).get_data(as_text=True)
        assert "21 results for “<bdi>needle</bdi>”." in html, raw[:20]
        assert '<a href="/articles?q=needle&amp;page=2" rel="next">' in html, raw[:20]


@pytest.mark.asvs("V1.1.1")
def test_the_echoed_query_cannot_reorder_the_sentence_around_it(app: Flask) -> None:
    """A query is shown inside a sentence: right-to-left words or a bidi override in it
    (a crafted link) reordered the count and quotes around it, as in a byline."""
    ArticleFactory(title="שלום עולם")
    client = client_for(app)
    html = client.get("/articles", query_string={"q": "שלום"}).get_data(as_text=True)
    assert "1 result for “<bdi>שלום</bdi>”." in html
    html = client.get("/articles", query_string={"q": "\u202eexe.txt"}).get_data(as_text=True)
    assert "No published article matches “<bdi>exe.txt</bdi>”." in html  # the override dropped
    html = client.get("/articles", query_string={"q": "שלום", "page": "9"}).get_data(as_text=True)
    assert "There is no page 9 for “<bdi>שלום</bdi>”." in html


def full_width(ascii_text: str) -> str:
    """The text as a full-width input method types it (spaces become U+3000)."""
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c
        for c in ascii_text
    )


@pytest.mark.parametrize(
    "query", [full_width("flask"), full_width("FLASK SEC"), full_width("Flask") + " security"]
)
def test_full_width_letters_find_the_article(app: Flask, query: str) -> None:
    """Typed in full-width mode (Japanese, Chinese and Korean input methods), "flask"
    found nothing: the query is also searched in its compatibility (NFKC) form."""
    ArticleFactory(title="Flask security")
    ArticleFactory(title="Unrelated")
    assert content.list_articles(None, query=query).total == 1
    html = client_for(app).get("/articles", query_string={"q": query}).get_data(as_text=True)
    assert f"1 result for “<bdi>{query}</bdi>”." in html  # repeated as typed


def test_the_compatibility_form_adds_to_what_is_found(app: Flask) -> None:
    """The micro sign (typed on German and Mac keyboards) is the Greek mu to a reader: each
    finds both spellings (its NFKC form is the letter), the letter too, as articles are
    searched in that form as well."""
    ArticleFactory(title="Latency in \u00b5s")
    ArticleFactory(title="Latency in \u03bcs")
    assert content.list_articles(None, query="\u00b5s").total == 2
    assert content.list_articles(None, query="\u03bcs").total == 2


# Articles that spell a word in a compatibility character, and the query people type for
# it. Were only the query searched in its NFKC form, each would no longer find its article:
# "№" would become a word "No" (on every Russian keyboard), "²" a digit of the word before,
# "ㅋ" a conjoining jamo the Korean input method never types. The article is folded too.
OWN_COMPATIBILITY_FORMS = [
    ("Приказ № 5", "№ 5"),
    ("Area in m²", "m²"),
    ("ㅋㅋㅋ 모음", "ㅋㅋㅋ"),
    ("The \ufb01le system", "\ufb01le"),  # a ligature, as copied from a PDF
    ("Chapter Ⅻ", "Ⅻ"),
    ("ｶﾀｶﾅ", "ｶﾀｶﾅ"),
    ("ＰＣ入門", "ＰＣ入門"),
]


@pytest.mark.parametrize(("title", "query"), OWN_COMPATIBILITY_FORMS)
def test_text_in_compatibility_forms_is_still_found_as_typed(
    app: Flask, title: str, query: str
) -> None:
    ArticleFactory(title=title)
    ArticleFactory(title="Unrelated")
    assert {a.title for a in content.list_articles(None, query=query).items} == {title}


@pytest.mark.asvs("V1.1.1", "V2.2.1")
@pytest.mark.parametrize("control", ["\u202e", "\u2067", "\u200f", "\u061c"], ids=repr)
def test_bidi_controls_are_not_searched_or_echoed(app: Flask, control: str) -> None:
    """An override in ``?q=`` reached the page's title, where no ``<bdi>`` isolates it, and
    reversed "Search:" and the tab text after it; no word holds one, so the search drops it."""
    ArticleFactory(title="Café culture")
    html = client_for(app).get("/articles", query_string={"q": control + "café"}).get_data(
        as_text=True
    )
    assert control not in html
    assert "<title>Search: café · Bastion</title>" in html
    assert "1 result for “<bdi>café</bdi>”" in html
