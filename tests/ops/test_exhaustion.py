"""Resource exhaustion by anonymous clients: what one request can make the site keep.

Each test sends the attack and counts what grew (entries, bytes), never how long it took.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from bastion import pagecache
from bastion.extensions import db
from bastion.models import Article
from tests.factories import ArticleFactory


def _caching_app(make_app: Callable[..., Flask]) -> Flask:
    """An app that reuses anonymous pages for a minute and counts no rate limits (the
    attacks below are spread over many addresses in real life)."""
    return make_app(PUBLIC_PAGE_CACHE_SECONDS=60, RATELIMIT_ENABLED=False)


def _store(app: Flask) -> pagecache._Store:
    store: pagecache._Store = app.extensions["bastion.page_cache"]
    return store


@pytest.mark.asvs("V15.2.2", "V2.4.1")
def test_random_query_strings_do_not_evict_the_plain_pages(
    make_app: Callable[..., Flask],
) -> None:
    """A client sending ``/?x=<n>`` for ever used to empty the whole store every 512
    requests, taking the home page and every article page with it."""
    app = _caching_app(make_app)
    client = app.test_client()
    assert client.get("/").status_code == 200
    store = _store(app)
    home = next(iter(store.entries))
    for n in range(pagecache.MAX_ENTRIES + 100):
        assert client.get(f"/?x={n}").status_code == 200
    assert home in store.entries  # the page every reader asks for is still there
    assert len(store.varied) <= pagecache.MAX_ENTRIES // pagecache.VARIED_SHARE
    assert store.varied_size <= pagecache.STORE_BUDGET_BYTES // pagecache.VARIED_SHARE
    assert store.size == sum(size for _, _, size in store.entries.values())


@pytest.mark.asvs("V15.2.2", "V1.1.1")
def test_other_spellings_of_one_article_address_store_nothing(
    make_app: Callable[..., Flask],
) -> None:
    """/articles/007 and full-width digits once named article 7, and keyed on the raw path
    each of the endless spellings stored one more copy; now they name nothing (404)."""
    app = _caching_app(make_app)
    with app.app_context():
        article: Article = ArticleFactory()  # type: ignore[no-untyped-call,assignment]
        article_id = article.id
        db.session.commit()
    client = app.test_client()
    assert client.get(f"/articles/{article_id}").status_code == 200
    spellings = [f"/articles/{'0' * zeros}{article_id}" for zeros in range(1, 30)]
    spellings.append("/articles/" + "".join(chr(0xFF10 + int(d)) for d in str(article_id)))
    assert {client.get(path).status_code for path in spellings} == {404}
    assert len(_store(app)) == 1
