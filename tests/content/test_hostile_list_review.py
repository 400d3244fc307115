"""Attacks on public search: queries that would make the database work through every body."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from bastion.content import search
from bastion.content.services import list_articles
from bastion.extensions import db
from tests.factories import ArticleFactory


@pytest.fixture
def pg_app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """PostgreSQL only: SQLite matches substrings and has no full-text index."""
    app = make_app(backend="postgresql")
    with app.app_context():
        yield app


def _titles(query: str) -> set[str]:
    return {a.title for a in list_articles(None, query=query).items}


@pytest.fixture
def search_plans(pg_app: Flask) -> Iterator[list[str]]:
    """The plan PostgreSQL chose for each search statement, in the state it ran in."""
    plans: list[str] = []

    def explain(_conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "search_hits" in statement and not statement.startswith("EXPLAIN"):
            cursor.execute("EXPLAIN " + statement, params)
            plans.append("\n".join(str(row[0]) for row in cursor.fetchall()))

    event.listen(db.engine, "before_cursor_execute", explain)
    try:
        yield plans
    finally:
        event.remove(db.engine, "before_cursor_execute", explain)


# ----------------------------------------------------------------------------- search ---
@pytest.mark.asvs("V15.2.2", "V2.4.1")
@pytest.mark.parametrize("query", ["the", "a", "t h e"])
def test_a_search_for_a_common_word_goes_through_the_index(
    search_plans: list[str], query: str
) -> None:
    """For a word in most articles the planner read the whole table instead, working out
    each article's words again from its body: 13 s for one anonymous search of "a" over
    3,000 long articles, twice per page (the count and the rows)."""
    ArticleFactory.create_batch(3, title="The plan", body_md="the a t h e words " * 40)
    assert len(list_articles(None, query=query).items) == 3
    assert len(search_plans) == 2  # the count and the page
    for plan in search_plans:
        assert "ix_articles_search_words" in plan, plan
    # The setting ends with the search: the rest of the request plans as usual.
    assert db.session.scalar(db.text("SHOW enable_seqscan")) == "on"


@pytest.mark.asvs("V15.2.2", "V2.4.1")
@pytest.mark.usefixtures("pg_app")
def test_a_single_letter_is_searched_as_a_whole_word() -> None:
    """A one-letter prefix stood for a large share of all words: the index merged the
    entries of every word starting with it, eight times for eight letters."""
    ArticleFactory(title="Plan C", body_md="the backup plan")
    ArticleFactory(title="Compilers", body_md="code generation")
    assert search.to_tsquery_text(["c", "co"]) == "'c' & 'co':*"
    assert _titles("c") == {"Plan C"}
    assert _titles("co") == {"Compilers"}
    assert _titles("plan C") == {"Plan C"}
