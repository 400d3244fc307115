"""An editor's drafts on the article list: every one reachable through its own pager
(``drafts_page``), beside the published list's (``page``), and nobody else's ever shown."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.content.services import DRAFTS_PER_PAGE
from bastion.models import User
from tests.factories import ArticleFactory, UserFactory
from tests.support.roles import client_for

NAV = re.compile(r'<nav class="pagination" aria-label="(?P<label>[^"]+)">(?P<body>.*?)</nav>', re.S)
LINK = re.compile(r'<a href="(?P<href>[^"]*)" rel="(?P<rel>prev|next)"')
CARD_TITLE = re.compile(r'<li class="card">\s*<h3><a href="/articles/\d+">(?P<title>[^<]*)</a>')
DRAFTS = re.compile(r'<h2 id="drafts-heading">.*?</ul>', re.S)


def _drafts(author: User, n: int, prefix: str) -> list[str]:
    return [
        ArticleFactory(author=author, status="draft", published_at=None,
                       title=f"{prefix} {i}").title
        for i in range(n)
    ]


def _link(html: str, label: str, rel: str) -> str | None:
    """The ``rel`` link of the pager labelled ``label``, as the browser would follow it."""
    for nav in NAV.finditer(html):
        if nav["label"] == label:
            for link in LINK.finditer(nav["body"]):
                if link["rel"] == rel:
                    return unescape(link["href"])
    return None


def _draft_titles(html: str) -> list[str]:
    section = DRAFTS.search(html)
    return [unescape(t) for t in CARD_TITLE.findall(section.group(0))] if section else []


def _published_titles(html: str) -> list[str]:
    section = html.split('<ol class="article-list">', 1)
    return [unescape(t) for t in CARD_TITLE.findall(section[1])] if len(section) == 2 else []


def _args(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _follow(client: FlaskClient, url: str, label: str) -> list[str]:
    """Every page of one pager, followed by its "next" links: the pages' html."""
    pages = []
    next_url: str | None = url
    while next_url is not None:
        assert len(pages) < 50, "the pager never ends"
        resp = client.get(next_url)
        assert resp.status_code == 200
        pages.append(resp.get_data(as_text=True))
        next_url = _link(pages[-1], label, "next")
    return pages


@pytest.mark.asvs("V8.2.2")
def test_an_editor_reaches_every_one_of_130_drafts_and_no_one_else_s(app: Flask) -> None:
    """The list stopped at 100 drafts without a word, and no page led to the others. Each
    page shows only the reader's own: not another editor's, not even to an admin, and not
    when asking for pages past the end."""
    editor, other = UserFactory(role_name="editor"), UserFactory(role_name="editor")
    mine = _drafts(editor, 130, "Mine")
    theirs = _drafts(other, 45, "Theirs")
    client = client_for(app, editor)
    pages = _follow(client, "/articles", "Draft pages")
    seen = [title for html in pages for title in _draft_titles(html)]
    assert sorted(seen) == sorted(mine)  # each once, none left out
    assert len(pages) == -(-130 // DRAFTS_PER_PAGE)
    assert "130 drafts" in pages[0]
    assert f"Page {len(pages)} of {len(pages)}" in pages[-1]
    # And back again, by the "prev" links, to the first page.
    back = _link(pages[-1], "Draft pages", "prev")
    assert back is not None and _args(back)["drafts_page"] == [str(len(pages) - 1)]
    admin = client_for(app, UserFactory(role_name="admin"))
    others = [admin.get(f"/articles?drafts_page={n}").get_data(as_text=True) for n in (1, 3)]
    pages += [client.get(f"/articles?drafts_page={n}&page={n}").get_data(as_text=True)
              for n in (4, 9999)]
    for html in pages + others:
        assert not any(title in html for title in theirs)
    assert all("Your drafts" not in html for html in others)


def test_both_pagers_keep_each_other_s_page(app: Flask) -> None:
    """Paging one list leaves the other where it was; the published pager still walks
    every published article when a drafts page is in the address."""
    editor = UserFactory(role_name="editor")
    _drafts(editor, 3 * DRAFTS_PER_PAGE, "Mine")
    published = [ArticleFactory().title for _ in range(45)]  # 3 pages of 20
    client = client_for(app, editor)
    html = client.get("/articles?page=2&drafts_page=3").get_data(as_text=True)
    assert "Page 2 of 3" in html and "Page 3 of 3" in html
    newer = _link(html, "Pages", "prev")
    older = _link(html, "Pages", "next")
    drafts_back = _link(html, "Draft pages", "prev")
    assert newer and older and drafts_back
    assert _args(newer) == {"page": ["1"], "drafts_page": ["3"]}
    assert _args(older) == {"page": ["3"], "drafts_page": ["3"]}
    assert _args(drafts_back) == {"page": ["2"], "drafts_page": ["2"]}
    # Walking the published list from a drafts page: every article once, drafts unmoved.
    pages = _follow(client, "/articles?drafts_page=3", "Pages")
    assert sorted(t for html in pages for t in _published_titles(html)) == sorted(published)
    assert all("Page 3 of 3" in html for html in pages)  # the drafts pager's own line
    # And a search, which shows no drafts, pages as before.
    html = client.get("/articles?q=Article&page=2&drafts_page=3").get_data(as_text=True)
    assert _args(_link(html, "Pages", "prev") or "") == {"q": ["Article"], "page": ["1"]}
    assert "Your drafts" not in html


HOSTILE = ["-1", "0", "abc", "1e3", "9" * 30, "9" * 5000, "%00", "2%20OR%201=1", "", "+2"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("param", ["page", "drafts_page"])
def test_a_hostile_page_number_gives_a_normal_page(app: Flask, param: str, value: str) -> None:
    """Negative, huge, non-numeric or empty numbers read as a page the lists have; the
    links never repeat what the address said."""
    editor = UserFactory(role_name="editor")
    _drafts(editor, DRAFTS_PER_PAGE + 1, "Mine")
    for _ in range(21):
        ArticleFactory()
    resp = client_for(app, editor).get(f"/articles?{param}={value}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "Your drafts" in html and 'aria-label="Draft pages"' in html
    hrefs = [unescape(href) for href in re.findall(r'href="(/articles\?[^"]*)"', html)]
    assert hrefs, html
    for href in hrefs:
        for numbers in _args(href).values():
            assert all(number.isdigit() and 0 < int(number) <= 10_000 for number in numbers), href


def test_a_repeated_or_past_the_end_drafts_page_reads_one_page(app: Flask) -> None:
    """The first of repeated numbers counts; past the last page of drafts is the last page
    (drafts get published meanwhile), not an empty list with no way back."""
    editor = UserFactory(role_name="editor")
    _drafts(editor, DRAFTS_PER_PAGE + 5, "Mine")
    client = client_for(app, editor)
    html = client.get("/articles?drafts_page=2&drafts_page=1&drafts_page=x").get_data(as_text=True)
    assert len(_draft_titles(html)) == 5
    html = client.get(f"/articles?drafts_page={10**20}").get_data(as_text=True)
    assert len(_draft_titles(html)) == 5 and "Page 2 of 2" in html
