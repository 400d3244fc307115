"""Attacks on the reused public pages and API list (bastion.pagecache) through the real app.

What one client sends must never shape what another receives, a stored copy must never
answer a question it was not built for (a condition, another query, another caller), and no
stream of requests may empty what every reader asks for.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from werkzeug.http import generate_etag

from bastion import pagecache
from bastion.extensions import db
from tests.api.conftest import Api
from tests.factories import ArticleFactory, CommentFactory, UserFactory


@pytest.fixture
def api(client: FlaskClient) -> Api:
    return Api(client)


def _store(app: Flask) -> pagecache._Store:
    store: pagecache._Store = app.extensions[pagecache._CACHE_KEY]
    return store


@pytest.mark.asvs("V4.1.1")
@pytest.mark.usefixtures("public_pages_reused")
@pytest.mark.parametrize("page", ["home", "article"])
def test_conditions_on_a_reused_page_follow_rfc_9110(client: FlaskClient, page: str) -> None:
    """Werkzeug's ``make_conditional`` answered ``If-Match: *`` (true whenever the page
    exists, RFC 9110 13.1.1) with 412, a stale If-Match with 412 carrying the whole page as
    its body, and a matching If-Match with a matching If-None-Match with 200, not 304."""
    article = ArticleFactory(title="Conditional reading")
    path = "/" if page == "home" else f"/articles/{article.id}"
    first = client.get(path)
    etag = first.headers["ETag"]
    assert etag == f'"{generate_etag(first.data)}"'

    star = client.get(path, headers={"If-Match": "*"})
    assert star.status_code == 200 and star.data == first.data
    listed = client.get(path, headers={"If-Match": f'"older", {etag}'})
    assert listed.status_code == 200 and listed.data == first.data
    for stale in ('"older"', f"W/{etag}"):  # If-Match compares strongly: a weak tag fails
        refused = client.get(path, headers={"If-Match": stale})
        assert refused.status_code == 412, stale
        assert b"Conditional reading" not in refused.data  # an error page, not the page
        assert "ETag" not in refused.headers
        assert "If-Match" in refused.get_data(as_text=True)  # says what to change
    both = client.get(path, headers={"If-Match": etag, "If-None-Match": etag})
    assert both.status_code == 304 and both.data == b""
    # If-None-Match compares weakly, in a list or as "*"; HEAD too.
    for value in (f"W/{etag}", f'"x", W/{etag}, "y"', "*"):
        unchanged = client.get(path, headers={"If-None-Match": value})
        assert unchanged.status_code == 304 and unchanged.data == b"", value
        assert unchanged.headers["ETag"] == etag
    assert client.head(path, headers={"If-None-Match": etag}).status_code == 304
    # Neither a range nor a date condition applies to a page: the whole page, 200.
    for headers in (
        {"Range": "bytes=0-5"},
        {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
        {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
    ):
        whole = client.get(path, headers=headers)
        assert whole.status_code == 200 and whole.data == first.data, headers
    # A refused condition stored nothing of its own: the next reader gets the page.
    assert client.get(path).data == first.data


@pytest.mark.asvs("V15.2.2", "V2.4.1")
@pytest.mark.usefixtures("public_pages_reused")
@pytest.mark.parametrize("bound", ["entries", "bytes"])
def test_a_flood_of_query_strings_keeps_the_plain_pages_of_a_busy_site(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    """Made-up query strings have half the store; but once the plain pages (the home page,
    every article and profile read so far) held more than the other half, each query
    string that took the store over its bound emptied it whole, plain pages and all."""
    articles = ArticleFactory.create_batch(6)
    assert client.get("/").status_code == 200
    for article in articles:
        assert client.get(f"/articles/{article.id}").status_code == 200
    store = _store(app)
    plain = set(store.entries)
    assert len(plain) == 7 and not store.varied
    if bound == "entries":  # the plain pages fill more than half of the entries
        monkeypatch.setattr(pagecache, "MAX_ENTRIES", 10)
    else:  # ... or of the bytes
        monkeypatch.setattr(pagecache, "STORE_BUDGET_BYTES", store.size * 10 // 7)
    for n in range(40):
        assert client.get(f"/?utm_source={n}").status_code == 200
        assert plain <= store.entries.keys(), n
    assert store.size == sum(size for _, _, size in store.entries.values())
    assert store.size <= pagecache.STORE_BUDGET_BYTES
    assert len(store) <= pagecache.MAX_ENTRIES
    # A plain page that does not fit still empties the store, so the bound holds.
    assert client.get(f"/articles/{ArticleFactory().id}").status_code == 200
    assert store.size <= pagecache.STORE_BUDGET_BYTES and len(store) <= pagecache.MAX_ENTRIES


@pytest.mark.asvs("V15.2.2")
@pytest.mark.usefixtures("public_pages_reused")
def test_long_query_strings_count_against_the_stores_bytes(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stored copy is kept under its query string, up to the 4 KiB a request line may
    carry: counted with the page only, 512 such keys held 2 MiB past the byte bound."""
    budget = 8 * len(client.get("/").data)
    monkeypatch.setattr(pagecache, "STORE_BUDGET_BYTES", budget)
    pagecache.clear()
    for n in range(20):
        assert client.get(f"/?{n}={'a' * 3000}").status_code == 200
    store = _store(app)
    held = sum(len(page.data) + sum(map(len, key)) for key, (_, page, _) in store.entries.items())
    assert held <= budget
    assert store.size == held


@pytest.mark.asvs("V14.2.2")
@pytest.mark.usefixtures("public_pages_reused")
def test_each_query_gets_the_comments_it_names_never_another_querys_copy(
    app: Flask, client: FlaskClient
) -> None:
    """Stored under the raw query string, an article's comment pages cannot answer for each
    other, however the parameter is spelt, repeated or padded; the home page, which reads
    no parameter, shows the same list whatever query it is sent."""
    article = ArticleFactory(title="Much discussed")
    CommentFactory(article=article, body="first-page comment")
    for n in range(50):
        CommentFactory(article=article, body=f"comment number {n}")
    CommentFactory(article=article, body="second-page comment")
    db.session.commit()
    url = f"/articles/{article.id}"
    texts = {}
    for query in (
        "",
        "?page=2",
        "?page=1",
        "?page=%32",
        "?page=2&page=1",
        "?page=1&page=2",
        "?%70age=2",
        "?page=+2",
        "?page=two",
        "?page=999999999999999999999",
    ):
        for _ in range(2):  # rendered, then from the store
            resp = client.get(url + query)
            assert resp.status_code == 200, query
            texts.setdefault(query, set()).add(resp.get_data(as_text=True))
    assert all(len(seen) == 1 for seen in texts.values())
    body = {query: next(iter(seen)) for query, seen in texts.items()}
    for query in ("?page=2", "?page=%32", "?page=2&page=1", "?%70age=2"):
        assert "second-page comment" in body[query] and "first-page comment" not in body[query]
    for query in ("", "?page=1", "?page=1&page=2", "?page=two"):
        assert "first-page comment" in body[query] and "second-page comment" not in body[query]
    home = client.get("/").data
    for query in ("?mine=true", "?q=secret", "?page=2", "?x=%ff%00", "?" + "a" * 3000):
        assert client.get("/" + query).data == home, query


@pytest.mark.asvs("V14.2.2", "V16.5.3")
@pytest.mark.usefixtures("public_pages_reused")
def test_a_render_that_failed_midway_stores_nothing(app: Flask, client: FlaskClient) -> None:
    """The database goes away while an article page is being built (the article was read,
    its comments are not): the visitor gets the error page, nothing is kept, and the next
    visitor gets the whole page, built afresh."""
    article = ArticleFactory(title="Still here")
    CommentFactory(article=article, body="A comment worth keeping")
    db.session.commit()
    url = f"/articles/{article.id}"
    failures = []

    def fail_once(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM comments" in statement and not failures:
            failures.append(statement)
            raise OperationalError(statement, {}, Exception("server closed the connection"))

    event.listen(db.engine, "before_cursor_execute", fail_once)
    try:
        broken = client.get(url)
    finally:
        event.remove(db.engine, "before_cursor_execute", fail_once)
    assert failures, "the page no longer reads its comments: make another query fail"
    assert broken.status_code >= 500
    assert "ETag" not in broken.headers and b"Still here" not in broken.data
    assert not _store(app).entries
    db.session.rollback()
    whole = client.get(url)
    assert whole.status_code == 200 and b"A comment worth keeping" in whole.data
    assert len(_store(app)) == 1
    assert client.get(url).data == whole.data


@pytest.mark.asvs("V14.2.2")
@pytest.mark.usefixtures("public_pages_reused")
def test_a_head_request_stores_the_whole_page_for_the_next_get(client: FlaskClient) -> None:
    ArticleFactory(title="Asked by HEAD first")
    head = client.head("/")
    assert head.status_code == 200 and head.data == b""
    got = client.get("/")
    assert b"Asked by HEAD first" in got.data
    assert int(head.headers["Content-Length"]) == len(got.data)
    assert head.headers["ETag"] == got.headers["ETag"]


@pytest.mark.asvs("V7.4.2", "V8.2.1", "V14.2.2")
@pytest.mark.usefixtures("public_pages_reused")
@pytest.mark.parametrize("change", ["disabled", "deleted", "demoted to no scope"])
def test_the_reused_list_answers_no_token_whose_user_changed(api: Api, change: str) -> None:
    """The list is stored from a valid token's request; a token whose user was disabled or
    deleted since, or that was narrowed to another scope, gets neither the list nor a 304."""
    from bastion.admin.deletion import delete_user
    from bastion.admin.services import set_disabled

    ArticleFactory(title="Public list")
    admin = UserFactory(role_name="admin")
    reader = UserFactory(username="listreader")
    token = (
        api.pat_for(reader, ["comments:write"])
        if change == "demoted to no scope"
        else api.access_for(reader)
    )
    stored = api.call("GET", "/articles", api.access_for(UserFactory()))
    assert stored.status_code == 200
    if change == "disabled":
        set_disabled(admin, reader, True)
    elif change == "deleted":
        delete_user(admin, reader, confirmation="listreader")
    for method in ("GET", "HEAD"):
        for headers in ({}, {"If-None-Match": stored.headers["ETag"]}):
            resp = api.call(method, "/articles", token, headers=headers)
            assert resp.status_code in (401, 403), (method, headers)
            assert "ETag" not in resp.headers and b"Public list" not in resp.data


@pytest.mark.asvs("V8.2.2", "V14.2.2")
@pytest.mark.usefixtures("public_pages_reused")
def test_the_reused_list_never_carries_a_draft_or_answers_for_mine(api: Api) -> None:
    """Searches, pages and ``mine`` spelt every way: the stored published list never
    carries a draft, and an author's own list is never answered from it (nor with a 304
    against its ETag when the two differ)."""
    author = UserFactory(role_name="editor")
    ArticleFactory(author=author, title="Visible words")
    ArticleFactory(author=author, status="draft", published_at=None, title="Hidden words")
    token = api.access_for(author)
    reader = api.access_for(UserFactory())
    published = api.call("GET", "/articles", reader)
    etag = published.headers["ETag"]
    for query in (
        "",
        "?q=words",
        "?q=Hidden",
        "?page=1&per_page=20",
        "?mine=false",
        "?per_page=100",
        "?q=%48idden",
        "?page=01",
    ):
        for who in (reader, token):
            resp = api.call("GET", f"/articles{query}", who)
            assert resp.status_code == 200, query
            assert b"Hidden words" not in resp.data, (query, who)
    for query in ("?mine=true", "?mine=true&q=Hidden", "?mine=true&page=1&per_page=20"):
        mine = api.call("GET", f"/articles{query}", token, headers={"If-None-Match": etag})
        assert mine.status_code == 200 and b"Hidden words" in mine.data, query
        assert mine.headers["ETag"] != etag
    for query in (
        "?mine=true&mine=false",
        "?mine=1",
        "?mine=TRUE",
        "?page=1&page=2",
        "?q=a&q=b",
        "?x=1",
    ):
        assert api.call("GET", f"/articles{query}", token).status_code == 422, query


@pytest.mark.asvs("V14.2.2", "V8.2.2")
@pytest.mark.usefixtures("public_pages_reused")
def test_a_page_stored_before_publication_is_replaced_at_once_by_this_worker(
    app: Flask, client: FlaskClient
) -> None:
    """The 404 of a draft is never stored, so publishing it shows at once; unpublishing
    it again on this worker drops the copy stored meanwhile, and an old ETag gets no 304."""
    from bastion.content import services as content

    author = UserFactory(role_name="editor")
    draft = ArticleFactory(author=author, status="draft", published_at=None, title="Embargoed")
    url = f"/articles/{draft.id}"
    assert client.get(url).status_code == 404
    assert b"Embargoed" not in client.get("/").data
    content.update_article(author, draft, publish=True)
    shown = client.get(url)
    assert shown.status_code == 200 and b"Embargoed" in shown.data
    home = client.get("/")
    assert b"Embargoed" in home.data
    content.update_article(author, draft, publish=False)
    assert client.get(url, headers={"If-None-Match": shown.headers["ETag"]}).status_code == 404
    again = client.get("/", headers={"If-None-Match": home.headers["ETag"]})
    assert again.status_code == 200 and b"Embargoed" not in again.data
