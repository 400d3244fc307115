"""Inputs built to cost a worker seconds of CPU or gigabytes of memory are bounded.

Each test checks a structural bound (cells rendered, errors listed, parses per save), never
a time: the costs these bounds remove were measured in scratch scripts, not here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from bastion.api import tokens
from bastion.api.spec import FIELD_ERRORS_MAX
from bastion.content import rendering, services
from bastion.content.services import BODY_MAX
from bastion.extensions import db
from bastion.models import Article
from bastion.profiles.services import BIO_MAX
from tests.factories import UserFactory
from tests.support.roles import client_for, post


def _padded_tables(columns: int, size: int) -> str:
    """Tables whose rows are a lone ``|``, each padded out to ``columns`` empty cells."""
    header = "|" + "a|" * columns + "\n|" + "-|" * columns + "\n"
    one = header + "|\n" * ((0x10000 // columns) + 1) + "\n"
    return (one * (size // len(one) + 1))[:size]


def _cells(html: str) -> int:
    return len(re.findall(r"<t[dh][ >]", html))


@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize(("columns", "size"), [(150, BIO_MAX), (128, 20_000)])
def test_padded_table_rows_cannot_multiply_cells(columns: int, size: int) -> None:
    # Before the bound: 65,536 cells per table (the 20,000 characters made 13 such tables;
    # BODY_MAX of them took 86 s and 5 GB to render).
    source = _padded_tables(columns, size)
    assert _cells(rendering.render_markdown(source)) <= len(source)


def test_written_tables_keep_every_cell() -> None:
    rows = "\n".join("| " + " | ".join(f"r{r}c{c}" for c in range(8)) + " |" for r in range(300))
    source = "| " + " | ".join(f"h{c}" for c in range(8)) + " |\n|" + "---|" * 8 + "\n" + rows
    html = rendering.render_markdown(source)
    assert _cells(html) == 8 * 301
    assert "<td>r299c7</td>" in html


def _repeated_reference(size: int, address: str = "https://example.org/" + "a" * 1000) -> str:
    """One long definition, then its three-character reference over and over."""
    return (f'[a]: {address} "{"t" * 500}"\n\n' + "[a] ![a] " * size)[:size]


@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("size", [BIO_MAX, BODY_MAX])
def test_reference_links_cannot_repeat_a_long_address_without_bound(size: int) -> None:
    # Before the bound: each "[a]" repeated 1,500 characters of address and title, and a
    # BODY_MAX article became 17.5 MB of HTML, stored and sent to every reader.
    source = _repeated_reference(size)
    html = rendering.render_markdown(source)
    assert len(html) <= 4 * max(size, rendering.REFERENCED_CHARS_MIN)
    assert html.count('href="https://example.org/') >= 3  # the first uses keep their links
    assert "[a] ![a] [a] ![a]" in html  # the rest stay text, as written


def test_reference_links_within_the_budget_keep_their_addresses() -> None:
    # A use costs only what it repeats beyond its own length: citing a short definition
    # often, as real writing does, stays within the budget.
    source = '[d]: /docs/setup "Setup"\n\n' + "See [the setup][d], [d][] and ![d].\n" * 300
    html = rendering.render_markdown(source)
    assert html.count('<a href="/docs/setup" title="Setup"') == 600
    assert html.count('<img title="Setup" alt="d">') == 300
    assert "[d]" not in html


@pytest.mark.asvs("V15.2.2")
def test_an_article_of_repeated_references_is_stored_and_served_bounded(app: Flask) -> None:
    client = client_for(app, UserFactory(role_name="editor"))
    source = _repeated_reference(BODY_MAX)
    resp = post(client, "/articles/new", {"title": "Refs", "body": source, "publish": "y"})
    assert resp.status_code == 302
    article = db.session.scalar(db.select(Article))
    assert len(article.body_html) <= 4 * BODY_MAX
    page = client.get(f"/articles/{article.id}")
    assert page.status_code == 200
    assert len(page.get_data()) <= 5 * BODY_MAX


@pytest.mark.asvs("V15.2.2")
def test_a_bio_cannot_make_every_profile_view_render_a_huge_table(app: Flask) -> None:
    # Any reader may write a bio; anonymous visitors render it on each view (it was 0.7 MB
    # of HTML and 1.8 s of CPU per view).
    bio = _padded_tables(150, BIO_MAX)
    UserFactory(username="wide", bio=bio)
    resp = client_for(app).get("/u/wide")
    assert resp.status_code == 200
    assert _cells(resp.get_data(as_text=True)) <= len(bio)


@pytest.mark.asvs("V15.2.2")
def test_saving_an_article_parses_its_markdown_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing is the costly step (seconds for a hostile BODY_MAX body); the summary is made
    # from the rendered HTML instead of a second parse.
    parser = rendering._markdown()
    parses: list[int] = []

    class Counting:
        def render(self, src: str, env: Any = None) -> str:
            parses.append(len(src))
            return parser.render(src, env)

    monkeypatch.setattr(rendering, "_markdown", Counting)
    editor = UserFactory(role_name="editor")
    article = services.create_article(editor, title="T", body="**Q&A** " * 10, publish=True)
    assert parses == [len("**Q&A** " * 10)]
    assert article.summary.startswith("Q&A Q&A")
    services.update_article(editor, article, body="x" * BODY_MAX)
    assert len(parses) == 2


@pytest.mark.asvs("V15.2.2", "V2.2.1")
def test_unknown_key_flood_lists_a_bounded_number_of_errors(app: Flask) -> None:
    # Every unknown key is an error: 80,000 of them in a 1 MB body answered 6.6 MB.
    token = tokens.issue_pair(UserFactory()).access_token
    body = {f"k{i}": 0 for i in range(5_000)}
    resp = client_for(app).patch(
        "/api/v1/me", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    assert len(resp.get_json()["errors"]) == FIELD_ERRORS_MAX
